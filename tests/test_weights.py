"""Weight files (videosalmonn.weights): reading, resolving, config.json, weights-only pickles, checked loading."""

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from videosalmonn.errors import CheckpointError
from videosalmonn.weights import (
    few,
    is_mapped,
    load_checked,
    load_pickle,
    read_hf_config,
    read_pickled_tensors,
    read_state_dict,
    read_tensors,
    release,
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


# ------------------------------------------------------------------------- streamed reading (memory-mapped views)


def test_safetensors_are_read_as_mapped_views_equal_to_the_library(tmp_path):
    from safetensors.torch import load_file

    tensors = {
        "f32": torch.randn(3, 5),
        "bf16": torch.randn(7).bfloat16(),
        "f16": torch.randn(2, 2).half(),
        "i64": torch.arange(5),
        "i8": torch.tensor([-3, 4], dtype=torch.int8),
        "u8": torch.tensor([1, 2, 3], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5),
    }
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    ours, theirs = read_tensors(path), load_file(str(path))
    assert ours.keys() == theirs.keys()
    for k, v in theirs.items():
        assert ours[k].dtype == v.dtype and ours[k].shape == v.shape and torch.equal(ours[k], v), k
    assert is_mapped(ours["f32"]) and not is_mapped(theirs["f32"])
    ours["f32"].add_(1)  # a private mapping: the view can be written, the file is not
    assert torch.equal(read_tensors(path)["f32"], tensors["f32"])
    assert list(read_tensors(path, keys=["i8", "absent"])) == ["i8"]


def test_damaged_safetensors_is_one_line(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"w": torch.ones(4)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-4])  # the last tensor cut short
    with pytest.raises(CheckpointError, match=r"^\S*bad.safetensors: not a readable safetensors file \(.*tensor w"):
        read_tensors(path)
    path.write_bytes(b"\xff" * 16)
    with pytest.raises(CheckpointError, match=r"bad.safetensors: not a readable safetensors file"):
        read_tensors(path)


def test_pickles_are_mapped_unless_legacy(tmp_path):
    torch.save({"a": torch.arange(4.0)}, tmp_path / "zip.pt")
    torch.save({"a": torch.arange(4.0)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    mapped, legacy = read_tensors(tmp_path / "zip.pt")["a"], read_tensors(tmp_path / "legacy.pt")["a"]
    assert is_mapped(mapped) and not is_mapped(legacy)
    assert torch.equal(mapped, legacy)
    lavis = tmp_path / "lavis.pth"
    torch.save({"model": {"w": nn.Parameter(torch.ones(3))}}, lavis)
    assert is_mapped(read_pickled_tensors(lavis, wrapped_in="model")["w"])


def test_release_keeps_values_and_leaves_other_tensors_alone():
    plain = torch.ones(1 << 20)
    release(plain)  # not a view of a mapped file: never touched
    assert plain.sum() == 1 << 20


def test_released_view_reads_again_from_the_file(tmp_path):
    value = torch.randn(1 << 18)  # 1 MiB: whole pages
    save_file({"w": value}, str(tmp_path / "w.safetensors"))
    view = read_tensors(tmp_path / "w.safetensors")["w"]
    assert torch.equal(view, value)
    release(view)
    assert torch.equal(view, value)


def test_load_checked_copies_mapped_views(tmp_path):
    model = nn.Linear(4, 3)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    sd = read_tensors(tmp_path / "m.safetensors")
    with torch.device("meta"):
        empty = nn.Linear(4, 3)
    load_checked(empty, sd, source="m", device="cpu", dtype=torch.float32)  # same device and dtype: still copied
    assert not is_mapped(empty.weight) and empty.weight.data_ptr() != sd["weight"].data_ptr()
    assert torch.equal(empty.weight, model.weight) and torch.equal(empty.bias, model.bias)


STREAM_CHILD = """
import sys, torch
from torch import nn
from videosalmonn.weights import load_checked, read_state_dict
def hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
with torch.device("meta"):
    model = nn.ModuleList(nn.Linear(1024, 1024) for _ in range(32))
before = hwm()
load_checked(model, read_state_dict(sys.argv[1]), source="x", device="cpu", dtype=torch.float16)
print(hwm() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads peak RSS from /proc (Linux)")
@pytest.mark.parametrize("name", ["w.safetensors", "w.pt"])
def test_loading_a_file_peaks_at_about_its_largest_tensor(tmp_path, name):
    """A 128-MiB fp32 file of 4-MiB tensors into an fp16 module (64 MiB): the peak grows by the module plus
    about one tensor, not by the file (whole-file reading: 64 + 128 MiB)."""
    import subprocess
    import sys

    weights = {
        f"{i}.{p}": v for i, m in enumerate(nn.Linear(1024, 1024) for _ in range(32)) for p, v in m.state_dict().items()
    }
    path = tmp_path / name
    save_file(weights, str(path)) if name.endswith(".safetensors") else torch.save(weights, path)
    del weights
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(path)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    grown = float(out.stdout.strip().splitlines()[-1])
    assert grown < 64 + 32, f"peak grew by {grown:.0f} MiB loading a 128-MiB file into a 64-MiB module"
