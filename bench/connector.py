"""Benchmark: synchronisation + MRC Q-Former forward at the released dimensions, random weights.

    python bench/connector.py [--clips 4] [--repeats 3] [--device cpu|cuda] [--dtype float32|bfloat16|float16]

Real dims: InstructBLIP 32 x 768 per frame, Whisper 1280, BEATs 768 -> 2304-d joint input, Q-Former 768 wide,
2 layers with the 2304-d causal block, levels (1 frame, 3 queries) and (10 frames, 30 queries), LLM width 5120;
a 30-s clip = 60 frames + one 30-s audio chunk -> 180 LLM tokens. Prints time per clip and peak memory for
our batched connector (all windows of all clips in one Q-Former call per level) and, as the baseline measured
in the same run, the same weights called window by window (how the official code loops).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

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


def looped(conn: MultiResolutionConnector, f: AVFeatures) -> torch.Tensor:
    """Baseline: the same computation, one Q-Former call per window and per clip (official style)."""
    x, slot_mask, _ = conn.sync(f)
    x = conn.norm(x)
    b, t, q, d = x.shape
    outs = []
    for i, lv in enumerate(conn.cfg.levels):
        per_level = []
        for s in range(b):
            for w in range(t // lv.frames):
                window = x[s : s + 1, w * lv.frames : (w + 1) * lv.frames]
                mask = slot_mask[s : s + 1, w * lv.frames : (w + 1) * lv.frames]
                per_level.append(conn.level(i, window, mask).reshape(1, -1, conn.cfg.width))
        outs.append(torch.cat(per_level, dim=1).view(b, -1, conn.cfg.width))
    return conn.proj(torch.cat(outs, dim=-1))


def timed(fn, repeats: int, device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4, help="30-s clips per batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    conn = MultiResolutionConnector(ConnectorConfig(), DV, Q, DW, DB, E).to(device, dtype).eval()
    params = sum(p.numel() for p in conn.parameters()) / 1e6
    f = features(args.clips, device, dtype)
    print(
        f"connector: {params:.1f} M parameters, {args.clips} x 30-s clips, {device} {args.dtype}, "
        f"{torch.get_num_threads()} threads"
    )
    with torch.no_grad():
        ours = conn(f).embeds
        ref = looped(conn, f)
        err = (ours.float() - ref.float()).abs().max().item()
        base_mem = peak_mb(device)
        t_ours = timed(lambda: conn(f), args.repeats, device)
        mem = peak_mb(device)
        t_loop = timed(lambda: looped(conn, f), args.repeats, device)
    print(
        f"batched (ours):     {1000 * t_ours / args.clips:8.1f} ms per clip   peak memory {mem:8.0f} MB "
        f"({'process RSS' if device.type == 'cpu' else 'allocated'}; {base_mem:.0f} MB before timing)"
    )
    print(f"window loop (base): {1000 * t_loop / args.clips:8.1f} ms per clip")
    print(f"speed-up: {t_loop / t_ours:.2f}x   outputs {tuple(ours.shape)}   max |batched - loop| = {err:.2e}")


if __name__ == "__main__":
    main()
