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
CPU time and whether the frames are identical (torch.equal) to the official loader's.
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from pathlib import Path

import av
import torch
import torch.nn.functional as F

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEMO)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    info = V.probe_video(args.clip)
    print(
        f"{args.clip.name}: {info.duration:.1f} s {info.width}x{info.height} {info.fps:.2f} fps, "
        f"{torch.get_num_threads()} threads, {args.repeats} interleaved runs each, medians"
    )
    fns = {"official": lambda: official_loader(args.clip), "per-frame": lambda: per_frame(args.clip)}
    fns["ours"] = lambda: ours(args.clip)
    res = interleaved(fns, args.repeats)
    w_off, c_off, ref = res["official"]
    for name, (w, c, out) in res.items():
        print(
            f"{name:9s} {w:6.3f} s wall {c:6.3f} s CPU  {w_off / w:5.1f}x wall {c_off / c:5.1f}x CPU vs official  "
            f"frames {tuple(out.shape)} identical to official: {torch.equal(out, ref)}"
        )


if __name__ == "__main__":
    main()
