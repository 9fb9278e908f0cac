"""`videosalmonn savemini make`: a thin entry point over `videosalmonn.savemini.generate`.

videosalmonn savemini make --out runs/savemini --seed 0 --n-train 8000 --n-test 1800 [--n-val 200] [--workers 2]
videosalmonn savemini eval --world runs/savemini --model tiny --out runs/savemini-eval/tiny [--limit 20] [--task asr]
videosalmonn savemini towers --world runs/savemini --model mini --out runs/mini-towers [--steps 1800]
"""

from __future__ import annotations

import argparse

from videosalmonn.cli import positive_int


def cmd_make(args: argparse.Namespace) -> int:
    from videosalmonn.savemini.generate import WorldSpec, make_world

    spec = WorldSpec(seed=args.seed, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)
    s = make_world(args.out, spec, workers=args.workers, progress=not args.no_progress)
    tasks = {split: sum(c.values()) for split, c in s.counts.items()}
    print(
        f"{s.out}: {s.clips} clips ({s.rendered} rendered now) in {s.seconds:.1f} s, {s.bytes / 2**20:.1f} MiB; "
        + ", ".join(f"{split} {n} samples" for split, n in tasks.items())
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from videosalmonn.savemini.evaluate import evaluate_world, summary_markdown

    scores = evaluate_world(
        args.world,
        args.model,
        args.out,
        tasks=tuple(args.task),
        overrides=tuple(args.set),
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(summary_markdown(args.world, args.model, scores, args.limit), end="")
    return 0


def cmd_towers(args: argparse.Namespace) -> int:
    from videosalmonn.config import ModelConfig
    from videosalmonn.savemini.towers import TowerRecipe, train_towers

    cfg = ModelConfig.from_name(args.model, tuple(args.set))
    record = train_towers(args.world, cfg, args.out, TowerRecipe(steps=args.steps, seed=args.seed))
    print(f"{args.out}/{record['file']}: sha256 {record['sha256']}")
    return 0


def register(subparsers) -> None:
    sm = subparsers.add_parser("savemini", help="the SAVE-mini generated world (docs/savemini.md)")
    sub = sm.add_subparsers(dest="savemini_command", required=True)
    p = sub.add_parser("make", help="write a world: clips, SAVE-layout test files, training JSONL (resumable)")
    p.add_argument("--out", required=True, help="world directory (a rerun with the same arguments resumes it)")
    p.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
    p.add_argument("--n-train", type=non_negative_int, default=8000, help="training clips (default 8000)")
    p.add_argument("--n-val", type=non_negative_int, default=200, help="validation clips (default 200)")
    p.add_argument("--n-test", type=non_negative_int, default=1800, help="test clips (default 1800)")
    p.add_argument("--workers", type=positive_int, help="processes (default: one per CPU core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_make)

    p = sub.add_parser("eval", help="score a model on every task of a world's test split (resumable)")
    p.add_argument("--world", required=True, help="a directory written by `savemini make`")
    p.add_argument("--model", default="tiny", help="preset name or YAML config file (default tiny)")
    p.add_argument("--out", required=True, help="run directory: one resumable eval run per task + summary.md")
    p.add_argument("--task", action="append", default=[], help="only this task (repeatable; default: all)")
    p.add_argument("--limit", type=positive_int, help="only the first N samples of each task")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples generated together")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("towers", help="pretrain a preset's visual tower on a world's frames (resumable)")
    p.add_argument("--world", required=True, help="a directory written by `savemini make`")
    p.add_argument("--model", default="mini", help="preset or YAML config whose visual tower to train (default mini)")
    p.add_argument("--out", required=True, help="run directory: towers.safetensors, towers.json, state.safetensors")
    p.add_argument("--steps", type=positive_int, default=TOWER_STEPS, help=f"steps (default {TOWER_STEPS})")
    p.add_argument("--seed", type=int, default=0, help="data order and probe initialisation (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    p.set_defaults(func=cmd_towers)


TOWER_STEPS = 1800  # savemini/towers.py TowerRecipe.steps (not imported here: the CLI starts without torch)


def non_negative_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text}")
    return n
