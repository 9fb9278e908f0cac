"""Weights: official delta key map + coverage, our trainable-only safetensors, atomic writes, loud errors."""

import pytest
import torch
from conftest import GOLDEN, needs_golden

from videosalmonn.checkpoint import (
    export_official_delta,
    load_delta,
    load_model,
    load_trainable,
    save_trainable,
    trainable_state,
)
from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.official.delta import convert_official_delta, official_to_ours
from videosalmonn.official.golden import GoldenDir
from videosalmonn.weights import read_tensors


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig.from_name("tiny"), "cpu")


def test_trainable_roundtrip(tiny, tmp_path):
    path = tmp_path / "ckpt" / "trainable.safetensors"
    with torch.no_grad():
        tiny.connector.queries[0].add_(1.0)
    save_trainable(tiny, path)
    assert not list(path.parent.glob(".*.tmp"))  # atomic: no temp file left
    other = load_model(ModelConfig.from_name("tiny", ["seed=7"]), "cpu")
    load_trainable(other, path)
    for k, v in trainable_state(tiny).items():
        assert torch.equal(v, trainable_state(other)[k]), k


def test_official_export_roundtrip(tiny, tmp_path):
    path = tmp_path / "delta.pt"
    export_official_delta(tiny, path)
    keys = set(read_tensors(path))
    assert "video_query_tokens" in keys and "low_query_tokens" in keys and "llama_proj.weight" in keys
    assert any(k.endswith("self_attn.q_proj.lora_A.default.weight") for k in keys)
    other = load_model(ModelConfig.from_name("tiny", ["seed=3"]), "cpu")
    load_delta(other, path)
    for k, v in trainable_state(tiny).items():
        assert torch.equal(v, trainable_state(other)[k]), k


def test_missing_and_unexpected_keys_fail_loudly(tiny, tmp_path):
    state = {k: v.clone() for k, v in trainable_state(tiny).items()}
    del state["connector.proj.weight"]
    state["connector.extra"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(path))
    with pytest.raises(
        CheckpointError,
        match=r"bad.safetensors: .*1 missing \(connector.proj.weight\); "
        r"1 unexpected \(connector.extra\)",
    ):
        load_trainable(tiny, path)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_trainable(tiny, tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="garbage.pt: cannot be read"):
        load_delta(tiny, garbage)


def test_unknown_official_key_is_an_error():
    cfg = ModelConfig.from_name("tiny")
    assert official_to_ours("low_Qformer.bert.encoder.layer.0.attention.self.query.weight", cfg) is None
    assert official_to_ours("video_Qformer.bert.embeddings.position_ids", cfg) is None
    with pytest.raises(CheckpointError, match="unexpected key some_new_module.weight"):
        official_to_ours("some_new_module.weight", cfg)


@needs_golden
def test_golden_delta_coverage():
    golden = GoldenDir(GOLDEN)
    cfg = golden.config()
    delta = read_tensors(cfg.weights.delta)
    ours, unused = convert_official_delta(delta, cfg)
    assert len(delta) == 175 and len(unused) == 74 and all(k.startswith("low_Qformer.") for k in unused)
    model = load_model(cfg, "cpu")  # loads every official file with coverage checks
    assert set(ours) == set(trainable_state(model))
