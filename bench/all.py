"""Every benchmark in bench/, each in a fresh interpreter (so each peak RSS is its own), in one summary table.

    python bench/all.py [--only NAME] [--markdown] [--smallest] [--json]

Each benchmark compares ours against a baseline measured in the same run (interleaved where both run in one
process) and reports ratio = baseline / ours: > 1 means ours is faster (or, for memory, smaller). Sizes here are
reduced so the whole table takes about ten minutes on 2 cores (SIZES; run a benchmark alone for its full
defaults). `--smallest`: the quickest settings that still run every code path (tests/test_bench.py).
`--markdown`: the table as markdown (the README quotes it). `--json`: the results as one JSON list.

connector    ours vs the official one-level connector, real dims, fp32     bench/connector.py
media        demo clip -> frames: ours vs the official loader / per-frame   bench/media.py
startup      import, --help vs the eager import                            bench/startup.py
train_step   training step, feature cache vs encoders every step           bench/train_step.py
serve        concurrent requests, batching vs one at a time                bench/serve.py
load_memory  13B preset load (random weights): ours vs the code at 2108df8  bench/load_memory.py
bf16         bfloat16 vs float32 on this CPU: towers, connector, LLM, training, answers   bench/bf16.py
long_media   30-s clip -> 10-min video, peak RSS and time: ours vs before   bench/long_media.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import describe, machine

HERE = Path(__file__).resolve().parent
ASSET = str(HERE.parent / "tests" / "assets" / "clip2s.mp4")
SIZES = {  # the settings of the summary table
    "connector": ["--clips", "1", "--repeats", "3"],
    "media": ["--repeats", "2"],
    "startup": ["--repeats", "3"],
    "train_step": ["--steps", "6", "--warmup", "2"],
    "serve": ["--requests", "16", "--max-tokens", "16"],
    "load_memory": ["--llm-depth", "1"],
    "bf16": ["--repeats", "2"],
    "long_media": ["--lengths", "30", "600", "--fps", "5"],
}
SMALLEST = {  # every code path, as quickly as it goes
    "connector": ["--clips", "1", "--repeats", "1"],
    "media": ["--repeats", "1", "--clip", ASSET],
    "startup": ["--repeats", "1"],
    "train_step": ["--steps", "2", "--warmup", "1"],
    "serve": ["--requests", "2", "--max-tokens", "2", "--max-batch-size", "2"],
    "load_memory": ["--llm-depth", "1"],
    "bf16": [
        *("--repeats", "1", "--tokens", "2", "--clip", ASSET, "--encoder-layers", "1", "--frames", "1"),
        *("--llm-layers", "1", "--llm-prompt", "16", "--llm-tokens", "2", "--train-steps", "2"),
    ],
    "long_media": ["--lengths", "4", "12", "--fps", "2", "--streamed-seconds", "2", "--tokens", "2"],
}


def run(name: str, args: list[str]) -> dict:
    """One benchmark's `--json` result (its last stdout line), in a fresh interpreter; wall_s added."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--json", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench/{name}.py failed ({done.returncode}): {done.stderr[-2000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - start
    return res


def amount(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MB"
    return f"{value:.3g} {unit}"


def notes(x: dict) -> str:
    out = []
    if "cpu_ratio" in x:
        out.append(f"{x['cpu_ratio']:.2f}× CPU")
    if "identical" in x:
        out.append("frames identical" if x["identical"] else "frames DIFFER")
    if "max_error" in x:
        out.append(f"max error {x['max_error']:.1e}")
    if "rel_error" in x:
        out.append(f"rel. L2 error {x['rel_error']:.1e}")
    if "same_ids" in x:
        out.append("same greedy ids" if x["same_ids"] else f"greedy ids equal for the first {x['first_ids_equal']}")
    if "same_llm_input" in x:
        out.append("LLM input identical" if x["same_llm_input"] else "LLM input DIFFERS")
    if "growth" in x:
        met = "met" if x["growth"] <= x["target_growth"] else "MISSED"
        out.append(f"growth {x['growth']:.2f}× (target ≤ {x['target_growth']:g}× {met})")
    if "cpu_per_minute" in x:
        out.append("CPU s per minute of media " + " / ".join(f"{v:g}" for v in x["cpu_per_minute"]))
    if "target_s" in x:
        out.append(f"target < {x['target_s']:g} s {'met' if x['ours'] < x['target_s'] else 'MISSED'}")
    return ", ".join(out)


def rss(res: dict, x: dict) -> str:
    if "rss_ours_mb" in x:
        return f"{amount(x['rss_ours_mb'], 'MB')} vs {amount(x['rss_baseline_mb'], 'MB')}"
    return amount(res["peak_rss_mb"], "MB")


HEADER = ("benchmark", "compared", "ours", "baseline", "ratio", "peak RSS", "notes")


def table(results: list[dict]) -> list[tuple[str, ...]]:
    lines = []
    for res in results:
        for x in res["rows"]:
            r = x["ratio"]
            ratio = "-" if r is None else f"{r:.2f}×" if r < 10 else f"{r:.1f}×" if r < 100 else f"{r:.0f}×"
            ours, base = amount(x["ours"], x["unit"]), amount(x["baseline"], x["unit"])
            lines.append((res["benchmark"], x["compared"], ours, base, ratio, rss(res, x), notes(x)))
    return lines


def print_table(lines: list[tuple[str, ...]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for line in lines:
            print("| " + " | ".join(s.replace("|", "\\|") for s in line) + " |")
        return
    widths = [max(len(s) for s in col) for col in zip(HEADER, *lines)]
    for line in (HEADER, *lines):
        print("  ".join(s.ljust(w) for s, w in zip(line, widths)).rstrip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(SIZES), action="append", help="run this benchmark (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--smallest", action="store_true", help="the quickest settings (tests/test_bench.py)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON list")
    args = ap.parse_args()
    sizes = SMALLEST if args.smallest else SIZES
    here = machine()
    results, failed = [], []
    for name in args.only or list(SIZES):
        print(f"bench/{name}.py {' '.join(sizes[name])} ...", file=sys.stderr, flush=True)
        try:
            results.append(run(name, sizes[name]))
        except RuntimeError as e:
            failed.append(name)
            print(e, file=sys.stderr)
            continue
        print(f"  {results[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results))
        return 1 if failed else 0
    print(
        f"{describe(here)}; the cores shared with other jobs: every ratio is against a baseline measured in the "
        "same run, interleaved where both run in one process; ratio = baseline / ours; peak RSS is VmHWM, "
        "'ours vs baseline' where each ran in its own process, else the benchmark's whole process"
    )
    print()
    print_table(table(results), args.markdown)
    loads = ", ".join(f"{r['benchmark']} {r['machine']['load_average']:.1f}" for r in results)
    total = sum(r["wall_s"] for r in results)
    print(f"\nload average at each start: {loads}; {total / 60:.1f} min in all")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
