"""The one home of weight files: reading, resolving and checking state dicts.

    resolve(source)            a local path, a hub file `owner/repo/path/in/repo` (in the HF cache), the local
                               snapshot of a hub id (configs and tokenizers only), or the cache directory of a
                               converted part (`parts:NAME`, see `videosalmonn/parts`)
    resolve_file(source)       the same for one weight file (the delta, BEATs, LAVIS files): a local file or a
                               hub file; a missing released file's error says where it is published
    resolve_model(source)      an HF model directory with every weight file its index names (downloads them)
    weight_files(source, ...)  the files of an HF directory or hub id holding the tensors `prefix*` (downloads them)
    load_pickle(path)          `torch.load(..., weights_only=True)`, one-line errors naming the file
    read_pickled_tensors(...)  the tensors of a pickled state dict (optionally wrapped, e.g. LAVIS {'model': sd})
    read_tensors(path)         the tensors of one safetensors or pickle file
    read_state_dict(source)    the `prefix`ed tensors of a file, an HF directory (sharded or not) or a hub id
    read_hf_config(source)     an HF directory's config.json (None for a single file)
    load_checked(module, sd)   copy into a module; missing, unexpected and mis-shaped keys are one error
    check_loading_info(info)   the same check on the loading info of an HF `from_pretrained`

Every pickle goes through `torch.load(..., weights_only=True)`. Every load reports missing and unexpected keys:
nothing is silently dropped.

Streamed reading: the tensors `read_tensors`, `read_pickled_tensors` and `read_state_dict` return are views of the
memory-mapped file (safetensors: mapped here, tensor by tensor from its header; pickles: `torch.load(mmap=True)`),
so reading costs no memory until a tensor is used. `load_checked` copies each one into the module (cast to the
target device and dtype) and then hands its pages back (`release`), so loading a file peaks at about its largest
tensor, not at the file (a mapped file's touched pages otherwise stay resident until the last view is gone).
A view is valid while its file is not rewritten in place (our writers replace files atomically): copy what you
keep beyond loading.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import mmap
import os
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from videosalmonn.errors import CheckpointError
from videosalmonn.hub import HubFile, fetch_file, repo_file, snapshot
from videosalmonn.parts import is_part, resolve_part

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
HUB_PATTERNS = ["*.json", "*.model", "*.txt"]  # what `resolve` fetches of a hub id: configs and tokenizers

# The released single files video-SALMONN needs. `RELEASED`: their hub homes (`videosalmonn download` fetches these
# when a config that needs them leaves them unset); `PUBLISHED`: where each is published, for the error of a
# missing one. BEATs has no model repo on the hub: Microsoft publishes it as a download link; the official
# video-SALMONN README links a copy in a Hugging Face Space, pinned here to the commit it links.
DELTA_FILE = "pytorch_model_4_5001.pt"
BEATS_FILE = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
RELEASED = {
    "delta": HubFile("tsinghua-ee/Video-SALMONN", DELTA_FILE),
    "beats": HubFile(
        "fffiloni/SALMONN-7B-gradio", f"beats/{BEATS_FILE}", "space", "677c0125de736ab92751385e1e8664cd03c2ce0d"
    ),
}
LAVIS = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models"
PUBLISHED = {
    DELTA_FILE: f"the video-SALMONN delta is on the hub: {RELEASED['delta']}",
    BEATS_FILE: (
        "BEATs is published by Microsoft as a download link on https://github.com/microsoft/unilm/tree/master/beats, "
        f"in no Hugging Face model repo; the official video-SALMONN README links a copy: {RELEASED['beats']}"
    ),
    "instruct_blip_vicuna13b_trimmed.pth": (
        f"published by LAVIS, {LAVIS}/InstructBLIP/instruct_blip_vicuna13b_trimmed.pth "
        "(or set weights.instructblip=Salesforce/instructblip-vicuna-13b)"
    ),
    "eva_vit_g.pth": f"published by LAVIS, {LAVIS}/BLIP2/eva_vit_g.pth",
}


def load_pickle(path: str | Path) -> object:
    """`torch.load(weights_only=True)` of a local file or a hub file (`resolve_file`); one-line errors naming it."""
    path = resolve_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch checkpoint ({first})") from None


def read_pickled_tensors(path: str | Path, wrapped_in: str | None = None) -> dict[str, Tensor]:
    """The tensors of a pickled state dict (memory-mapped views, see the module doc); `wrapped_in`: the key holding
    it (LAVIS files: `{'model': sd}`)."""
    path = resolve_file(path)
    obj, mapped = _load_pickle_mapped(path)
    if wrapped_in is not None:
        if not isinstance(obj, dict) or wrapped_in not in obj:
            raise CheckpointError(f"{path}: expected a checkpoint {{{wrapped_in!r}: state_dict}}")
        obj = obj[wrapped_in]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    out = {k: (v.data if isinstance(v, nn.Parameter) else v) for k, v in obj.items() if isinstance(v, Tensor)}
    return {k: _mark(v, path) for k, v in out.items()} if mapped else out


def read_tensors(path: str | Path, keys: Iterable[str] | None = None, prefix: str = "") -> dict[str, Tensor]:
    """All (or the given, or the `prefix`ed) tensors of one `.safetensors` or pickle file, local or on the hub, as
    views of the memory-mapped file (see the module doc): nothing is read until a tensor is used."""
    path = resolve_file(path)
    if path.suffix == ".safetensors":
        return map_safetensors(path, keys, prefix)
    sd = read_pickled_tensors(path)
    if keys is not None:
        wanted = set(keys)
        sd = {k: v for k, v in sd.items() if k in wanted}
    return {k: v for k, v in sd.items() if k.startswith(prefix)}


# safetensors' dtype names (https://github.com/huggingface/safetensors, format: u64 header size, JSON header, data)
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAPPED = "_videosalmonn_mapped_from"  # attribute of a tensor that is a view of a memory-mapped file: its path


def map_safetensors(path: Path, keys: Iterable[str] | None = None, prefix: str = "") -> dict[str, Tensor]:
    """The (given or `prefix`ed) tensors of a safetensors file as views of one private memory map of it."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            file_size = os.fstat(f.fileno()).st_size
            if size > file_size - 8:
                raise ValueError(f"header of {size} bytes in a file of {file_size}")
            header = json.loads(f.read(size))
            start = 8 + size
            tensors = {k: _entry(k, v, file_size - start) for k, v in header.items() if k != "__metadata__"}
            wanted = tensors if keys is None else [k for k in keys if k in tensors]
            names = [k for k in wanted if k.startswith(prefix)]
            if not names:
                return {}
            # private + writable: a view can be written (copy on write), the file never is
            mapping = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    out = {}
    for name in names:
        dtype, shape, begin, end = tensors[name]
        if end == begin:  # empty tensors have no bytes to map
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        view = torch.frombuffer(mapping, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        out[name] = _mark(view.view(shape), path)
    return out


def _entry(name: str, info: dict, data_size: int) -> tuple[torch.dtype, list[int], int, int]:
    """(dtype, shape, begin, end) of one header entry, its byte range checked against its shape and the file."""
    dtype, shape, (begin, end) = SAFETENSORS_DTYPES[info["dtype"]], info["shape"], info["data_offsets"]
    numel = 1
    for n in shape:
        numel *= n
    if not 0 <= begin <= end <= data_size or end - begin != numel * dtype.itemsize:
        raise ValueError(f"tensor {name}: bytes {begin}..{end} do not hold {info['dtype']} {shape}")
    return dtype, shape, begin, end


def _load_pickle_mapped(path: Path) -> tuple[object, bool]:
    """(`torch.load(weights_only=True, mmap=True)`, True); a legacy (non-zip) pickle cannot be mapped: (read whole,
    False), or its one-line error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
    except Exception:
        return load_pickle(path), False


def _mark(t: Tensor, path: Path) -> Tensor:
    setattr(t, MAPPED, str(path))
    return t


def is_mapped(t: Tensor) -> bool:
    """True for a tensor returned by the read functions here: a view of a memory-mapped weight file."""
    return getattr(t, MAPPED, None) is not None


def release(t: Tensor) -> None:
    """Hand the memory pages of a mapped tensor (`is_mapped`) back to the OS once it has been copied: its file
    pages stay resident otherwise. The tensor stays valid (a later read pages it in again from the file). Any
    other tensor is left alone; a no-op where madvise is not available (not Linux)."""
    madvise = _madvise()
    if madvise is None or not is_mapped(t) or not t.is_contiguous() or t.device.type != "cpu":
        return
    page = mmap.PAGESIZE
    begin, end = t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()
    first, last = -(-begin // page) * page, end // page * page  # whole pages only: neighbours keep theirs
    if last > first:
        madvise(first, last - first, mmap.MADV_DONTNEED)


@functools.cache
def _madvise():
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc.madvise


def resolve(source: str | Path) -> Path:
    """A local path, a `parts:` directory, or from the hub (downloaded into its cache unless HF_HUB_OFFLINE=1):
    a file `owner/repo/path/in/repo` (see `hub_file`), else the snapshot of a repo id (configs and tokenizers)."""
    if is_part(source):
        return resolve_part(source)
    path = Path(os.path.expanduser(str(source)))
    if path.exists():
        return path
    file = hub_file(source)
    if file is not None:
        return _fetch(file)
    if str(source).startswith((".", "/", "~")) or path.suffix in (*PICKLE_SUFFIXES, ".safetensors"):
        raise CheckpointError(f"{source}: no such file or directory{published(path.name)}")
    return snapshot(str(source), HUB_PATTERNS)


def resolve_file(source: str | Path) -> Path:
    """One weight file (the delta, BEATs, a LAVIS file): a local file, or a hub file (see `hub_file`) fetched into
    the HF cache. A missing one is an error naming it, and where it is published if it is a released file."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointError(f"{source}: expected a checkpoint file, found a directory")
    file = hub_file(source)
    if file is None:
        raise CheckpointError(f"{source}: checkpoint file not found{published(path.name)}")
    return _fetch(file)


def hub_file(source: str | Path) -> HubFile | None:
    """The hub file a weight reference names: `owner/repo/path/in/repo` (also `spaces/...`, `datasets/...`,
    `owner/repo@REV/...`) that is not a local path. A `Path`, a path that exists or starts with `.`, `/` or `~`,
    or one with fewer parts (a repo id `org/name`, `x.pt`, `ckpt/x.pt`) is never looked up on the hub."""
    if not isinstance(source, str):
        return None
    text = source
    if is_part(text) or text.startswith((".", "/", "~")) or Path(os.path.expanduser(text)).exists():
        return None
    return HubFile.parse(text)


def _fetch(file: HubFile) -> Path:
    hint = "" if file in RELEASED.values() else published(Path(file.filename).name)
    return fetch_file(file, note=f"; no such local file either{hint}")


def published(name: str) -> str:
    """` (where NAME is published)` for a released file, else ``: the end of a not-found error."""
    return f" ({PUBLISHED[name]})" if name in PUBLISHED else ""


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
        root = snapshot(str(source), needed)
    elif hub and index is None:  # no index: one file, safetensors preferred
        for name in ("model.safetensors", "pytorch_model.bin"):
            root = snapshot(str(source), [name])
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


def weight_files(source: str | Path, prefixes: tuple[str, ...] = ("",)) -> list[Path]:
    """The local files of an HF directory or hub id holding the tensors named `prefix*` (a hub id's are downloaded
    into its cache): the one weight file, or the index and the shards it names for them; a file: itself."""
    root = resolve(source)
    if root.is_file():
        return [root]
    index, shards = _shards(root, str(source), prefixes)
    return [*([index] if index else []), *shards]


def _read_hf_dir(root: Path, source: str, prefix: str) -> dict[str, Tensor]:
    _, shards = _shards(root, source, (prefix,))
    out = {}
    for path, keys in shards.items():
        out.update(read_tensors(path, keys, prefix=prefix))
    return out


def _shards(root: Path, source: str, prefixes: tuple[str, ...]) -> tuple[Path | None, dict[Path, list[str] | None]]:
    """(the index, {file: the keys it holds named `prefix*`}) of an HF directory, safetensors first; a single
    weight file: (None, {file: None}, all its keys). A shard missing here and on the hub is an error naming it."""
    for name in WEIGHT_FILES:
        path = root / name if (root / name).is_file() else _hub_file(source, name)
        if path is None:
            continue
        if not name.endswith(".index.json"):
            return None, {Path(path): None}
        try:
            index = json.loads(Path(path).read_text())["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: not a readable weight index ({type(e).__name__}: {e})") from None
        shards = {}
        for shard in sorted({f for k, f in index.items() if k.startswith(prefixes)}):
            shard_path = root / shard if (root / shard).is_file() else _hub_file(source, shard)
            if shard_path is None:
                raise CheckpointError(f"{source}: shard {shard} is missing")
            shards[Path(shard_path)] = [k for k, f in index.items() if f == shard and k.startswith(prefixes)]
        return Path(path), shards
    raise CheckpointError(f"{source}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def _hub_file(source: str, filename: str) -> Path | None:
    """Fetch one file of a hub repo into the cache (None if the source is local or the file does not exist)."""
    if is_part(source) or Path(os.path.expanduser(source)).exists():
        return None
    return repo_file(source, filename)


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
    module built empty (meta tensors) takes them as they are, moved to `device` (floating ones in `dtype`), except
    views of a mapped file (`is_mapped`), always copied; each one's pages are released once it is copied.
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
        for k, v in state_dict.items():  # one tensor at a time: a mapped one is copied, then its pages released
            if own[k].is_meta:
                floating = (dtype or own[k].dtype) if v.is_floating_point() else None
                assign[k] = v.to(device=device, dtype=floating, copy=is_mapped(v))
            else:
                own[k].copy_(v.to(own[k].dtype))
            release(v)
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
