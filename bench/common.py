"""What every benchmark reports the same way: peak RSS, the machine, and the `--json` result `bench/all.py` reads.

A benchmark's `measure(args)` returns `result(name, rows, peak_rss_mb, **details)`: one row per comparison, each
with what is compared, ours, the baseline (a number and its unit) and ratio = baseline / ours (> 1: ours is
faster or smaller), measured in the same run. `main(args)` prints the JSON (`--json`) or the report.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

KEYS = ("benchmark", "rows", "peak_rss_mb", "machine")
ROW_KEYS = ("compared", "ours", "baseline", "unit", "ratio")


def vm_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmHWM: this process's peak RSS, VmRSS: now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), MB."""
    return vm_kib("VmHWM") / 1024


def children_peak_rss_mb() -> float:
    """The largest peak RSS of the child processes waited for so far, MB (ru_maxrss of RUSAGE_CHILDREN)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def machine() -> dict:
    """CPU model, the vector extensions that matter here, cores, and the load when the benchmark started."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        lscpu = ""
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    flags = cpu_flags()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "load_average": round(os.getloadavg()[0], 2),
    }


def describe(m: dict) -> str:
    """One line: 'Intel(R) Xeon(R) Processor, 2 cores, AVX-512 (+BF16, AMX), load 2.1'."""
    if m["avx512"]:
        extra = [name for name, key in (("BF16", "avx512_bf16"), ("AMX", "amx_bf16")) if m[key]]
        vector = "AVX-512" + (f" ({', '.join(extra)})" if extra else "")
    else:
        vector = "no AVX-512"
    return f"{m['cpu']}, {m['cores']} cores, {vector}, load average {m['load_average']:.1f} at the start"


def row(compared: str, ours: float, baseline: float, unit: str, ratio: float | None = None, **extra) -> dict:
    """One comparison; ratio defaults to baseline / ours."""
    ratio = baseline / ours if ratio is None and ours else ratio
    return {"compared": compared, "ours": ours, "baseline": baseline, "unit": unit, "ratio": ratio, **extra}


def result(name: str, rows: list[dict], peak_rss_mb: float, **details) -> dict:
    return {"benchmark": name, "rows": rows, "peak_rss_mb": peak_rss_mb, "machine": machine(), **details}


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (bench/all.py)")


def emit(args, res: dict, report) -> None:
    """`--json`: the result as one JSON line (the last line on stdout); else the benchmark's own report."""
    if args.json:
        print(json.dumps(res))
    else:
        report(res)
