"""The one home of weight files: reading, resolving and checking state dicts.

    resolve(source)            a local path, the local snapshot of a hub id (configs and tokenizers only), or the
                               cache directory of a converted part (`parts:NAME`, see `videosalmonn/parts`)
    resolve_model(source)      an HF model directory with every weight file its index names (downloads them)
    load_pickle(path)          `torch.load(..., weights_only=True)`, one-line errors naming the file
    read_pickled_tensors(...)  the tensors of a pickled state dict (optionally wrapped, e.g. LAVIS {'model': sd})
    read_tensors(path)         the tensors of one safetensors or pickle file
    read_state_dict(source)    the `prefix`ed tensors of a file, an HF directory (sharded or not) or a hub id
    read_hf_config(source)     an HF directory's config.json (None for a single file)
    load_checked(module, sd)   copy into a module; missing, unexpected and mis-shaped keys are one error
    check_loading_info(info)   the same check on the loading info of an HF `from_pretrained`

Every pickle goes through `torch.load(..., weights_only=True)`. Every load reports missing and unexpected keys:
nothing is silently dropped.
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
from videosalmonn.parts import is_part, resolve_part

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def load_pickle(path: str | Path) -> object:
    """`torch.load(weights_only=True)` with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch checkpoint ({first})") from None


def read_pickled_tensors(path: str | Path, wrapped_in: str | None = None) -> dict[str, Tensor]:
    """The tensors of a pickled state dict; `wrapped_in`: the key holding it (LAVIS files: `{'model': sd}`)."""
    obj = load_pickle(path)
    if wrapped_in is not None:
        if not isinstance(obj, dict) or wrapped_in not in obj:
            raise CheckpointError(f"{path}: expected a checkpoint {{{wrapped_in!r}: state_dict}}")
        obj = obj[wrapped_in]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: (v.data if isinstance(v, nn.Parameter) else v) for k, v in obj.items() if isinstance(v, Tensor)}


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
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    sd = read_pickled_tensors(path)
    if keys is not None:
        wanted = set(keys)
        sd = {k: v for k, v in sd.items() if k in wanted}
    return {k: v for k, v in sd.items() if k.startswith(prefix)}


def resolve(source: str | Path) -> Path:
    """A local path, the local snapshot of a hub id (download unless HF_HUB_OFFLINE=1), or a `parts:` directory."""
    if is_part(source):
        return resolve_part(source)
    path = Path(os.path.expanduser(str(source)))
    if path.exists():
        return path
    looks_local = str(source).startswith((".", "/", "~")) or path.suffix in (*PICKLE_SUFFIXES, ".safetensors")
    if looks_local or str(source).count("/") > 1:  # hub ids: "org/name", or legacy "bert-base-uncased"
        raise CheckpointError(f"{source}: no such file or directory")
    return _snapshot(str(source), ["*.json", "*.model", "*.txt"])


def resolve_model(source: str | Path) -> Path:
    """An HF model directory holding every weight file it needs (e.g. for `from_pretrained`).

    A hub id's snapshot gets the shards its index names (or its single weight file) downloaded: `resolve` fetches
    configs and tokenizers only. A local directory missing a shard is an error naming it.
    """
    root = resolve(source)
    if root.is_file():
        raise CheckpointError(f"{source}: expected an HF model directory or hub id, got a file")
    hub = not is_part(source) and not Path(os.path.expanduser(str(source))).exists()
    index, needed = _needed_weight_files(root)
    if hub and needed and not all((root / f).is_file() for f in needed):
        root = _snapshot(str(source), needed)
    elif hub and index is None:  # no index: one file, safetensors preferred
        for name in ("model.safetensors", "pytorch_model.bin"):
            root = _snapshot(str(source), [name])
            if (root / name).is_file():
                break
    if index is None and not any((root / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        raise CheckpointError(f"{source}: no weights found (looked for {', '.join(WEIGHT_FILES)})")
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise CheckpointError(f"{root / index}: names {len(missing)} missing weight file(s) ({few(missing)})")
    return root


def _needed_weight_files(root: Path) -> tuple[str | None, list[str]]:
    """The index file of an HF directory (safetensors first) and the shards it names; (None, []) without one."""
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        path = root / name
        if path.is_file():
            try:
                return name, sorted(set(json.loads(path.read_text())["weight_map"].values()))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise CheckpointError(f"{path}: not a readable weight index ({type(e).__name__}: {e})") from None
    return None, []


def _snapshot(repo_id: str, patterns: list[str]) -> Path:
    """The local snapshot of a hub repo with the files matching `patterns` (downloaded unless HF_HUB_OFFLINE=1)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise CheckpointError(
            f"{repo_id}: not a local path and not available from the Hugging Face hub "
            f"({type(e).__name__}); download it and pass the directory"
        ) from None


def read_state_dict(source: str | Path, prefix: str = "") -> dict[str, Tensor]:
    """Tensors whose name starts with `prefix` (prefix stripped) from a file, an HF directory or a hub id.

    Sharded checkpoints are read shard by shard, only the shards holding `prefix` keys.
    """
    root = resolve(source)
    if root.is_file():
        sd = read_tensors(root, prefix=prefix)
    else:
        sd = _read_hf_dir(root, str(source), prefix)
    out = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(f"{source}: holds no weights named {prefix}*")
    return out


def read_hf_config(source: str | Path) -> dict | None:
    """The `config.json` of an HF directory or hub id; None for a single file or a directory without one.

    Resolving first also makes a missing path fail here, with one line, before any weights are read.
    """
    root = resolve(source)
    path = root / "config.json"
    if not root.is_dir() or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable config.json ({e})") from None


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
    if is_part(source) or Path(os.path.expanduser(source)).exists():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, filename))
    except Exception:
        return None


def load_checked(
    module: nn.Module,
    state_dict: dict[str, Tensor],
    *,
    source: str,
    expected: Iterable[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """`load_state_dict` that fails loudly on missing or unexpected keys and on shape mismatches.

    `expected`: the keys the state dict must hold, no more, no fewer (default: all of `module.state_dict()`;
    e.g. only the trainable parameters for a trainable-only checkpoint). Values are copied into real tensors; a
    module built empty (meta tensors) takes them as they are, moved to `device` (floating ones in `dtype`).
    """
    own = module.state_dict()
    wanted = set(own) if expected is None else set(expected)
    if not wanted <= set(own):
        raise ValueError(f"expected keys not in the module: {few(sorted(wanted - set(own)))}")
    unexpected = sorted(set(state_dict) - wanted)
    missing = sorted(wanted - set(state_dict))
    bad_shape = sorted(
        f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape
    )
    problems = [
        f"{len(keys)} {what} ({few(keys)})"
        for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (bad_shape, "shape mismatch(es)"))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: does not match the model: " + "; ".join(problems))
    assign = {}
    with torch.no_grad():
        for k, v in state_dict.items():
            if own[k].is_meta:
                assign[k] = v.to(device=device, dtype=(dtype or own[k].dtype) if v.is_floating_point() else None)
            else:
                own[k].copy_(v.to(own[k].dtype))
    if assign:  # strict=False: the keys not built empty were copied above; the result is still checked
        result = module.load_state_dict(assign, strict=False, assign=True)
        still_empty = sorted(k for k, v in module.state_dict().items() if k in wanted and v.is_meta)
        if result.unexpected_keys or still_empty:
            raise CheckpointError(
                f"{source}: not assigned to the model: {few(sorted(result.unexpected_keys) + still_empty)}"
            )


def check_loading_info(info: dict, source: str, ignore: tuple[str, ...] = ()) -> None:
    """Fail on the missing, unexpected or mis-shaped keys of `from_pretrained(..., output_loading_info=True)`.

    `ignore`: key suffixes known not to matter (e.g. RoPE `inv_freq` buffers stored by older checkpoints).
    """

    def keys(name: str) -> list[str]:
        found = (k if isinstance(k, str) else k[0] for k in info.get(name) or ())
        return sorted(k for k in found if not (ignore and k.endswith(ignore)))

    problems = [
        f"{len(found)} {what} ({few(found)})"
        for found, what in (
            (keys("missing_keys"), "missing"),
            (keys("unexpected_keys"), "unexpected"),
            (keys("mismatched_keys"), "shape mismatch(es)"),
        )
        if found
    ]
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not match the model: " + "; ".join(problems))


def few(keys: list[str], n: int = 4) -> str:
    """The first `n` keys for an error message, and how many more."""
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")
