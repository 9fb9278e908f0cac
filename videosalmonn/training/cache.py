"""Feature cache: the frozen encoders' outputs, computed once, read at every step instead of running the encoders.

Layout of a cache directory:

    index.json                  {"fingerprint": {...}, "media": {path: {size, mtime_ns, sha256}},
                                 "entries": {key: shard file name}}
    shard-<id>.safetensors      tensors "<key>.visual" (Tv, Q, Dv) or "<key>.whisper" / "<key>.beats" (Ta*25, D)
    part-<id>.json              entries of shards written but not yet merged into index.json (crash-safe)

Keys (sha256, 32 hex digits) name *what was encoded*, never where it lives:
    visual key = sha256(stream "visual", media content sha256, start, end, image?, instruction[, spotlight])
    audio key  = sha256(stream "audio",  media content sha256, start, end)
The instruction is part of the visual key because InstructBLIP's Q-Former reads it (spec §2); with
`encoders.image_qformer.use_instruction: false` it is left out. An image cut by `media.image_spotlight` (grid^2
frames, read as a video) has the grid size in its key (absent when off: the keys of earlier caches).
The *preprocessing fingerprint* (media and encoder configs, `media.image_spotlight` included, a digest of the
encoder weights, the instruction vocabulary, the storage dtype) is stored once in the index: opening a cache with a
different fingerprint is an error naming the fields that differ (a stale cache is never read). A media file whose
size or mtime changed is re-hashed, so an edited file simply has other keys.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from videosalmonn.checkpoint import atomic_write
from videosalmonn.config import ModelConfig, to_dict
from videosalmonn.errors import InputError
from videosalmonn.prompting.instruction import InstructionTokenizer
from videosalmonn.training.features import SampleFeatures
from videosalmonn.training.mixing import MediaRef

CACHE_FORMAT = 2  # 2: audio rows are the audio's own slots x 25 (1: every started 30-s chunk x 1500)
INDEX = "index.json"
HASH_BLOCK = 1 << 20


# ---------------------------------------------------------------------------------------------- fingerprint


def fingerprint(cfg: ModelConfig, encoder: nn.Module, dtype: torch.dtype, tokenizer: InstructionTokenizer) -> dict:
    """Everything besides the media and the instruction that decides the cached tensors."""
    return {
        "format": CACHE_FORMAT,
        "media": to_dict(cfg.media),
        "encoders": to_dict(cfg.encoders),
        "dtype": str(dtype).removeprefix("torch."),
        "encoder_weights_sha256": weights_digest(encoder),
        "instruction_vocab_sha256": _sha(json.dumps(sorted(tokenizer.hf.get_vocab().items()))),
    }


def weights_digest(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, shape, dtype, bytes) of `module`."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} ({_short(a)} -> {_short(b)})")
    return out


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 24 else s[:12] + "..." + s[-8:]


# ---------------------------------------------------------------------------------------------------- keys


def visual_key(
    media_sha: str, ref: MediaRef, is_image: bool, instruction: str | None, spotlight: int | None = None
) -> str:
    """`is_image`: the file is an image; `spotlight`: `media.image_spotlight` (keyed for images only)."""
    what = ["visual", media_sha, ref.start, ref.end, is_image, instruction]
    if is_image and spotlight is not None:
        what.append({"image_spotlight": spotlight})
    return _sha(json.dumps(what))[:32]


def audio_key(media_sha: str, ref: MediaRef) -> str:
    return _sha(json.dumps(["audio", media_sha, ref.start, ref.end]))[:32]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


@dataclass
class MediaStat:
    size: int
    mtime_ns: int
    sha256: str


# ------------------------------------------------------------------------------------------------- cache


class FeatureCache:
    """An opened cache directory: look-ups, reads and (for `build`) writes. Picklable for DataLoader workers."""

    def __init__(self, root: Path, index: dict):
        self.root = root
        self.fingerprint: dict = index["fingerprint"]
        self.media: dict[str, MediaStat] = {p: MediaStat(**m) for p, m in index["media"].items()}
        self.entries: dict[str, str] = index["entries"]
        self._open: dict[str, object] = {}  # shard name -> safe_open handle (per process)

    @classmethod
    def open(cls, root: str | Path, expected: dict, create: bool = False) -> FeatureCache:
        """Open (or create) a cache; a cache built with another preprocessing is an error naming the fields.
        Only one process may create it or `merge_parts` (the others open it after a barrier)."""
        root = Path(root)
        if not (root / INDEX).is_file():
            if not create:
                raise InputError(
                    f"{root}: no feature cache here ({INDEX} missing); build it with `videosalmonn cache-features`"
                )
            root.mkdir(parents=True, exist_ok=True)
            _write_json(root / INDEX, {"fingerprint": expected, "media": {}, "entries": {}})
        cache = cls(root, json.loads((root / INDEX).read_text()))
        changed = _differences(cache.fingerprint, expected)
        if changed:
            raise InputError(
                f"{root}: stale feature cache: built with a different preprocessing "
                f"({'; '.join(changed)}); build a new cache in another directory"
            )
        return cache

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}

    # -------------------------------------------------------------------------------------------- hashing

    def media_sha(self, path: str) -> str:
        """Content hash of a media file, re-using the recorded one while size and mtime are unchanged."""
        st = os.stat(path)
        known = self.media.get(path)
        if known is not None and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns:
            return known.sha256
        stat = MediaStat(st.st_size, st.st_mtime_ns, file_sha256(path))
        self.media[path] = stat
        return stat.sha256

    # ---------------------------------------------------------------------------------------------- reads

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def read(self, key: str, names: tuple[str, ...]) -> list[Tensor]:
        shard = self.entries[key]
        handle = self._open.get(shard)
        if handle is None:
            handle = self._open[shard] = safe_open(str(self.root / shard), framework="pt")
        return [handle.get_tensor(f"{key}.{n}") for n in names]

    def features(self, visual: str | None, is_image: bool, audio: str | None) -> SampleFeatures:
        v = self.read(visual, ("visual",))[0] if visual is not None else None
        w, b = self.read(audio, ("whisper", "beats")) if audio is not None else (None, None)
        return SampleFeatures(v, is_image, w, b)

    # --------------------------------------------------------------------------------------------- writes

    def write_shard(self, tensors: dict[str, Tensor], keys: list[str]) -> None:
        """One new shard + its part file (merged into the index by `merge_parts`)."""
        name = uuid.uuid4().hex[:12]
        atomic_write(
            self.root / f"shard-{name}.safetensors",
            lambda tmp: save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp),
        )
        _write_json(self.root / f"part-{name}.json", {"shard": f"shard-{name}.safetensors", "keys": keys})

    def merge_parts(self) -> None:
        """Fold part files (from `write_shard`, possibly of an interrupted build) into index.json."""
        parts = sorted(self.root.glob("part-*.json"))
        if not parts:
            return
        index = json.loads((self.root / INDEX).read_text())
        for part_path in parts:
            part = json.loads(part_path.read_text())
            if not (self.root / part["shard"]).is_file():
                continue
            index["entries"].update({k: part["shard"] for k in part["keys"]})
        _write_json(self.root / INDEX, index)
        for part_path in parts:
            part_path.unlink(missing_ok=True)
        self.entries = index["entries"]
        self.media = {p: MediaStat(**m) for p, m in index["media"].items()}

    def save_media_records(self) -> None:
        """Record the content hashes computed so far (so the next run does not hash the files again)."""
        index = json.loads((self.root / INDEX).read_text())
        index["media"].update({p: vars(m) for p, m in self.media.items()})
        _write_json(self.root / INDEX, index)


# ------------------------------------------------------------------------------------------------- build


class BuildLock:
    """An exclusive lock on a cache directory (`flock` on `<root>/.lock`): two runs sharing a cache take turns
    completing it, so neither reads or merges the other's half-written parts."""

    def __init__(self, root: str | Path, create: bool):
        self.root = Path(root)
        self.create = create
        self.file = None

    def __enter__(self):
        if not self.root.is_dir():
            if not self.create:
                raise InputError(f"{self.root}: no feature cache here; build it with `videosalmonn cache-features`")
            self.root.mkdir(parents=True, exist_ok=True)
        self.file = open(self.root / ".lock", "w")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


@dataclass(frozen=True)
class CacheJob:
    """One tensor set a cache must hold."""

    key: str
    stream: str  # "visual" or "audio"
    ref: MediaRef
    is_image: bool
    instruction: str | None
    source: str  # the first sample that needs it (for messages)


def hash_media(cache: FeatureCache, paths: list[str], rank: int, world: int, gather) -> None:
    """Content hashes of every path, the unknown ones split over the processes (`gather`: all-gather of objects)."""
    todo = [p for p in paths if p not in cache.media or _changed(cache.media[p], p)]
    mine = {p: vars(MediaStat(os.stat(p).st_size, os.stat(p).st_mtime_ns, file_sha256(p))) for p in todo[rank::world]}
    for part in gather([mine]) if world > 1 else [mine]:
        cache.media.update({p: MediaStat(**m) for p, m in part.items()})


def _changed(known: MediaStat, path: str) -> bool:
    st = os.stat(path)
    return known.size != st.st_size or known.mtime_ns != st.st_mtime_ns


def build(
    cache: FeatureCache, jobs: list[CacheJob], compute, rank: int, world: int, shard_bytes: int, progress=None
) -> None:
    """Compute this process's share of `jobs` (`compute(job) -> {name: tensor}`) into new shards of about
    `shard_bytes`. The caller merges the part files (one process) after all processes are done."""
    tensors: dict[str, Tensor] = {}
    keys: list[str] = []
    size = 0
    for job in jobs[rank::world]:
        for name, t in compute(job).items():
            tensors[f"{job.key}.{name}"] = t
            size += t.numel() * t.element_size()
        keys.append(job.key)
        if progress is not None:
            progress()
        if size >= shard_bytes:
            cache.write_shard(tensors, keys)
            tensors, keys, size = {}, [], 0
    if keys:
        cache.write_shard(tensors, keys)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data)))
