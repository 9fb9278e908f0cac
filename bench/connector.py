"""Benchmark: synchronisation + MRC Q-Former forward at the released dimensions, ours vs the official path.

    python bench/connector.py [--clips 4] [--repeats 5] [--device cpu|cuda] [--dtype float32|bfloat16|float16]

Real dims: InstructBLIP 32 x 768 per frame, Whisper 1280, BEATs 768 -> 2304-d joint input, Q-Former 768 wide,
2 layers with the 2304-d causal block, levels (1 frame, 3 queries) and (10 frames, 30 queries), LLM width 5120;
a 30-s clip = 60 frames + one 30-s audio chunk -> 180 LLM tokens. Random weights, the same for both sides.

official  the official computation (spec §4.2-4.3, what this package ran before the shared projections):
          LN(X) + P[pos] per level, one Q-Former call per level over all its windows, every layer's causal
          block projecting its own input, eager attention (`MultiResolutionConnector.level`, the parity reference)
ours      `MultiResolutionConnector.forward`: LN(X) projected once per layer for both levels (+ W P per level,
          kept between calls), fused attention in the causal block, 1-frame windows without a mask

The two run alternately (A B A B ...), after one warm-up each; the medians are reported, with the process CPU
time, the peak RSS (VmHWM; allocated memory on a GPU), and max |ours - official| of the LLM embeddings.
`--json` prints the result as one JSON object (what `bench/all.py` reads).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import add_json_flag, describe, emit, peak_rss_mb, result, row

from videosalmonn.config import ConnectorConfig
from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.types import AVFeatures

Q, DV, DW, DB, E = 32, 768, 1280, 768, 5120
FRAMES, CHUNKS = 60, 1  # a 30-s clip


def features(clips: int, device, dtype) -> AVFeatures:
    return AVFeatures(
        visual=torch.randn(clips, FRAMES, Q, DV, device=device, dtype=dtype),
        visual_slots=torch.full((clips,), FRAMES, device=device),
        is_image=torch.zeros(clips, dtype=torch.bool, device=device),
        whisper=torch.randn(clips, CHUNKS * 1500, DW, device=device, dtype=dtype),
        beats=torch.randn(clips, CHUNKS * 1500, DB, device=device, dtype=dtype),
        audio_slots=torch.full((clips,), CHUNKS * 60, device=device),
        modality_mask=torch.ones(clips, 2, device=device, dtype=dtype),
    )


def official(conn: MultiResolutionConnector, f: AVFeatures) -> torch.Tensor:
    """The official path with the same weights: each level alone (LN x + P, its own projections), then llama_proj."""
    x, slot_mask, _ = conn.sync(f)
    x = conn.norm(x)
    levels = [conn.level(i, x, slot_mask) for i in range(len(conn.cfg.levels))]
    b = x.shape[0]
    return conn.proj(torch.cat([h.reshape(b, -1, h.shape[-1]) for h in levels], dim=-1))


def ours(conn: MultiResolutionConnector, f: AVFeatures) -> torch.Tensor:
    return conn(f).embeds


def interleaved(fns: dict, repeats: int, device) -> dict[str, tuple[float, float]]:
    """name -> (median wall s, median process CPU s) over `repeats` alternating runs, after one warm-up each."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            w, c = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def measure(args) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    conn = MultiResolutionConnector(ConnectorConfig(), DV, Q, DW, DB, E).to(device, dtype).eval()
    f = features(args.clips, device, dtype)
    with torch.no_grad():
        a, b = ours(conn, f), official(conn, f)
        err = (a.float() - b.float()).abs().max().item()
        scale = b.float().abs().max().item()
        times = interleaved(
            {"ours": lambda: ours(conn, f), "official": lambda: official(conn, f)}, args.repeats, device
        )
    (w_ours, c_ours), (w_off, c_off) = times["ours"], times["official"]
    compared = f"connector, real dims, {args.dtype}, 30-s clips: ours vs the official one-level path"
    return result(
        "connector",
        [row(compared, w_ours / args.clips, w_off / args.clips, "s/clip", cpu_ratio=c_off / c_ours, max_error=err)],
        torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb(),
        device=str(device),
        dtype=args.dtype,
        clips=args.clips,
        repeats=args.repeats,
        threads=torch.get_num_threads(),
        params_m=sum(p.numel() for p in conn.parameters()) / 1e6,
        shape=list(a.shape),
        cpu_s_per_clip={"ours": c_ours / args.clips, "official": c_off / args.clips},
        max_abs_official=scale,
    )


def report(r: dict) -> None:
    (x,) = r["rows"]
    cpu = r["cpu_s_per_clip"]
    print(
        f"connector: {r['params_m']:.1f} M parameters, {r['clips']} x 30-s clips, {r['device']} {r['dtype']}, "
        f"{r['threads']} threads, {r['repeats']} interleaved runs each, medians"
    )
    print(f"official: {1000 * x['baseline']:8.1f} ms per clip wall, {1000 * cpu['official']:8.1f} ms CPU")
    print(f"ours:     {1000 * x['ours']:8.1f} ms per clip wall, {1000 * cpu['ours']:8.1f} ms CPU")
    print(
        f"speed-up: {x['ratio']:.2f}x wall, {x['cpu_ratio']:.2f}x CPU   outputs {tuple(r['shape'])}   "
        f"max |ours - official| = {x['max_error']:.2e} (max |official| {r['max_abs_official']:.2f})   "
        f"peak memory {r['peak_rss_mb']:.0f} MB ({'process RSS' if r['device'] == 'cpu' else 'allocated'})"
    )
    print(describe(r["machine"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4, help="30-s clips per batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    add_json_flag(ap)
    args = ap.parse_args()
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
