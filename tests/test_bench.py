"""Each benchmark's `--json` mode runs at its smallest size and returns what `bench/all.py` summarises. No timing
is checked: the numbers are the benchmarks' business, not a test's (bench/all.py prints them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ("connector", "media", "startup", "train_step", "serve", "load_memory", "bf16", "long_media")
HEAVY = {"load_memory": "writes ~9 GiB of random 13B weights and loads them 3 times (VIDEOSALMONN_BENCH_HEAVY=1)"}


def run_all(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "all.py"), "--smallest", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=1800,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHES)
def test_bench_json_has_the_summary_keys(name):
    if name in HEAVY and not os.environ.get("VIDEOSALMONN_BENCH_HEAVY"):
        pytest.skip(HEAVY[name])
    done = run_all("--only", name, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    (res,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["benchmark"] == name
    assert res["peak_rss_mb"] > 0
    assert {"cpu", "cores", "avx512", "avx512_bf16", "amx_bf16"} <= set(res["machine"])
    assert res["rows"]
    for row in res["rows"]:
        assert {"compared", "ours", "baseline", "unit", "ratio"} <= set(row)
        assert row["ours"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
    if name == "media":  # what the media row claims: our frames are the official loader's
        assert all(row["identical"] for row in res["rows"])
    if name == "long_media":  # the streamed path gives the LLM the old path's embeddings, bit for bit
        assert res["rows"][0]["same_llm_input"]


@pytest.mark.slow
def test_summary_table_markdown():
    done = run_all("--only", "startup", "--markdown")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| benchmark |"))
    assert lines[header + 1].startswith("|---|")
    assert lines[header + 2].startswith("| startup | `import` ")
    assert "cores" in lines[0]
