"""Benchmark: sampling frames of a 30-s 720p clip, ours vs decode-everything, measured in the same run.

    python bench/media.py [--clip PATH] [--repeats 3]

Without --clip, a 30-s 1280x720 30-fps H.264 clip (keyframe every 2 s, AAC track) is generated once under
runs/bench/. The baseline decodes every frame, converts every frame to RGB and keeps them all, then picks the
sampled ones (what the official pytorchvideo path does per 1-s clip); ours decodes only what the sampled frames
need and converts only those. Both give the same frames (checked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from videosalmonn.media.video import load_video, sample_frames  # noqa: E402


def make_clip(path: Path) -> Path:
    from make_fixtures import write_video

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} (once) ...", flush=True)
        write_video(
            path,
            size=(1280, 720),
            fps=30,
            n_frames=900,
            audio_seconds=30,
            options={"g": "60", "preset": "ultrafast", "crf": "28"},
        )
    return path


def decode_everything(path: Path, times: tuple[float, ...]) -> torch.Tensor:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        frames = [(float((f.pts - (s.start_time or 0)) * s.time_base), f.to_rgb().to_ndarray()) for f in c.decode(s)]
    stamps = np.array([t for t, _ in frames])
    return torch.from_numpy(np.stack([frames[int(np.argmin(np.abs(stamps - t)))][1] for t in times]))


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=ROOT / "runs" / "bench" / "clip30s_720p.mp4")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    clip = make_clip(args.clip)
    print(f"{clip.name}: {torch.get_num_threads()} threads, best of {args.repeats}")
    for policy in ("uniform", "official"):
        t_ours, ours = best(lambda policy=policy: sample_frames(clip, policy), args.repeats)
        t_base, base = best(lambda times=ours.times: decode_everything(clip, times), args.repeats)
        same = torch.equal(ours.frames, base)
        t_load, loaded = best(lambda policy=policy: load_video(clip, policy), args.repeats)
        print(
            f"{policy:9s} {len(ours.times)} frames: ours {t_ours:6.2f} s ({ours.decoded_frames} frames decoded), "
            f"decode-everything {t_base:6.2f} s -> {t_base / t_ours:5.1f}x faster; same frames: {same}; "
            f"ours + transform to 224: {t_load:.2f} s"
        )


if __name__ == "__main__":
    main()
