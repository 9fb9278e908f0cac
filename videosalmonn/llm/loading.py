"""Loading an HF causal LM without building it first: empty (meta) modules, then every tensor of every shard
assigned straight on the target device in the target dtype, one shard at a time.

    config.json ─► empty model (parameters on meta, buffers real) ─► [int8: Int8Linear in place of the projections]
    shard 1 ─► tensor by tensor: .to(device, dtype) (int8: quantised on the device) ─► assigned ─► shard freed
    shard 2 ─► ...
    coverage: missing / unexpected / mis-shaped keys are one CheckpointError (RoPE `inv_freq` known-ignored)

Every file is memory-mapped (`weights.read_tensors`) and each tensor's pages are handed back once it is assigned
(`weights.release`), so host memory holds about one tensor plus, on a CPU target, the model itself (weights kept
as read, e.g. fp16 into fp16 on the CPU, stay views of the file). Nothing is randomly initialised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from videosalmonn.errors import CheckpointError
from videosalmonn.llm.placement import DISK, Placement
from videosalmonn.llm.quantization import Int8Linear, to_int8
from videosalmonn.weights import check_loading_info, read_tensors, release

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


def weight_files(root: Path) -> list[Path]:
    """The weight files of an HF model directory, safetensors first (as transformers picks them)."""
    for name in INDEX_FILES:
        if (root / name).is_file():
            try:
                shards = sorted(set(json.loads((root / name).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise CheckpointError(f"{root / name}: not a readable weight index ({type(e).__name__})") from None
            return [root / s for s in shards]
    for name in SINGLE_FILES:
        if (root / name).is_file():
            return [root / name]
    raise CheckpointError(f"{root}: no weights found (looked for {', '.join(INDEX_FILES + SINGLE_FILES)})")


def iter_tensors(path: Path) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) of one weight file, each a view of the memory-mapped file (`weights.read_tensors`: nothing
    is read until a tensor is used; pass each to `weights.release` once copied). A legacy pickle is read whole."""
    state = read_tensors(path)
    try:
        for name in list(state):
            yield name, state.pop(name)
    finally:
        del state


def empty_causal_lm(hf_config, attention: str, int8: bool = False) -> nn.Module:
    """An HF causal LM of `hf_config` with every parameter on the meta device (buffers such as RoPE frequencies
    real); `int8`: the decoder projections are empty Int8Linear."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(hf_config, attn_implementation=attention)
    return to_int8(model) if int8 else model


def load_into(
    model: nn.Module,
    files: list[Path],
    *,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    ignore: tuple[str, ...] = (),
    placement: Placement | None = None,
) -> None:
    """Assign every tensor of `files` into the empty `model` on `device` in `dtype` (integer tensors keep theirs),
    shard by shard; then tie the embeddings if the config ties them and check coverage (one CheckpointError).
    `placement`: each tensor goes to the device of its module in the device map instead (`disk`: to the offload
    folder, left on meta)."""
    own = model.state_dict(keep_vars=True)
    derived = {f"{n}.weight_scale" for n, m in model.named_modules() if isinstance(m, Int8Linear)}
    # a weight kept as read shares the memory-mapped shard, keeping all of it mapped: fine when every weight is
    # kept so (no copy at all), not when most are quantised away (int8): then the kept ones are copied
    copy = bool(derived)
    expected = set(own) - derived
    tied = _tied_keys(model)
    seen, unexpected, bad_shape = set(), [], []
    for path in files:
        for key, value in iter_tensors(path):
            if key not in expected:
                unexpected.append(key)
            elif tuple(value.shape) != tuple(own[key].shape):
                bad_shape.append((key, f"{tuple(value.shape)} vs model {tuple(own[key].shape)}"))
            else:
                target = device if placement is None else placement.target(key)
                if target == DISK:
                    placement.offload(model, key, value, dtype)
                else:
                    _assign(model, key, value, target, dtype, copy)
                seen.add(key)
            release(value)  # its pages: read again from the file if the model kept the view itself
            del value
    missing = sorted(expected - seen - tied)
    info = {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": bad_shape}
    check_loading_info(info, source, ignore=ignore)
    if tied and not tied & seen:
        model.tie_weights()
    empty = [n for n, p in model.named_parameters() if p.is_meta and not (placement and placement.is_offloaded(p))]
    if empty:
        raise CheckpointError(f"{source}: {len(empty)} weight(s) were not loaded ({', '.join(empty[:4])})")


def _assign(
    model: nn.Module, key: str, value: Tensor, device: torch.device, dtype: torch.dtype, copy: bool = False
) -> None:
    """Put `value` at `key` (a parameter or buffer path) on `device`; floating tensors in `dtype` (`copy`: never
    the tensor read itself)."""
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name)
    if isinstance(module, Int8Linear) and name == "weight":
        module.set_weight(value.to(device=device, dtype=dtype))  # quantised on the target device
        return
    value = value.to(device=device, dtype=dtype if value.is_floating_point() else None, copy=copy)
    if name in module._parameters:
        old = module._parameters[name]
        module._parameters[name] = nn.Parameter(value, requires_grad=old.requires_grad and value.is_floating_point())
    else:
        module._buffers[name] = value


def _tied_keys(model: nn.Module) -> set[str]:
    """Keys a checkpoint may omit because the config ties them to another (the LM head to the embeddings)."""
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if not getattr(text_config, "tie_word_embeddings", False):
        return set()
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if isinstance(tied, (dict, list, tuple, set)) else set()
