"""The files of one evaluation run, and how several processes share them without stepping on each other.

    DIR/run.json                 settings, model config, decoding, diagnostics, versions; one entry per session
    DIR/samples.rank<R>.jsonl    what process R generated: one atomic JSON line per sample (results.ResultsFile)
    DIR/samples.jsonl            merged: every selected sample once, in manifest order     } written by the merge,
    DIR/results.json             metrics with 95% CIs and sample counts                    } atomically, any time

The shard files are the only source of truth and are only ever appended to, each by one process; the merged
files are derived from them and can be rebuilt at any time (`videosalmonn eval merge DIR`), so two processes
merging at once (under a lock) write the same thing. A record with `error` is retried by the next run; the
merge keeps, per sample, its last successful record (else its last error).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from videosalmonn.errors import InputError
from videosalmonn.results import ResultsFile, complete_lines, count_failures, json_text, write_atomic

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
SHARD_GLOB = "samples.rank*.jsonl"
LOCK_FILE = ".merge.lock"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def samples_file(self) -> Path:
        return self.path / SAMPLES_FILE

    def shard(self, rank: int) -> ResultsFile:
        """This process's own results file (torn-tail recovery happens here, on a file nobody else writes)."""
        return ResultsFile(self.path / f"samples.rank{rank}.jsonl")

    # ------------------------------------------------------------------------------------------ run.json

    def info(self) -> dict[str, Any]:
        if not self.run_file.is_file():
            raise InputError(f"{self.path}: not an evaluation run directory (no {RUN_FILE})")
        try:
            return json.loads(self.run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{self.run_file}: not valid JSON ({e.msg})") from None

    def check_identity(self, identity: dict[str, Any]) -> None:
        """A rerun must be the same evaluation (same task, model, data, diagnostics) to resume this directory."""
        if not self.run_file.is_file():
            return
        before = self.info()["identity"]
        changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
        if changed:
            what = "; ".join(f"{k}: {before.get(k)!r} -> {identity.get(k)!r}" for k in changed)
            raise InputError(f"{self.path} holds a different evaluation ({what}); use another --out")

    def record_session(self, header: dict[str, Any], session: dict[str, Any]) -> None:
        """Write run.json: `header` (identity, settings, model, ...) replaces the old one; `session` is appended."""
        sessions = self.info().get("sessions", []) if self.run_file.is_file() else []
        write_json_atomic(self.run_file, {**header, "sessions": sessions + [session]})

    # ------------------------------------------------------------------------------------------ records

    def records(self) -> dict[str, dict]:
        """Sample id -> its record across every shard: the last success, else the last error. Read-only, so it
        is safe while other processes append (an incomplete last line is someone's write in progress)."""
        best: dict[str, dict] = {}
        for path in sorted(self.path.glob(SHARD_GLOB)):
            for record in _read_complete_lines(path):
                old = best.get(record["id"])
                if old is None or "error" in old or "error" not in record:
                    best[record["id"]] = record
        return best

    def done(self) -> set[str]:
        """Ids answered successfully (errors are retried)."""
        return {i for i, r in self.records().items() if "error" not in r}

    def failures(self) -> dict[str, int]:
        """Id -> how many error records it has across every shard (its failed attempts)."""
        counts: dict[str, int] = {}
        for path in sorted(self.path.glob(SHARD_GLOB)):
            for i, n in count_failures(_read_complete_lines(path)).items():
                counts[i] = counts.get(i, 0) + n
        return counts

    @contextmanager
    def merge_lock(self) -> Iterator[None]:
        with open(self.path / LOCK_FILE, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def find_runs(paths: list[str | Path]) -> list[RunDir]:
    """Every run directory at or below `paths` (a directory holding run.json), in a stable order."""
    runs: list[RunDir] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise InputError(f"{p}: not a directory")
        found = [p] if (p / RUN_FILE).is_file() else sorted(f.parent for f in p.rglob(RUN_FILE))
        if not found:
            raise InputError(f"{p}: no evaluation runs in it (no {RUN_FILE} at or below it)")
        runs += [RunDir(f) for f in found if all(f != r.path for r in runs)]
    return runs


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json_text(data, indent=1) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def _read_complete_lines(path: Path) -> list[dict]:
    """Records of a shard another process may be appending to: its unfinished last line is left alone."""
    return complete_lines(path.read_bytes(), path)[0]
