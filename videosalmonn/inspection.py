"""`videosalmonn inspect`: cosine similarities among one sample's output queries, per MRC level (paper App. E).

    videosalmonn inspect --model tiny --video clip.mp4 --out runs/inspect

For every resolution level, the connector's output queries of the sample's windows (the Q-Former outputs before
the projection, `ConnectorOutput.levels`, the vectors the diversity loss of eq. 6 compares) are laid out window by
window, and their pairwise cosine similarities form an (N, N) matrix, N = windows x queries per window:

    level 1 (10 frames, 30 queries): N = 6 windows x 30 = 180     [ w0 | w1 | ... ]  blocks on the diagonal:
                                                                                   within one window (eq. 6)

Written to `--out`: `similarity.png` (one panel per level, matplotlib, Agg), `level{i}.npy` (the float64
matrices) and `summary.json`; printed: one line with the mean off-diagonal similarity of every level.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from videosalmonn.errors import InputError

if TYPE_CHECKING:
    import numpy as np

# numpy, torch, the pipeline and matplotlib are imported where used: `videosalmonn --help` loads none of them


@dataclass(frozen=True)
class LevelSimilarity:
    """One level's cosine-similarity matrix among the output queries of a sample's windows."""

    frames: int  # 0.5-s frames per window
    queries: int  # output queries per window
    matrix: np.ndarray  # (N, N) float64, N = windows x queries, window by window

    @property
    def windows(self) -> int:
        return self.matrix.shape[0] // self.queries

    @property
    def mean_off_diagonal(self) -> float:
        """Mean similarity over all ordered pairs of different queries (NaN for a single query)."""
        import numpy as np

        n = self.matrix.shape[0]
        return float((self.matrix.sum() - np.trace(self.matrix)) / (n * n - n)) if n > 1 else float("nan")

    @property
    def mean_within_window(self) -> float:
        """Mean over the pairs of different queries of one window: the diversity loss's quantity (eq. 6)."""
        import numpy as np

        q = self.queries
        if q < 2:
            return float("nan")
        blocks = [self.matrix[i : i + q, i : i + q] for i in range(0, self.matrix.shape[0], q)]
        return float(sum(b.sum() - np.trace(b) for b in blocks) / (len(blocks) * (q * q - q)))


def cosine_matrix(queries) -> np.ndarray:
    """(N, D) tensor -> (N, N) float64 cosine similarities, exactly symmetric with a unit diagonal."""
    import numpy as np

    x = queries.detach().double().cpu().numpy()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    sim = (sim + sim.T) / 2
    np.fill_diagonal(sim, 1.0)
    return sim


def query_similarities(levels, window_mask, frames_queries, row: int = 0) -> list[LevelSimilarity]:
    """`ConnectorOutput.levels` (B, W, Q, D) and `.window_mask` (B, W) of batch row `row`, with each level's
    (frames, queries) -> one LevelSimilarity per level over the sample's own windows (the tokens the LLM gets)."""
    out = []
    for h, mask, (frames, queries) in zip(levels, window_mask, frames_queries):
        own = h[row][mask[row]]  # (W', Q, D)
        out.append(LevelSimilarity(frames, queries, cosine_matrix(own.reshape(-1, own.shape[-1]))))
    return out


def sample_similarities(pipe, request) -> list[LevelSimilarity]:
    """Run `request`'s media through the pipeline's encoders and connector (no LLM) -> per-level similarities."""
    import torch

    from videosalmonn.model import DTYPES

    batch, _ = pipe.prepare([request], [pipe.load(request)])
    with torch.no_grad():
        out = pipe.model.encode(batch.to(pipe.device, DTYPES[pipe.cfg.dtype]))
    levels = [(lv.frames, lv.queries) for lv in pipe.cfg.connector.levels]
    return query_similarities(out.levels, out.window_mask, levels)


def plot(levels: list[LevelSimilarity], path: Path, title: str) -> None:
    """One heat map per level (cosine similarity on [-1, 1]), window edges marked, written as a PNG."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("videosalmonn inspect draws with matplotlib: pip install 'videosalmonn[inspect]'") from None

    fig = Figure(figsize=(4.2 * len(levels), 4.4), layout="constrained")  # no pyplot: the Agg canvas, no GUI
    axes = fig.subplots(1, len(levels), squeeze=False)[0]
    for i, (ax, lv) in enumerate(zip(axes, levels)):
        image = ax.imshow(lv.matrix, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        for edge in range(lv.queries, lv.matrix.shape[0], lv.queries):
            ax.axhline(edge - 0.5, color="k", linewidth=0.5)
            ax.axvline(edge - 0.5, color="k", linewidth=0.5)
        ax.set_title(
            f"level {i}: {lv.frames}-frame windows, {lv.queries} queries\nmean off-diagonal {lv.mean_off_diagonal:.3f}",
            fontsize=9,
        )
        ax.set_xlabel(f"query ({lv.windows} windows x {lv.queries})", fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)


def summary_line(levels: list[LevelSimilarity]) -> str:
    parts = [
        f"level {i} ({lv.frames}-frame windows, {lv.windows}x{lv.queries} queries): {lv.mean_off_diagonal:.4f}"
        for i, lv in enumerate(levels)
    ]
    return "mean off-diagonal cosine similarity: " + "; ".join(parts)


def write(levels: list[LevelSimilarity], out: Path, title: str) -> dict:
    """similarity.png, level{i}.npy and summary.json in `out`; returns the summary."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    plot(levels, out / "similarity.png", title)
    summary = {"sample": title, "levels": []}
    for i, lv in enumerate(levels):
        np.save(out / f"level{i}.npy", lv.matrix)
        summary["levels"].append(
            {
                "level": i,
                "frames": lv.frames,
                "queries": lv.queries,
                "windows": lv.windows,
                "mean_off_diagonal": lv.mean_off_diagonal,
                "mean_within_window": lv.mean_within_window,
                "matrix": f"level{i}.npy",
            }
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def cmd_inspect(args: argparse.Namespace) -> int:
    from videosalmonn.config import ModelConfig
    from videosalmonn.media.files import check_file
    from videosalmonn.pipeline import Pipeline, resolve_device
    from videosalmonn.types import Request

    if not (args.video or args.image or args.audio):
        raise InputError("give --video, --image or --audio")
    cfg = ModelConfig.from_name(args.model, args.set)  # a config mistake first, then the files, then the model
    device = resolve_device(args.device)
    for path in (args.video, args.image, args.audio):
        if path is not None:
            check_file(path)
    pipe = Pipeline.from_pretrained(cfg, device=device)
    request = Request(args.prompt, video=args.video, audio=args.audio, image=args.image)
    levels = sample_similarities(pipe, request)
    title = Path(args.video or args.image or args.audio).name
    write(levels, Path(args.out), title)
    print(summary_line(levels))
    print(f"wrote {Path(args.out) / 'similarity.png'}, level*.npy, summary.json", file=sys.stderr)
    if pipe.notice:
        print(f"notice: {pipe.notice}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="plot the cosine similarities among one sample's output queries per level (paper App. E)"
    )
    p.add_argument("--model", default="tiny", help="preset name, model YAML or export directory (default tiny)")
    p.add_argument("--video", help="video file (its own audio track is used unless --audio is given)")
    p.add_argument("--image", help="image file")
    p.add_argument("--audio", help="audio file")
    p.add_argument(
        "--prompt", default="Describe the video.", help="the instruction InstructBLIP's Q-Former sees with each frame"
    )
    p.add_argument("--out", required=True, help="directory for similarity.png, level*.npy and summary.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda if available, else cpu)")
    p.set_defaults(func=cmd_inspect)
