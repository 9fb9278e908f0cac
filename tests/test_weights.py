"""Weight files (videosalmonn.weights): reading, resolving, config.json, weights-only pickles, checked loading."""

import json
from fractions import Fraction

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from videosalmonn.errors import CheckpointError
from videosalmonn.weights import (
    few,
    load_checked,
    load_pickle,
    read_hf_config,
    read_pickled_tensors,
    read_state_dict,
    read_tensors,
)


def test_load_checked_copies_and_reports_every_problem():
    model = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))
    good = {k: torch.full_like(v, 0.5, dtype=torch.float64) for k, v in model.state_dict().items()}
    load_checked(model, good, source="ok.pt")
    assert model[0].weight.dtype == torch.float32 and torch.all(model[0].weight == 0.5)
    bad = {**good, "0.weight": torch.zeros(2, 4), "extra": torch.zeros(1)}
    del bad["1.bias"]
    with pytest.raises(
        CheckpointError,
        match=r"^bad.pt: does not match the model: 1 missing \(1.bias\); "
        r"1 unexpected \(extra\); 1 shape mismatch\(es\) \(0.weight \(2, 4\) "
        r"vs model \(2, 3\)\)$",
    ):
        load_checked(model, bad, source="bad.pt")


def test_load_checked_expected_subset():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    part = {"1.weight": torch.ones(2, 2), "1.bias": torch.ones(2)}
    load_checked(model, part, source="part.pt", expected=["1.weight", "1.bias"])
    assert torch.all(model[1].weight == 1)
    with pytest.raises(CheckpointError, match=r"1 missing \(1.bias\); 1 unexpected \(0.bias\)"):
        load_checked(
            model,
            {"1.weight": torch.ones(2, 2), "0.bias": torch.ones(2)},
            source="p.pt",
            expected=["1.weight", "1.bias"],
        )
    with pytest.raises(ValueError, match="not in the module: nope"):
        load_checked(model, part, source="part.pt", expected=["nope"])


def test_few():
    assert few(["a", "b"]) == "a, b"
    assert few([str(i) for i in range(6)]) == "0, 1, 2, 3, ... (+2)"


def test_pickles_are_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "obj": Fraction(1, 3)}, path)  # not an allowed type for weights_only
    with pytest.raises(CheckpointError, match=r"evil.pt: cannot be read as a weights-only torch checkpoint"):
        load_pickle(path)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_pickle(tmp_path / "absent.pt")


def test_read_pickled_tensors_wrapped(tmp_path):
    path = tmp_path / "lavis.pth"
    torch.save({"model": {"a": nn.Parameter(torch.ones(2)), "step": 3}}, path)
    sd = read_pickled_tensors(path, wrapped_in="model")
    assert list(sd) == ["a"] and type(sd["a"]) is torch.Tensor
    with pytest.raises(CheckpointError, match=r"lavis.pth: expected a checkpoint \{'state_dict': state_dict\}"):
        read_pickled_tensors(path, wrapped_in="state_dict")
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="expected a state dict, found list"):
        read_pickled_tensors(path)


def test_read_hf_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"encoder_attention_heads": 4}))
    assert read_hf_config(tmp_path) == {"encoder_attention_heads": 4}
    save_file({"w": torch.ones(1)}, str(tmp_path / "model.safetensors"))
    assert read_hf_config(tmp_path / "model.safetensors") is None  # a single file has no config
    with pytest.raises(CheckpointError, match="no such file"):
        read_hf_config(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: not a readable config.json"):
        read_hf_config(tmp_path)


def test_read_state_dict_sharded_reads_only_prefixed_shards(tmp_path):
    save_file({"enc.a": torch.ones(1), "dec.b": torch.zeros(1)}, str(tmp_path / "s1.safetensors"))
    save_file({"dec.c": torch.zeros(1)}, str(tmp_path / "s2.safetensors"))
    index = {"weight_map": {"enc.a": "s1.safetensors", "dec.b": "s1.safetensors", "dec.c": "s2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "s2.safetensors").rename(tmp_path / "moved.safetensors")  # never opened for enc.*
    assert list(read_state_dict(tmp_path, "enc.")) == ["a"]
    with pytest.raises(CheckpointError, match="shard s2.safetensors is missing"):
        read_state_dict(tmp_path, "dec.")
    assert list(read_tensors(tmp_path / "s1.safetensors", prefix="dec.")) == ["dec.b"]
