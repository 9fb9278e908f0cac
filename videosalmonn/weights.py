"""Reading weights from files, directories and Hugging Face hub ids, and loading them with a coverage check.

Every pickle goes through `torch.load(..., weights_only=True)`. Every load reports missing and unexpected keys:
nothing is silently dropped (`load_checked`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from videosalmonn.errors import CheckpointError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def load_pickle(path: str | Path) -> object:
    """`torch.load(weights_only=True)` with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch checkpoint ({first})") from None


def read_tensors(path: str | Path, keys: Iterable[str] | None = None, prefix: str = "") -> dict[str, Tensor]:
    """All (or the given, or the `prefix`ed) tensors of one `.safetensors` or pickle file.

    safetensors files are read lazily: only the selected tensors are loaded.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
        try:
            with safe_open(str(path), framework="pt") as f:
                names = f.keys() if keys is None else [k for k in keys if k in f.keys()]
                return {k: f.get_tensor(k) for k in names if k.startswith(prefix)}
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    sd = {k: (v.data if isinstance(v, nn.Parameter) else v) for k, v in obj.items() if isinstance(v, Tensor)}
    if keys is not None:
        wanted = set(keys)
        sd = {k: v for k, v in sd.items() if k in wanted}
    return {k: v for k, v in sd.items() if k.startswith(prefix)}


def resolve(source: str | Path) -> Path:
    """A local path, or the local snapshot of a hub id (download unless HF_HUB_OFFLINE=1)."""
    path = Path(os.path.expanduser(str(source)))
    if path.exists():
        return path
    if str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise CheckpointError(f"{source}: no such file or directory")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(str(source), allow_patterns=["*.json", "*.model", "*.txt"]))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{source}: not a local path and not available from the Hugging Face hub "
                              f"({type(e).__name__}); download it and pass the directory") from None


def read_state_dict(source: str | Path, prefix: str = "") -> dict[str, Tensor]:
    """Tensors whose name starts with `prefix` (prefix stripped) from a file, an HF directory or a hub id.

    Sharded checkpoints are read shard by shard, only the shards holding `prefix` keys.
    """
    root = resolve(source)
    if root.is_file():
        sd = read_tensors(root, prefix=prefix)
    else:
        sd = _read_hf_dir(root, str(source), prefix)
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(f"{source}: holds no weights named {prefix}*")
    return out


def _read_hf_dir(root: Path, source: str, prefix: str) -> dict[str, Tensor]:
    for name in WEIGHT_FILES:
        path = root / name if (root / name).is_file() else _hub_file(source, name)
        if path is None:
            continue
        if not name.endswith(".index.json"):
            return read_tensors(path, prefix=prefix)
        index = json.loads(Path(path).read_text())["weight_map"]
        out = {}
        for shard in sorted({f for k, f in index.items() if k.startswith(prefix)}):
            shard_path = root / shard if (root / shard).is_file() else _hub_file(source, shard)
            if shard_path is None:
                raise CheckpointError(f"{source}: shard {shard} is missing")
            keys = [k for k, f in index.items() if f == shard and k.startswith(prefix)]
            out.update(read_tensors(shard_path, keys))
        return out
    raise CheckpointError(f"{source}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def _hub_file(source: str, filename: str) -> Path | None:
    """Fetch one file of a hub repo into the cache (None if the source is local or the file does not exist)."""
    if Path(os.path.expanduser(source)).exists():
        return None
    try:
        from huggingface_hub import hf_hub_download
        return Path(hf_hub_download(source, filename))
    except Exception:  # noqa: BLE001 - absent file in that repo
        return None


def load_checked(module: nn.Module, state_dict: dict[str, Tensor], *, source: str,
                 ignore_unexpected: Iterable[str] = (), allow_missing: Iterable[str] = ()) -> None:
    """`load_state_dict` that fails loudly on missing or unexpected keys and on shape mismatches.

    `ignore_unexpected`: key prefixes known to be unused (reported by the caller, not an error);
    `allow_missing`: key prefixes the checkpoint is allowed not to provide (e.g. frozen parts loaded elsewhere).
    """
    ignore_unexpected, allow_missing = tuple(ignore_unexpected), tuple(allow_missing)
    own = module.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(ignore_unexpected)}
    unexpected = sorted(set(state_dict) - set(own))
    missing = sorted(k for k in set(own) - set(state_dict) if not k.startswith(allow_missing))
    bad_shape = sorted(f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state_dict.items()
                       if k in own and own[k].shape != v.shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatch(es) ({_few(bad_shape)})")
    if problems:
        raise CheckpointError(f"{source}: does not match the model: " + "; ".join(problems))
    with torch.no_grad():
        for k, v in state_dict.items():
            own[k].copy_(v.to(own[k].dtype))


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n})" if len(items) > n else "")
