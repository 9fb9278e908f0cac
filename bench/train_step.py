"""Training step time with the feature cache on and off (the frozen encoders run every step when it is off).

    .venv/bin/python bench/train_step.py [--config configs/train/tiny-smoke.yaml] [--steps 12] [--warmup 2]

Runs the same training twice in this process (same data, seed, schedule): once reading cached encoder features
(the cache is built before timing starts), once running the encoders on every sample. Prints the median step time
of each (the first `--warmup` steps are left out) and their ratio. Media decoding runs in the training process
(`data.num_workers=0`) in both runs, so the ratio is what the cache saves end to end on this machine.
`--json` prints the result as one JSON object (what `bench/all.py` reads), with this process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import add_json_flag, describe, emit, peak_rss_mb, result, row  # noqa: E402

from videosalmonn.training.config import load_train_config  # noqa: E402
from videosalmonn.training.feedback import read_metrics  # noqa: E402
from videosalmonn.training.loop import cache_features, train  # noqa: E402


def step_times(config: str, overrides: list[str]) -> list[float]:
    cfg = load_train_config(config, overrides)
    train(cfg)
    return [row["step_time_s"] for row in read_metrics(cfg.output_dir)]


def measure(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            f"steps={args.steps}",
            "optim.warmup_steps=0",
            f"checkpoint.every={args.steps}",
            f"log.every={args.steps}",
            "log.progress=false",
            "data.num_workers=0",
        ]
        cache = f"{tmp}/features"
        tick = time.perf_counter()
        cache_features(args.config, [], cache)
        build = time.perf_counter() - tick
        cached = step_times(
            args.config, common + [f"output_dir={tmp}/cached", f"data.feature_cache={cache}", "data.build_cache=false"]
        )
        live = step_times(args.config, common + [f"output_dir={tmp}/live", "data.feature_cache=null"])
    on, off = statistics.median(cached[args.warmup :]), statistics.median(live[args.warmup :])
    compared = f"training step, {Path(args.config).stem}: feature cache vs encoders every step"
    return result(
        "train_step",
        [row(compared, on, off, "s/step")],
        peak_rss_mb(),
        steps={"cached": cached, "live": live},
        cache_build_s=build,
    )


def report(r: dict) -> None:
    (x,) = r["rows"]
    print("step times (s), cache on :", " ".join(f"{t:.2f}" for t in r["steps"]["cached"]))
    print("step times (s), cache off:", " ".join(f"{t:.2f}" for t in r["steps"]["live"]))
    print(f"\nfeature cache built in {r['cache_build_s']:.1f} s")
    print(f"median step time, cache on : {x['ours']:.3f} s")
    print(f"median step time, cache off: {x['baseline']:.3f} s (encoders every step)")
    print(f"speed-up with the cache    : {x['ratio']:.1f}x  (step-time ratio off/on)")
    print(f"peak RSS {r['peak_rss_mb']:.0f} MB (VmHWM, both runs in this process); {describe(r['machine'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/train/tiny-smoke.yaml"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the median")
    add_json_flag(parser)
    args = parser.parse_args()
    emit(args, measure(args), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
