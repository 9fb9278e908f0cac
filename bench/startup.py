"""Benchmark: start-up time of the package and the command line, each in a fresh interpreter.

    python bench/startup.py [--repeats 5]

Every case runs `repeats` times as a subprocess, the cases alternating (A B C ... A B C ...); medians of the wall
time and of the child's CPU time (user + system) are printed, with the heavy libraries the case loaded.

interpreter      `python -c pass`: the floor every case pays (site-packages, the editable install hook)
import           `import videosalmonn` (lazy: torch and transformers load on first use of the API)
--help           `videosalmonn --help` (every command group registered, nothing heavy imported)
infer --help     `videosalmonn infer --help`
eager import     `from videosalmonn import Pipeline`: what `import videosalmonn` would cost if it were eager
                 (torch, transformers with InstructBLIP/Whisper/Llama, torch.distributed.tensor, dynamo)
Targets (issue 13 item 5): --help < 1 s, import < 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("videosalmonn"))
HEAVY = ("torch", "transformers", "transformers.models.instructblip", "torch.distributed.tensor", "torch._dynamo")
REPORT = "import sys; print('loaded:', ' '.join(m for m in {heavy!r} if m in sys.modules) or '-', file=sys.stderr)"

CASES = {
    "interpreter": [sys.executable, "-c", "pass"],
    "import": [sys.executable, "-c", "import videosalmonn; " + REPORT.format(heavy=HEAVY)],
    "--help": [CLI, "--help"],
    "infer --help": [CLI, "infer", "--help"],
    "eager import": [sys.executable, "-c", "from videosalmonn import Pipeline; " + REPORT.format(heavy=HEAVY)],
}
TARGETS = {"import": 1.5, "--help": 1.0, "infer --help": 1.0}


def run(argv: list[str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, what it said it loaded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    loaded = next((line[len("loaded: ") :] for line in done.stderr.splitlines() if line.startswith("loaded:")), "")
    return wall, cpu, loaded


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    wall: dict[str, list[float]] = {name: [] for name in CASES}
    cpu: dict[str, list[float]] = {name: [] for name in CASES}
    loaded: dict[str, str] = {}
    for _ in range(args.repeats):
        for name, argv in CASES.items():
            w, c, what = run(argv)
            wall[name].append(w)
            cpu[name].append(c)
            loaded[name] = what
    print(f"start-up, {args.repeats} interleaved runs each, medians ({os.cpu_count()} CPUs)")
    for name in CASES:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        target = (
            f"target < {TARGETS[name]:.1f} s: {'met' if w < TARGETS[name] else 'MISSED'}" if name in TARGETS else ""
        )
        heavy = f"heavy modules: {loaded[name]}" if loaded[name] else ""
        print(f"{name:13s} {w:6.2f} s wall {c:6.2f} s CPU   {target:24s} {heavy}")


if __name__ == "__main__":
    main()
