"""Append-only JSONL result files that survive a kill: each record is one atomic line; resume skips done ids.

A record is written whole on an O_APPEND file (a short write is continued) and fsynced, so a crash can at most
leave one torn last line; `ResultsFile` drops it (rewriting the file atomically) when it is reopened. A write that
fails (a full disk) takes its partial line back off the file before the one-line `DiskFullError`, so the file
stays whole lines; `write_atomic` (the merged files) replaces a file only by a complete, fsynced copy.

A sample that failed has a record with `error` (and `attempts`, how many times it failed so far); a rerun tries
it again, appending a new record (the last success, else the last error, is the sample's result), until it has
failed MAX_ATTEMPTS times: then it is reported as given up instead of being run again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

from videosalmonn.errors import DISK_FULL, DiskFullError, InputError

MAX_ATTEMPTS = 3  # a sample that failed this many times is not run again (reported as given up)


class ResultsFile:
    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = self._load()

    def done(self) -> set[str]:
        """Ids with a successful record (a failed sample is retried)."""
        return {str(r[self.key]) for r in self.records if self.key in r and "error" not in r}

    def failures(self) -> dict[str, int]:
        return count_failures(self.records, self.key)

    def append(self, record: dict) -> None:
        line = json_line(record).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise _disk_full(self.path, e) from None
        try:
            size = os.fstat(fd).st_size  # one writer per file: where this line starts
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError as e:
                with contextlib.suppress(OSError):  # (a torn tail left anyway is dropped on reopening)
                    os.ftruncate(fd, size)
                raise _disk_full(self.path, e) from None
        finally:
            os.close(fd)
        self.records.append(record)

    def _load(self) -> list[dict]:
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        records, tail = complete_lines(raw, self.path)
        if tail.strip():  # the last write was cut (killed run) or lacks its newline
            try:
                records.append(json.loads(tail))
                fixed = raw + b"\n"
            except (ValueError, RecursionError):
                fixed = raw[: len(raw) - len(tail)]  # torn record: drop it, its sample runs again
            write_atomic(self.path, fixed)
        return records


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace `path` by `data`, whole or not at all: a fsynced temporary file renamed over it. A full disk is
    `DiskFullError` naming `path`, which is left as it was (the temporary file removed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _disk_full(path, e) from None


def _write_all(fd: int, data: bytes) -> None:
    """Every byte of `data` (os.write may write fewer; a write of nothing is a full disk)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        view = view[n:]


def _disk_full(path: Path, error: OSError) -> OSError | DiskFullError:
    """A full disk as our one-line error naming the file; any other OSError as it was."""
    if error.errno in DISK_FULL:
        return DiskFullError(path)
    return error


def complete_lines(raw: bytes, path: Path) -> tuple[list[dict], bytes]:
    """The records of every newline-terminated line, and the unterminated tail (a line being written, or torn)."""
    *lines, tail = raw.split(b"\n")
    records = []
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except (ValueError, RecursionError):
                raise InputError(f"{path}:{n}: not a JSON line; is this a results file?") from None
    return records, tail


def count_failures(records: list[dict], key: str = "id") -> dict[str, int]:
    """Id -> how many error records it has."""
    counts: dict[str, int] = {}
    for r in records:
        if "error" in r and key in r:
            counts[str(r[key])] = counts.get(str(r[key]), 0) + 1
    return counts


def json_line(record) -> str:
    """One JSON line, UTF-8 text as is; text that UTF-8 cannot hold (a lone surrogate from a `\\ud800` escape in the
    input) is written as JSON escapes instead, so that it reads back the same."""
    return json_text(record) + "\n"


def json_text(data, indent: int | None = None) -> str:
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, indent=indent)
    return text
