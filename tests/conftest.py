"""Shared fixtures: paths to ../shared (golden data, demo media), tiny configs, seeded RNG."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEOSALMONN_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden" / "official_v1"
MEDIA = SHARED / "media"
DEMO_VIDEO = MEDIA / "4405327307.mp4"
DEMO_WAV = MEDIA / "4405327307.wav"
DEMO_IMAGE = MEDIA / "761183272.jpg"
DEMO_FLAC = MEDIA / "1272-128104-0000.flac"

needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden data not found at {GOLDEN}")
needs_media = pytest.mark.skipif(not DEMO_VIDEO.is_file(), reason=f"demo media not found at {MEDIA}")


@pytest.fixture(scope="session")
def golden_json() -> dict:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return json.loads((GOLDEN / "golden.json").read_text())


@pytest.fixture(scope="session")
def golden_tensors():
    """golden_tensors(case) -> dict of the official tensors recorded for that case."""
    from safetensors.torch import load_file

    cache: dict[str, dict[str, torch.Tensor]] = {}

    def get(case: str) -> dict[str, torch.Tensor]:
        if not GOLDEN.is_dir():
            pytest.skip(f"golden data not found at {GOLDEN}")
        if case not in cache:
            cache[case] = load_file(str(GOLDEN / "tensors" / f"{case}.safetensors"))
        return cache[case]

    return get


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
