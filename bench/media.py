"""Benchmark: video file -> EVA-ViT input frames, ours vs the official loader, measured in the same run.

    python bench/media.py [--clip PATH] [--repeats 5]

Default clip: the official demo video (../shared/media/4405327307.mp4, 23.7 s, 640x360, 29.97 fps -> 48 frames).

official   a reproduction of what the released code runs (spec §1.2-1.3): pytorchvideo 0.1.5
           `EncodedVideo.from_path(decoder="pyav", decode_audio=False)` (the file read into memory), for every
           1-s clip of `UniformClipSampler(1, backpad_last=True)` `get_clip`: seek to 1024 pts before the clip,
           decode up to its end, every frame of the clip to RGB and float32, `UniformTemporalSubsample(2)`, /255;
           then all clips at once: `F.interpolate(bicubic)` on (C, T, H, W) and the CLIP mean/std
per-frame  our sampler transforming each frame as it is decoded (this package before the grouped transform)
ours       `load_video(policy="official")`: the sampled frames decoded from a packet index, transformed in groups
           of 32 on a worker thread while decoding goes on

The three run alternately (A B C A B C ...), after one warm-up each; medians are reported, with the process
CPU time, whether the frames are identical (torch.equal) to the official loader's, and the peak RSS (VmHWM) of
this process and of one load by each, in a fresh interpreter.
`--json` prints the result as one JSON object (what `bench/all.py` reads).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import torch
import torch.nn.functional as F
from common import add_json_flag, describe, emit, peak_rss_mb, result, row

from videosalmonn.media import video as V
from videosalmonn.media.timeline import IMAGE_MEAN, IMAGE_STD

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "media" / "4405327307.mp4"
SEEK_MARGIN_PTS = 1024  # pytorchvideo _pyav_decode_stream


class OfficialPyAV:
    """pytorchvideo 0.1.5 `EncodedVideoPyAV` with decode_audio=False: selective decoding per `get_clip`."""

    def __init__(self, path: Path):
        self.container = av.open(io.BytesIO(path.read_bytes()))  # EncodedVideo.from_path reads the whole file
        stream = self.container.streams.video[0]
        self.time_base, self.start_pts = stream.time_base, stream.start_time or 0
        self.duration = int(stream.duration - self.start_pts) * self.time_base  # pts_to_secs

    def _pts(self, seconds) -> int:
        return math.ceil(seconds / self.time_base) + self.start_pts  # secs_to_pts(round_mode="ceil")

    def get_clip(self, start, end) -> torch.Tensor | None:
        """(3, T, H, W) float32 0..255: the frames with pts in [start, end), or None."""
        first, last = self._pts(start), self._pts(end)
        stream = self.container.streams.video[0]
        self.container.seek(max(first - SEEK_MARGIN_PTS, 0), any_frame=False, backward=True, stream=stream)
        frames = {}
        for frame in self.container.decode(video=0):
            if first <= frame.pts < last:
                frames[frame.pts] = frame
            elif frame.pts >= last:
                break
        decoded = [(torch.from_numpy(frames[p].to_rgb().to_ndarray()), p) for p in sorted(frames)]
        kept = [f for f, p in decoded if first <= p < last]
        return torch.stack(kept).permute(3, 0, 1, 2).to(torch.float32) if kept else None


def official_loader(path: Path, size: int = V.DEFAULT_SIZE) -> torch.Tensor:
    """The official get_video + load_and_transform_video_data_blip: (T, 3, size, size) float32."""
    video = OfficialPyAV(path)
    clips = []
    for start, end in V.official_clip_times(video.duration):  # the official get_clip_timepoints
        clip = video.get_clip(start, end)
        if clip is None:
            continue  # official: a clip without frames is skipped
        index = torch.linspace(0, clip.shape[1] - 1, 2).clamp(0, clip.shape[1] - 1).long()  # UniformTemporalSubsample
        clips.append(torch.index_select(clip, 1, index) / 255.0)
    video.container.close()
    x = torch.cat(clips, dim=1)  # (3, T, H, W)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)  # ResizeVideo
    mean, std = torch.tensor(IMAGE_MEAN), torch.tensor(IMAGE_STD)
    x = x.sub_(mean[:, None, None, None]).div_(std[:, None, None, None])  # NormalizeVideo
    return x.transpose(0, 1)  # (T, 3, size, size)


def per_frame(path: Path, size: int = V.DEFAULT_SIZE) -> torch.Tensor:
    """Our sampler with one `transform_frames` call per decoded frame (the previous `load_video`)."""

    def convert(frame: av.VideoFrame) -> torch.Tensor:
        return V.transform_frames(torch.from_numpy(V._rgb(frame))[None], size)[0]

    return V._sample(path, "official", None, convert, torch.stack).frames


def ours(path: Path, size: int = V.DEFAULT_SIZE) -> torch.Tensor:
    return V.load_video(path, "official", size=size).frames


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, float, torch.Tensor]]:
    """name -> (median wall s, median process CPU s, output) over `repeats` alternating runs after a warm-up."""
    outs = {name: fn() for name, fn in fns.items()}
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), outs[name]) for name in fns}


def child_peak(clip: Path, name: str) -> float:
    """Peak RSS (MB) of a fresh interpreter that runs one loader once on `clip`."""
    cmd = [sys.executable, __file__, "--clip", str(clip), "--peak-of", name]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure(args) -> dict:
    info = V.probe_video(args.clip)
    fns = {"official": lambda: official_loader(args.clip), "per-frame": lambda: per_frame(args.clip)}
    fns["ours"] = lambda: ours(args.clip)
    res = interleaved(fns, args.repeats)
    w_off, c_off, ref = res["official"]
    runs = {
        name: {"wall_s": w, "cpu_s": c, "shape": list(out.shape), "identical": torch.equal(out, ref)}
        for name, (w, c, out) in res.items()
    }
    clip = f"{args.clip.name} -> {ref.shape[0]} frames of {ref.shape[-1]}²"
    rss = {name: child_peak(args.clip, name) for name in fns}
    rows = [
        row(f"{clip}: ours vs the official loader (reproduced)", runs["ours"]["wall_s"], w_off, "s",
            cpu_ratio=c_off / runs["ours"]["cpu_s"], identical=runs["ours"]["identical"],
            rss_ours_mb=rss["ours"], rss_baseline_mb=rss["official"]),
        row(f"{clip}: ours vs one transform per frame (before)", runs["ours"]["wall_s"], runs["per-frame"]["wall_s"],
            "s", cpu_ratio=runs["per-frame"]["cpu_s"] / runs["ours"]["cpu_s"], identical=runs["ours"]["identical"],
            rss_ours_mb=rss["ours"], rss_baseline_mb=rss["per-frame"]),
    ]  # fmt: skip
    video = f"{info.duration:.1f} s {info.width}x{info.height} {info.fps:.2f} fps"
    return result("media", rows, peak_rss_mb(), clip=args.clip.name, video=video, repeats=args.repeats, runs=runs)


def report(r: dict) -> None:
    print(
        f"{r['clip']}: {r['video']}, {torch.get_num_threads()} threads, {r['repeats']} interleaved runs each, medians"
    )
    off = r["runs"]["official"]
    for name, x in r["runs"].items():
        print(
            f"{name:9s} {x['wall_s']:6.3f} s wall {x['cpu_s']:6.3f} s CPU  {off['wall_s'] / x['wall_s']:5.1f}x wall "
            f"{off['cpu_s'] / x['cpu_s']:5.1f}x CPU vs official  frames {tuple(x['shape'])} identical to official: "
            f"{x['identical']}"
        )
    x = r["rows"][0]
    print(
        f"peak RSS: {r['peak_rss_mb']:.0f} MB all three in this process; one load in a fresh interpreter: ours "
        f"{x['rss_ours_mb']:.0f} MB, per-frame {r['rows'][1]['rss_baseline_mb']:.0f} MB, official "
        f"{x['rss_baseline_mb']:.0f} MB (VmHWM)"
    )
    print(describe(r["machine"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEMO)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peak-of", choices=["official", "per-frame", "ours"], help=argparse.SUPPRESS)
    add_json_flag(ap)
    args = ap.parse_args()
    if args.peak_of:  # child of child_peak: one load, then this process's peak RSS
        {"official": official_loader, "per-frame": per_frame, "ours": ours}[args.peak_of](args.clip)
        print(peak_rss_mb())
        return
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
