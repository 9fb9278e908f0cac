"""Media files: which kind a file is (by its suffix), and the one check that a path is a readable media file.

    kind_of("clips/7.mp4")  -> "video"        kind_of("a.flac") -> "audio"        kind_of("notes.txt") -> None
    check_file("clips/7.mp4")                  # the Path, or a one-line MediaError (not found, a directory, ...)

Every reader of paths (our manifests, the SAVE readers, the evaluation runner, the server's temporary files) uses
this one table, so a suffix means the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from videosalmonn.errors import MediaError

MediaKind = Literal["video", "image", "audio"]

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".ogv", ".3gp", ".flv"}
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff"})
KINDS: dict[str, MediaKind] = {
    s: kind
    for kind, suffixes in (("video", VIDEO_SUFFIXES), ("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES))
    for s in suffixes
}

# The suffix to give a file of a media MIME type (it helps FFmpeg/PIL pick the format); unknown types get none.
MIME_SUFFIXES = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/mpeg": ".mpg",
    "video/mp2t": ".ts",
    "video/ogg": ".ogv",
    "video/3gpp": ".3gp",
    "video/x-flv": ".flv",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/webm": ".webm",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/aiff": ".aiff",
    "audio/x-aiff": ".aiff",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
}


def kind_of(path: str | Path) -> MediaKind | None:
    """ "video", "image" or "audio" by the file's suffix (any case); None for a suffix that is none of them."""
    return KINDS.get(Path(path).suffix.lower())


def check_file(path: str | Path) -> Path:
    """`path` as a Path if it is a non-empty regular file, else a one-line MediaError saying what it is instead.

    Checked before a decoder opens it, so a directory, a FIFO or a device never reaches FFmpeg or PIL (no hang)."""
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if p.is_dir():
        raise MediaError(p, "is a directory, not a media file")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "file is empty")
    return p
