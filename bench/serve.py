"""Benchmark: `videosalmonn serve` under N concurrent chat requests, dynamic batching on vs off.

    python bench/serve.py [--model tiny] [--requests 32] [--max-tokens 16] [--max-batch-size 8]
                          [--video tests/assets/clip2s.mp4] [--repeats 1]

For each setting a fresh server is started (the CLI, as a user runs it), warmed up with two requests, then sent
`--requests` requests at once (a video data URL + a question, greedy, `--max-tokens` new tokens; four different
questions). Reports requests/s over the whole burst and the p50/p95 latency of the requests (send to last byte),
the batch sizes the server used (from /health) and the server's peak RSS (VmHWM). Everything runs on this machine
(the server uses the CPU cores the client also needs); all traffic is to 127.0.0.1. `--json` prints the result as
one JSON object (what `bench/all.py` reads).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import add_json_flag, describe, emit, result, row

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ("What moves?", "What is the sound?", "Describe the scene.", "What colour is the square?")
START_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, max_batch_size: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "videosalmonn",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--max-batch-size",
        str(max_batch_size),
        "--max-queue",
        "1024",
        "--request-timeout",
        str(REQUEST_TIMEOUT_S),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start within {START_TIMEOUT_S} s")


def payload(model: str, video_url: str, question: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": question}, {"type": "video_url", "video_url": {"url": video_url}}],
            }
        ],
    }


async def burst(url: str, bodies: list[dict]) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def one(body: dict) -> float:
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        latencies = await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - t0, list(latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run(args, max_batch_size: int, video_url: str) -> dict:
    proc, url = start(args.model, max_batch_size)
    try:
        bodies = [
            payload(args.model, video_url, QUESTIONS[i % len(QUESTIONS)], args.max_tokens) for i in range(args.requests)
        ]
        asyncio.run(burst(url, bodies[:2]))  # warm-up
        before = httpx.get(f"{url}/health", timeout=10).json()
        results = [asyncio.run(burst(url, bodies)) for _ in range(args.repeats)]
        health = httpx.get(f"{url}/health", timeout=10).json()
        rss_mb = proc_peak_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    sizes = {k: v - before["batch_sizes"].get(k, 0) for k, v in health["batch_sizes"].items()}
    wall = statistics.median(w for w, _ in results)
    latencies = [x for _, lat in results for x in lat]
    return {
        "batching": f"on (max {max_batch_size})" if max_batch_size > 1 else "off",
        "req_per_s": args.requests / wall,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "wall": wall,
        "batch_sizes": {k: v for k, v in sizes.items() if v},
        "rss_mb": rss_mb,
    }


def proc_peak_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a running process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(args) -> dict:
    video_url = "data:video/mp4;base64," + base64.b64encode(args.video.read_bytes()).decode()
    on, off = (run(args, size, video_url) for size in (args.max_batch_size, 1))
    compared = (
        f"serve {args.model}, {args.requests} concurrent requests ({args.video.name}, {args.max_tokens} tokens): "
        f"batching (max {args.max_batch_size}) vs one at a time, burst wall"
    )
    rows = [
        row(compared, on["wall"], off["wall"], "s", rss_ours_mb=on["rss_mb"], rss_baseline_mb=off["rss_mb"]),
    ]
    settings = {k: getattr(args, k) for k in ("model", "requests", "max_tokens", "max_batch_size", "repeats")}
    return result("serve", rows, max(on["rss_mb"], off["rss_mb"]), runs=[on, off], video=args.video.name, **settings)


def report(r: dict) -> None:
    print(
        f"{r['requests']} concurrent requests, {r['model']}, {r['video']}, {r['max_tokens']} new tokens, "
        f"{describe(r['machine'])}"
    )
    print(f"{'batching':<14} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'burst s':>8} {'peak MB':>8}  batch sizes")
    for x in r["runs"]:
        print(
            f"{x['batching']:<14} {x['req_per_s']:7.2f} {x['p50']:7.2f} {x['p95']:7.2f} {x['wall']:8.2f} "
            f"{x['rss_mb']:8.0f}  {x['batch_sizes']}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--video", type=Path, default=ROOT / "tests" / "assets" / "clip2s.mp4")
    p.add_argument("--repeats", type=int, default=1, help="bursts per setting (the median wall time is reported)")
    add_json_flag(p)
    args = p.parse_args()
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
