"""`videosalmonn inspect` (paper App. E): per-level cosine similarities among a sample's output queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videosalmonn import Pipeline
from videosalmonn.cli import main
from videosalmonn.inspection import LevelSimilarity, cosine_matrix, sample_similarities, summary_line, write
from videosalmonn.types import Request

CLIP = Path(__file__).resolve().parent / "assets" / "clip2s.mp4"


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def levels(pipe):
    return sample_similarities(pipe, Request("Describe the video.", video=str(CLIP)))


def test_matrices_are_symmetric_with_unit_diagonal(levels, pipe):
    assert [(lv.frames, lv.queries) for lv in levels] == [(lv.frames, lv.queries) for lv in pipe.cfg.connector.levels]
    for lv in levels:
        m = lv.matrix
        assert m.dtype == np.float64 and m.shape[0] == m.shape[1] == lv.windows * lv.queries
        assert np.array_equal(m, m.T) and np.array_equal(np.diag(m), np.ones(len(m)))
        assert (m >= -1 - 1e-12).all() and (m <= 1 + 1e-12).all()
    # a 2-s clip with its audio: 4 slots padded to 10, so 10 level-0 windows of 3 queries, 1 level-1 window of 30
    assert [lv.windows for lv in levels] == [10, 1]


def test_matrices_match_a_direct_computation_from_encode(levels, pipe):
    request = Request("Describe the video.", video=str(CLIP))
    batch, counts = pipe.prepare([request], [pipe.load(request)])
    with torch.no_grad():
        out = pipe.model.encode(batch)
    for i, lv in enumerate(levels):
        h = out.levels[i][0]  # (W, Q, D): all windows are the sample's own (batch of one)
        q = h.reshape(-1, h.shape[-1]).double()
        direct = F.cosine_similarity(q[:, None, :], q[None, :, :], dim=-1).numpy()
        np.testing.assert_allclose(lv.matrix, direct, atol=1e-10)
    assert sum(lv.matrix.shape[0] for lv in levels[:1]) == counts[0]  # level 0: one query per LLM token


def test_means():
    m = np.array([[1.0, 0.5, 0.0, 0.2], [0.5, 1.0, 0.1, 0.3], [0.0, 0.1, 1.0, -0.4], [0.2, 0.3, -0.4, 1.0]])
    lv = LevelSimilarity(frames=10, queries=2, matrix=m)
    assert lv.windows == 2
    assert lv.mean_off_diagonal == pytest.approx(2 * (0.5 + 0.0 + 0.2 + 0.1 + 0.3 - 0.4) / 12)
    assert lv.mean_within_window == pytest.approx(2 * (0.5 - 0.4) / 4)
    assert np.allclose(cosine_matrix(torch.tensor([[1.0, 0.0], [1.0, 1.0]])), [[1, 2**-0.5], [2**-0.5, 1]])


def test_write_and_summary(levels, tmp_path):
    pytest.importorskip("matplotlib")
    summary = write(levels, tmp_path, "clip2s.mp4")
    png = (tmp_path / "similarity.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    for i, lv in enumerate(levels):
        assert np.array_equal(np.load(tmp_path / f"level{i}.npy"), lv.matrix)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    line = summary_line(levels)
    assert "\n" not in line and all(f"{lv.mean_off_diagonal:.4f}" in line for lv in levels)


def test_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert (
        main(["inspect", "--model", "tiny", "--video", str(CLIP), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("mean off-diagonal cosine similarity: level 0")
    assert (tmp_path / "o" / "similarity.png").is_file() and (tmp_path / "o" / "level1.npy").is_file()
    assert main(["inspect", "--model", "tiny", "--out", str(tmp_path)]) == 2  # no media: one line, exit 2
