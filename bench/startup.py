"""Benchmark: start-up time of the package and the command line, each in a fresh interpreter.

    python bench/startup.py [--repeats 5]

Every case runs `repeats` times as a subprocess, the cases alternating (A B C ... A B C ...); medians of the wall
time and of the child's CPU time (user + system) are printed, with the child's peak RSS and the heavy libraries
the case loaded. `--json` prints the result as one JSON object (what `bench/all.py` reads); its ratios are
against the eager import.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_json_flag, describe, emit, result, row

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


def run(argv: list[str]) -> tuple[float, float, float, str]:
    """(wall s, child CPU s, child peak RSS MB, what it said it loaded)."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=os.environ.copy())
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: CPU and peak RSS
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {stderr[-500:]}")
    loaded = next((line[len("loaded: ") :] for line in stderr.splitlines() if line.startswith("loaded:")), "")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, loaded


def measure(args) -> dict:
    wall: dict[str, list[float]] = {name: [] for name in CASES}
    cpu: dict[str, list[float]] = {name: [] for name in CASES}
    rss: dict[str, float] = dict.fromkeys(CASES, 0.0)
    loaded: dict[str, str] = {}
    for _ in range(args.repeats):
        for name, argv in CASES.items():
            w, c, m, what = run(argv)
            wall[name].append(w)
            cpu[name].append(c)
            rss[name] = max(rss[name], m)
            loaded[name] = what
    cases = {
        name: {"wall_s": statistics.median(wall[name]), "cpu_s": statistics.median(cpu[name]), "rss_mb": rss[name]}
        for name in CASES
    }
    eager = cases["eager import"]
    rows = [
        row(
            f"`{name}` vs the eager `from videosalmonn import Pipeline`",
            cases[name]["wall_s"],
            eager["wall_s"],
            "s",
            target_s=TARGETS[name],
            rss_ours_mb=cases[name]["rss_mb"],
            rss_baseline_mb=eager["rss_mb"],
        )
        for name in ("import", "--help")
    ]
    return result("startup", rows, max(rss.values()), repeats=args.repeats, cases=cases, loaded=loaded)


def report(r: dict) -> None:
    print(f"start-up, {r['repeats']} interleaved runs each, medians ({os.cpu_count()} CPUs)")
    for name, x in r["cases"].items():
        w = x["wall_s"]
        target = (
            f"target < {TARGETS[name]:.1f} s: {'met' if w < TARGETS[name] else 'MISSED'}" if name in TARGETS else ""
        )
        heavy = f"heavy modules: {r['loaded'][name]}" if r["loaded"][name] else ""
        print(
            f"{name:13s} {w:6.2f} s wall {x['cpu_s']:6.2f} s CPU {x['rss_mb']:5.0f} MB peak RSS  {target:24s} {heavy}"
        )
    print(describe(r["machine"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    add_json_flag(ap)
    args = ap.parse_args()
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
