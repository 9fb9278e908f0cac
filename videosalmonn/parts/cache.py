"""The cache of converted parts: one directory per part and source, built once, atomically.

    <root>/<name>-<key digest>/          the converted part (an HF model or tokenizer directory)
    <root>/<name>-<key digest>/.complete.json   written last: the key (source sha256s, converter version), the
                                         source files' size and mtime (so a later load need not re-hash them)
    <root>/.<name>-<digest>.tmp-<pid>/   a build in progress; renamed into place only once complete

A directory without its marker is never used, and a build interrupted at any point leaves only a temp directory
(removed by the next build). Builds of one part are serialised by a file lock, so two processes never convert
the same part twice at once.

Root: `$VIDEOSALMONN_CACHE/parts`, else `$XDG_CACHE_HOME/videosalmonn/parts`, else `~/.cache/videosalmonn/parts`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

MARKER = ".complete.json"


def cache_root() -> Path:
    if os.environ.get("VIDEOSALMONN_CACHE"):
        return Path(os.environ["VIDEOSALMONN_CACHE"]).expanduser() / "parts"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "videosalmonn" / "parts"


def entry_dir(root: Path, name: str, key: dict) -> Path:
    """The directory of `name` built from `key` (the digest changes with any source hash or converter version)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return root / f"{name}-{digest}"


def read_marker(entry: Path, key: dict) -> dict | None:
    """The marker of a complete entry built from `key`; None when there is none (or it is for another key)."""
    try:
        marker = json.loads((entry / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("key") == key else None


def file_stats(files: dict[str, Path]) -> dict[str, list[int]]:
    """[size, mtime_ns] of each source file: unchanged stats mean an unchanged (already verified) file."""
    return {rel: [p.stat().st_size, p.stat().st_mtime_ns] for rel, p in files.items()}


def update_stats(entry: Path, stats: dict[str, list[int]]) -> None:
    """Record re-verified source stats (e.g. after the wheel was reinstalled), atomically."""
    marker = json.loads((entry / MARKER).read_text())
    marker["stats"] = stats
    tmp = entry / f"{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(marker, indent=1))
    os.replace(tmp, entry / MARKER)


def build(entry: Path, key: dict, stats: dict[str, list[int]], convert: Callable[[Path], None]) -> Path:
    """Run `convert(tmp_dir)` and rename the result to `entry`, unless another process completed it meanwhile."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _locked(entry.parent / f".{entry.name}.lock"):
        if read_marker(entry, key) is not None:
            return entry
        for stale in entry.parent.glob(f".{entry.name}.tmp-*"):  # we hold the lock: nobody is building them
            shutil.rmtree(stale, ignore_errors=True)
        tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}"
        try:
            tmp.mkdir()
            start = time.perf_counter()
            convert(tmp)
            marker = {"key": key, "stats": stats, "seconds": round(time.perf_counter() - start, 1)}
            (tmp / MARKER).write_text(json.dumps(marker, indent=1))  # last: the entry is complete
            if entry.exists():  # left without a marker (never used): replaced
                shutil.rmtree(entry)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return entry


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
