"""User-facing errors: one line each, naming the file (or setting) and the problem.

The CLI turns every `VideoSalmonnError` into that one line and exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the errnos of a full disk or quota
RERUN = "free space and run the command again (infer --manifest and eval run continue where they stopped)"


class VideoSalmonnError(Exception):
    """Base class of errors caused by user input (files, settings), not by a bug."""


class ConfigError(VideoSalmonnError):
    """A config file or override is invalid: unknown key, wrong type, inconsistent values."""


class MediaError(VideoSalmonnError):
    """A media file is missing, unreadable, empty or not media at all."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class CheckpointError(VideoSalmonnError):
    """A checkpoint is missing, unreadable, or does not match the model (missing/unexpected keys, shapes)."""


class InputError(VideoSalmonnError):
    """A request is malformed (no media, prompt too long, inconsistent manifest line, ...)."""


class DiskFullError(VideoSalmonnError):
    """A file could not be written: its disk (or quota) is full. One line naming the file, the free space left and
    what to do next (`then`)."""

    def __init__(self, path: str | Path, then: str = RERUN):
        self.path = str(path)
        try:
            where = next(p for p in Path(path).absolute().parents if p.exists())
            free = f", {shutil.disk_usage(where).free / 2**20:.0f} MiB free"
        except (OSError, StopIteration):
            free = ""
        super().__init__(f"{path}: no space left on device{free}; {then}")
