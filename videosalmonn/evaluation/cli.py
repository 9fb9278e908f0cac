"""`videosalmonn eval run|merge|prepare|report`: thin commands over evaluation.runner, prepare and report.

    videosalmonn eval prepare --task avsr --savebench SAVEBench/ --media-root how2/
    videosalmonn eval run --task avsr --model video-salmonn-13b --savebench SAVEBench/ --media-root how2/ \
        --out runs/avsr
    torchrun --standalone --nproc_per_node 4 -m videosalmonn eval run ...     (each rank runs i % 4 == rank)
    videosalmonn eval report runs/ --out runs/report
"""

from __future__ import annotations

import argparse
import sys

from videosalmonn.cli import EXIT_SAMPLES_FAILED, given_up_line, positive_int


def cmd_run(args: argparse.Namespace) -> int:
    from videosalmonn.evaluation.runner import run_eval

    s = run_eval(_settings(args), args.out, batch_size=args.batch_size, device=args.device, progress=True)
    print(
        f"{args.task}: {s.answered} answered, {s.failed} failed, {s.skipped} already done, {s.missing} with "
        f"missing media, {s.other_ranks} left to other processes",
        file=sys.stderr,
    )
    if s.given_up:
        print(given_up_line(s.given_up, f"{args.out}/samples.rank*.jsonl"), file=sys.stderr)
    if s.failed or s.given_up:
        print(f"{s.failed + len(s.given_up)} sample(s) have no answer (their records have `error`)", file=sys.stderr)
    if s.results is not None:
        _print_results(s.results, args.out)
    else:
        print(
            f"not merged yet: other processes are still running (or run `videosalmonn eval merge {args.out}`)",
            file=sys.stderr,
        )
    return EXIT_SAMPLES_FAILED if s.failed or s.given_up else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from videosalmonn.evaluation.merge import merge_run

    _print_results(merge_run(args.dir), args.dir)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from videosalmonn.evaluation.prepare import prepare

    report = prepare(_settings(args))
    print("\n".join(report.lines()))
    return 0 if report.ready else 1


def cmd_add_noise(args: argparse.Namespace) -> int:
    from videosalmonn.evaluation.noisy import write_noisy_audio
    from videosalmonn.evaluation.settings import select_samples

    settings = _settings(args)
    files = write_noisy_audio(select_samples(settings), args.snr, args.seed, args.out)
    print(f"{args.task}: {len(files)} files with Gaussian noise at {args.snr:g} dB SNR in {args.out}", file=sys.stderr)
    print(f"use them: videosalmonn eval run --task {args.task} ... --option noisy_audio={args.out}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from videosalmonn.evaluation.report import write_report

    files = write_report(args.dirs, args.out or f"{args.dirs[0]}/report")
    print(files["markdown"].read_text(encoding="utf-8"))
    for kind, path in files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def _print_results(results: dict, where: str) -> None:
    from videosalmonn.evaluation.report import format_ci, format_value

    c = results["counts"]
    for m in results["metrics"]:
        value = (
            f"{format_value(m['value'], m['name'])} {format_ci(m)}" if m["available"] else f"unavailable ({m['note']})"
        )
        print(f"{results['task']} {m['name']}: {value}", file=sys.stderr)
    print(
        f"{c['scored']} of {c['selected']} samples scored ({c['failed']} failed, {c['missing_media']} missing "
        f"media, {c['pending']} not run yet); results in {where}",
        file=sys.stderr,
    )


def _settings(args: argparse.Namespace):
    from videosalmonn.evaluation.settings import EvalSettings

    return EvalSettings(
        task=args.task,
        model=getattr(args, "model", "tiny"),
        media_root=args.media_root,
        manifest=args.manifest,
        savebench=args.savebench,
        overrides=tuple(getattr(args, "set", ())),
        task_options=tuple(args.option),
        limit=getattr(args, "limit", None),
        mask=getattr(args, "mask", None),
        zero_level=getattr(args, "zero_level", None),
        spans=getattr(args, "spans", "auto"),
        video_audio=getattr(args, "video_audio", None),
        judge_url=getattr(args, "judge_url", None),
        judge_model=getattr(args, "judge_model", "gpt-3.5-turbo"),
        judge_allow_http=getattr(args, "judge_allow_http", False),
        allow_missing=getattr(args, "allow_missing", False),
        seed=getattr(args, "seed", 0),
    )


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        required=True,
        help="asr, aac, ic, ocr, vqa, video-qa, avsr, avqa-ego4d, avqa-presentation, avssd, avm, avsd, music-avqa, "
        "lrs2",
    )
    p.add_argument(
        "--media-root", help="base of the manifest's media paths (LibriSpeech/AudioCaps/MUSIC-AVQA: the dataset folder)"
    )
    p.add_argument("--manifest", help="replaces the task's default manifest (a file of the same layout)")
    p.add_argument(
        "--savebench", help="folder of the SAVEBench manifests (default: $VIDEOSALMONN_SAVEBENCH, else --media-root)"
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task reader option, e.g. all_turns=true (avsd), subset=null (ocr, vqa) (repeatable)",
    )


def register(subparsers) -> None:
    """Add `eval` and its sub-commands to the top-level parser's subparsers."""
    ev = subparsers.add_parser("eval", help="the SAVE benchmark: prepare data, run, merge shards, report")
    sub = ev.add_subparsers(dest="eval_command", required=True)

    p = sub.add_parser("run", help="generate and score one task into a resumable run directory")
    _data_arguments(p)
    p.add_argument("--model", default="tiny", help="preset name (tiny, video-salmonn-13b) or a YAML config file")
    p.add_argument("--out", required=True, help="run directory (a rerun resumes it)")
    p.add_argument("--limit", type=int, help="only the first N samples")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples generated together")
    p.add_argument("--mask", choices=["audio", "video"], help="diagnostics: mask the audio or the visual stream")
    p.add_argument("--zero-level", type=int, metavar="I", help="diagnostics: zero resolution level I's output")
    p.add_argument(
        "--spans",
        choices=["auto", "cut", "whole"],
        default="auto",
        help="Ego4D-QA time spans: cut the files, use them whole, or auto (cut only source videos)",
    )
    p.add_argument(
        "--video-audio",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use a video's own sound track when no audio file is given (default: music-avqa and lrs2 only)",
    )
    p.add_argument(
        "--judge-url",
        help="avssd: OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 "
        "($OPENAI_API_KEY is sent if set: over https or to localhost only); default: string-match fallback",
    )
    p.add_argument(
        "--judge-allow-http",
        action="store_true",
        help="avssd: also send $OPENAI_API_KEY over plain http to another host",
    )
    p.add_argument("--judge-model", default="gpt-3.5-turbo", help="avssd: the judge's model name")
    p.add_argument("--allow-missing", action="store_true", help="run the samples whose media exist")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config override, e.g. --set weights.delta=ckpt.pt (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="torch seed (sampling only; beam search is deterministic)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available; cuda:LOCAL_RANK under torchrun)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("merge", help="merge a run's shard files into samples.jsonl and results.json")
    p.add_argument("dir", help="run directory")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("prepare", help="which media of a task exist or are missing, and where they come from")
    _data_arguments(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "add-noise", help="a task's audio + Gaussian noise at an SNR, as <id>.wav files (lrs2: paper App. F)"
    )
    _data_arguments(p)
    p.add_argument("--snr", type=float, required=True, help="signal-to-noise ratio in dB (the paper: 0)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (each sample's noise: this seed and its id)")
    p.add_argument("--out", required=True, help="folder for <id>.wav (then: eval run ... --option noisy_audio=OUT)")
    p.set_defaults(func=cmd_add_noise)

    p = sub.add_parser("report", help="markdown tables like the paper's, a JSON summary and a PNG chart")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, or folders holding them")
    p.add_argument("--out", help="report folder (default: DIR/report of the first DIR)")
    p.set_defaults(func=cmd_report)
