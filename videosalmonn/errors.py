"""User-facing errors: one line each, naming the file (or setting) and the problem.

The CLI turns every `VideoSalmonnError` into that one line and exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
