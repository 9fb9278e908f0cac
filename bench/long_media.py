"""Benchmark: long video in bounded memory (issue 13 item 4): peak RSS and time from a 30-s clip to a 10-min video.

    python bench/long_media.py [--lengths 30 120 300 600] [--size 64] [--fps 10] [--tokens 4]

The videos are generated in a temporary directory (PyAV): `size`x`size` colour frames that change every frame, at
`fps`, H.264, and a 440 Hz tone (AAC, 44.1 kHz mono). Each length runs on the tiny model in a fresh interpreter
per path, the paths alternating:

ours     `Pipeline.load` (media longer than 60 s: decoded and encoded piece by piece, frames uint8 until their
         batch of 32, audio one 30-s chunk per encoder call; the clip keeps only the encoder features), `prepare`,
         the connector (in 60-s spans): the LLM's input
before   the same computation as the package did before: media loaded whole (every frame as float32 224², the
         audio features of every chunk), collated, 4 chunks per Whisper/BEATs call, the connector over the whole
         clip at once (here: STREAMED_SECONDS = inf, chunk_batch = 4, one connector span)

Per length and path: the child's peak RSS (VmHWM) once the LLM's input is ready ("media side") and after a greedy
answer of `tokens` tokens (the LLM over the whole sequence: with the default eager attention it holds L x L scores,
which no media streaming bounds), the wall and CPU time of the media side, and whether ours gives the LLM exactly
the embeddings the old path gives (torch.equal). Target: ours' media-side peak RSS for the longest video <= 1.2x
that for the shortest, time linear in length. `--json` prints the result as one JSON object (`bench/all.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from common import add_json_flag, describe, emit, result, row, vm_kib

ROOT = Path(__file__).resolve().parents[1]
TONE_HZ = 440.0
AUDIO_RATE = 44_100
AUDIO_FRAME = 1024  # AAC frame (samples)
PATHS = ("ours", "before")
TARGET_GROWTH = 1.2  # issue 13 item 4: peak RSS of a 10-min video <= 1.2x that of a 30-s clip


def write_video(path: Path, seconds: float, size: int, fps: int) -> Path:
    """`seconds` of `size`² colour ramps shifting every frame at `fps` (H.264) and a 440 Hz tone (AAC mono)."""
    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "threads": "1"})
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        written = 0  # audio samples
        for i in range(round(seconds * fps)):
            img = np.stack([(4 * xx + 3 * i) % 256, (4 * yy + 5 * i) % 256, np.full_like(xx, 7 * i % 256)], axis=-1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            upto = round((i + 1) / fps * AUDIO_RATE)  # interleaved: the audio up to the end of this frame
            while written < upto:
                n = min(AUDIO_FRAME, upto - written)
                t = (written + np.arange(n)) / AUDIO_RATE
                piece = av.AudioFrame.from_ndarray(
                    (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[None], format="fltp", layout="mono"
                )
                piece.sample_rate, piece.pts = AUDIO_RATE, written
                out.mux(audio.encode(piece))
                written += n
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def child(args) -> None:
    """One length, one path, in this fresh interpreter: prints {model_mb, media_mb, answer_mb, wall_s, cpu_s, ...}."""
    import torch

    import videosalmonn.pipeline as P
    from videosalmonn.config import GenerationConfig
    from videosalmonn.types import Request

    pipe = P.Pipeline.from_pretrained("tiny", [f"llm.attention={args.attention}"], device="cpu")
    if args.streamed_seconds is not None:
        P.STREAMED_SECONDS = args.streamed_seconds
    if args.child_path == "before":
        P.STREAMED_SECONDS = math.inf
        pipe.model.encoder.chunk_batch = 4
        pipe.model.connector.span_slots = 10**9
    model_mb = vm_kib("VmHWM") / 1024
    request = Request("What happens in the video?", video=str(args.child))
    wall, cpu = time.perf_counter(), time.process_time()
    clip = pipe.load(request)
    batch, counts = pipe.prepare([request], [clip])
    with torch.no_grad():
        embeds = pipe.model.encode(batch).embeds  # (1, N, E): what the LLM is given
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    media_mb = vm_kib("VmHWM") / 1024
    torch.save(embeds, args.out)
    gen = GenerationConfig(max_new_tokens=args.tokens, num_beams=1, repetition_penalty=1.0)
    pipe.answer_batch([request], gen, [clip])
    out = {"model_mb": model_mb, "media_mb": media_mb, "answer_mb": vm_kib("VmHWM") / 1024}
    out |= {"wall_s": wall, "cpu_s": cpu, "media_tokens": counts[0], "streamed": clip.features is not None}
    print(json.dumps(out))


def run_child(args, video: Path, path: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(video), "--child-path", path, "--out", str(out)]
    cmd += ["--tokens", str(args.tokens), "--attention", args.attention]
    if args.streamed_seconds is not None:
        cmd += ["--streamed-seconds", str(args.streamed_seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{path} on {video.name} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def label(seconds: float) -> str:
    return f"{seconds / 60:g}-min video" if seconds >= 60 else f"{seconds:g}-s clip"


def measure(args) -> dict:
    import torch

    runs: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="long-media-") as tmp:
        for seconds in args.lengths:
            video = write_video(Path(tmp) / f"{seconds:g}s.mp4", seconds, args.size, args.fps)
            runs[f"{seconds:g}"] = {p: run_child(args, video, p, Path(tmp) / f"{p}.pt") for p in PATHS}
            ours, before = (torch.load(Path(tmp) / f"{p}.pt", weights_only=True) for p in PATHS)
            runs[f"{seconds:g}"]["identical"] = bool(torch.equal(ours, before))
            video.unlink()
    short, long = min(args.lengths), max(args.lengths)
    first, last = runs[f"{short:g}"], runs[f"{long:g}"]
    growth = last["ours"]["media_mb"] / first["ours"]["media_mb"]
    per_minute = {k: {p: r[p]["cpu_s"] / (float(k) / 60) for p in PATHS} for k, r in runs.items()}
    tokens = last["ours"]["media_tokens"]
    media_rss = dict(rss_ours_mb=last["ours"]["media_mb"], rss_baseline_mb=last["before"]["media_mb"])
    rows = [
        row(
            f"{label(long)} -> {tokens} media tokens: peak RSS to the LLM input, ours vs before",
            last["ours"]["media_mb"],
            last["before"]["media_mb"],
            "MB",
            same_llm_input=last["identical"],
            **media_rss,
        ),
        row(
            f"ours, peak RSS to the LLM input: {label(long)} vs {label(short)} (target ≤ {TARGET_GROWTH:g}×)",
            last["ours"]["media_mb"],
            first["ours"]["media_mb"],
            "MB",
            growth=growth,
            target_growth=TARGET_GROWTH,
            rss_ours_mb=last["ours"]["media_mb"],
            rss_baseline_mb=first["ours"]["media_mb"],
        ),
        row(
            f"{label(long)}: media side time, ours vs before",
            last["ours"]["wall_s"],
            last["before"]["wall_s"],
            "s",
            cpu_ratio=last["before"]["cpu_s"] / last["ours"]["cpu_s"],
            cpu_per_minute=[round(per_minute[k]["ours"], 2) for k in runs],
            **media_rss,
        ),
        row(
            f"{label(long)}: peak RSS after a {args.tokens}-token answer ({args.attention} LLM attention), "
            "ours vs before",
            last["ours"]["answer_mb"],
            last["before"]["answer_mb"],
            "MB",
            rss_ours_mb=last["ours"]["answer_mb"],
            rss_baseline_mb=last["before"]["answer_mb"],
        ),
    ]
    details = dict(lengths=args.lengths, size=args.size, fps=args.fps, attention=args.attention, runs=runs)
    return result("long_media", rows, max(r[p]["answer_mb"] for r in runs.values() for p in PATHS), **details)


def report(r: dict) -> None:
    print(
        f"tiny model, {r['size']}x{r['size']} video at {r['fps']} fps + 44.1-kHz AAC tone, each length and path in a "
        f"fresh interpreter; peak RSS = VmHWM; media side = load + prepare + connector (the LLM's input)"
    )
    print(
        f"{'length':>8s} {'path':7s} {'tokens':>6s} {'model':>7s} {'media side':>10s} {'+answer':>8s} {'wall':>7s} "
        f"{'CPU':>7s} {'CPU/min':>7s} streamed identical"
    )
    for k, runs in r["runs"].items():
        for p in PATHS:
            x = runs[p]
            print(
                f"{float(k):7.0f}s {p:7s} {x['media_tokens']:6d} {x['model_mb']:5.0f}MB {x['media_mb']:8.0f}MB "
                f"{x['answer_mb']:6.0f}MB {x['wall_s']:6.1f}s {x['cpu_s']:6.1f}s {x['cpu_s'] / (float(k) / 60):6.2f}s "
                f"{str(x['streamed']):8s} {runs['identical'] if p == 'ours' else ''}"
            )
    growth = r["rows"][1]["growth"]
    met = "met" if growth <= TARGET_GROWTH else "MISSED"
    print(f"ours, media-side peak RSS, longest / shortest: {growth:.2f}x (target <= {TARGET_GROWTH:g}x: {met})")
    print(describe(r["machine"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=float, nargs="+", default=[30, 120, 300, 600], help="video lengths (s)")
    ap.add_argument("--size", type=int, default=64, help="frame side of the generated videos (px)")
    ap.add_argument("--fps", type=int, default=10, help="frame rate of the generated videos")
    ap.add_argument("--tokens", type=int, default=4, help="greedy answer length (the LLM part)")
    ap.add_argument("--attention", choices=["eager", "sdpa"], default="eager", help="the tiny LLM's attention")
    ap.add_argument("--streamed-seconds", type=float, help="stream media longer than this (default: the package's)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-path", choices=PATHS, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    add_json_flag(ap)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
