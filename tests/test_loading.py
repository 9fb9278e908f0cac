"""Loading without building first: parts that have weights are built empty (meta) and filled straight in the target
dtype; nothing about to be loaded is randomly initialised (the only random init left is peft's LoRA A matrices)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate import init_empty_weights
from conftest import GOLDEN, needs_golden
from test_real_layouts import save_bin_shards, tiny_llama

from videosalmonn.checkpoint import check_loaded, load_model
from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.model import VideoSalmonn
from videosalmonn.official.golden import GoldenDir
from videosalmonn.weights import load_checked

TINY = ModelConfig.from_name("tiny")


@pytest.fixture
def random_inits(monkeypatch) -> dict[str, int]:
    """Elements filled by random init (Tensor.uniform_ / normal_, which every nn.init function ends in) on real
    tensors, by caller: what a load that builds first would spend on weights it then overwrites."""
    counts: dict[str, int] = {}
    for name in ("uniform_", "normal_"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, **kwargs):
            if not self.is_meta:
                key = "peft" if _called_from_peft() else "other"
                counts[key] = counts.get(key, 0) + self.numel()
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    return counts


def _called_from_peft() -> bool:
    import traceback

    return any("/peft/" in frame.filename for frame in traceback.extract_stack()[-12:])


@needs_golden
def test_loading_initialises_nothing_it_loads(random_inits):
    """Official-format files for every part: before, 2.4 M of the 3.1 M weights were drawn at random first."""
    cfg = GoldenDir(GOLDEN).config()
    model = load_model(cfg, "cpu")
    assert random_inits.get("other", 0) == 0, random_inits
    lora_a = sum(p.numel() for n, p in model.named_parameters() if ".lora_A." in n)
    assert 0 < random_inits.get("peft", 0) <= 3 * lora_a  # peft draws LoRA A (then the delta replaces it)


def test_llm_is_loaded_straight_in_the_target_dtype(tmp_path):
    """fp16 from fp32 .bin shards: every weight fp16, none left on meta, RoPE frequencies still fp32."""
    model = tiny_llama()
    save_bin_shards(model, tmp_path / "llm")
    lm = LanguageModel.build(dataclasses.replace(TINY.llm, lora=None), str(tmp_path / "llm"), torch.float16, "cpu")
    params = dict(lm.model.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float16} and not any(p.is_meta for p in params.values())
    assert all(torch.equal(params[k], v.half()) for k, v in model.state_dict().items())
    assert {b.dtype for n, b in lm.model.named_buffers() if n.endswith("inv_freq")} == {torch.float32}


def test_load_checked_fills_an_empty_module_in_place():
    with init_empty_weights():
        empty = torch.nn.Linear(3, 2)
    source = torch.nn.Linear(3, 2)
    load_checked(empty, source.state_dict(), source="src", dtype=torch.float16)
    assert empty.weight.dtype == torch.float16 and torch.equal(empty.weight, source.weight.detach().half())
    with init_empty_weights():
        other = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match=r"src: does not match the model: 1 missing \(bias\)"):
        load_checked(other, {"weight": source.weight}, source="src")


def test_a_part_left_empty_is_an_error_not_a_forward_crash():
    with init_empty_weights():
        model = VideoSalmonn.from_config(TINY)
    with pytest.raises(
        CheckpointError, match=r"tensor\(s\) were built empty and never loaded: encoder\.vision\.query_tokens"
    ):
        check_loaded(model)
