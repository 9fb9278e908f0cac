"""Append-only JSONL result files that survive a kill: each record is one atomic line; resume skips done ids.

A record is written with a single `write` of the whole line on an O_APPEND file and fsynced, so a crash can at
most leave one torn last line; `ResultsFile` drops it (rewriting the file atomically) when it is reopened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from videosalmonn.errors import InputError


class ResultsFile:
    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = self._load()

    def done(self) -> set[str]:
        return {str(r[self.key]) for r in self.records if self.key in r}

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
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
            except json.JSONDecodeError:
                fixed = raw[: len(raw) - len(tail)]  # torn record: drop it, its sample runs again
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_bytes(fixed)
            os.replace(tmp, self.path)
        return records


def complete_lines(raw: bytes, path: Path) -> tuple[list[dict], bytes]:
    """The records of every newline-terminated line, and the unterminated tail (a line being written, or torn)."""
    *lines, tail = raw.split(b"\n")
    records = []
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}:{n}: not a JSON line; is this a results file?") from None
    return records, tail
