"""The media of a request -> local files for `Pipeline.load`, refusing anything unsafe before it is decoded.

Where media may come from:
* a `data:<mime>;base64,...` URL, or raw base64 (`input_audio.data`): size-checked *before* decoding (from the
  base64 length), then written to a private temporary directory that is removed when the request is decoded;
* a local path or `file://` URL, only when the server has an allowed root: the path is resolved with every
  symlink (`realpath`), must lie inside the (resolved) root, and must be a regular file; on Linux the file is then
  opened once and handed over as `/proc/self/fd/N`, so swapping a symlink in after the check changes nothing;
* an http(s) URL, only from the hosts the server's --allow-fetch names (fetch.py: host, address, size, time and
  redirect limits), written to the temporary directory like a data: URL;
* several images of one message (`MediaRef.frames`): each read as above and decoded as an image, then written
  as one lossless video (FFV1 in Matroska) at the model's frame rate, 2 fps (one frame per 0.5-s slot): frame i is
  shown from i/2 s, so n frames are an n/2-s video; frames of another size than the first are resized to it;
* nothing else (ftp, ... are never fetched).

Before a video or audio file reaches FFmpeg's normal probing, it is opened with a whitelist of plain media
demuxers: playlists and other formats that make FFmpeg open further files or URLs (HLS, DASH, concat, SDP, ...)
are refused, and the header duration is checked against the server's limit.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import av
import av.error

from videosalmonn.errors import MediaError
from videosalmonn.media.files import MIME_SUFFIXES
from videosalmonn.media.image import load_image
from videosalmonn.media.writing import write_frames_video
from videosalmonn.serving.fetch import FetchPolicy, FetchRefused

# Demuxers that read one self-contained media file and never open another resource.
SAFE_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,wav,w64,mp3,flac,aac,aiff,caf,"
    "asf,amr,ivf,h264,hevc,m4v,mjpeg,gif,png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,au,nut,wv"
)
AUDIO_FORMATS = {
    "wav": ".wav",
    "mp3": ".mp3",
    "flac": ".flac",
    "ogg": ".ogg",
    "opus": ".opus",
    "m4a": ".m4a",
    "aac": ".aac",
    "webm": ".webm",
    "aiff": ".aiff",
}
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
PROC_FD = Path("/proc/self/fd")
BASE64_BYTES_PER_CHAR = 3 / 4
URL_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,5}$")


@dataclass(frozen=True)
class MediaRef:
    """One media part of a request, not yet read."""

    kind: Literal["video", "image", "audio"]
    source: str  # a data: URL, raw base64 (input_audio), a file:// URL or a path
    label: str  # where it is in the request, for error messages ("messages.0.content.1.video_url")
    format: str | None = None  # input_audio's format: `source` is raw base64 of such a file
    frames: tuple[MediaRef, ...] = ()  # a video sent as images (kind "video", `source` unused)


class MediaRefused(Exception):
    """A media part that is not read at all; `status` is the HTTP status (400, 403 or 413)."""

    def __init__(self, status: int, label: str, problem: str, code: str):
        super().__init__(f"{label}: {problem}")
        self.status, self.label, self.code = status, label, code


class MediaFiles:
    """A request's media as local paths; `close()` removes the temporary files and closes opened files.

    Example:
        with MediaFiles(max_bytes=64 << 20, allowed_root=None) as files:
            path = files.path(MediaRef("video", "data:video/mp4;base64,AAAA...", "messages.0.content.1"))
    """

    def __init__(
        self,
        max_bytes: int,
        allowed_root: Path | str | None,
        fetch: FetchPolicy | None = None,
        max_frame_pixels: int | None = None,
    ):
        self.max_bytes = max_bytes
        self.root = None if allowed_root is None else Path(os.path.realpath(allowed_root))
        self.fetch = fetch  # None: http(s) URLs are refused
        self.max_frame_pixels = max_frame_pixels  # of each image sent as a video frame
        self.labels: dict[str, str] = {}  # local path -> the request label it came from
        self._dir: str | None = None
        self._fds: list[int] = []

    def __enter__(self) -> MediaFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def path(self, ref: MediaRef) -> str:
        """A local path holding `ref`'s bytes; MediaRefused for anything not allowed."""
        if ref.frames:
            path = self._frames_video(ref)
        elif ref.format is not None and not ref.source.startswith("data:"):
            path = self._write(ref, _decode_base64(ref.source, ref, self.max_bytes), AUDIO_FORMATS.get(ref.format, ""))
        elif ref.source.startswith("data:"):
            mime, payload = _split_data_url(ref)
            path = self._write(ref, _decode_base64(payload, ref, self.max_bytes), MIME_SUFFIXES.get(mime, ""))
        elif ref.source.split(":", 1)[0].lower() in ("http", "https"):
            path = self._fetched(ref)
        else:
            path = self._local(ref)
        self.labels[path] = ref.label
        return path

    def describe(self, err: MediaError) -> str:
        """A decoding error with the request label in place of the server-side path."""
        return f"{self.labels.get(err.path, 'media')}: {err.problem}"

    # -------------------------------------------------------------------------------------- sources

    def _write(self, ref: MediaRef, data: bytes, suffix: str) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="videosalmonn-serve-")
        path = os.path.join(self._dir, f"{len(self.labels)}-{ref.kind}{suffix}")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _fetched(self, ref: MediaRef) -> str:
        if self.fetch is None:
            raise MediaRefused(
                400,
                ref.label,
                "http(s) URLs are fetched only from hosts the server allows: start it with --allow-fetch HOST "
                "(or send the media as a data: URL)",
                "fetch_not_allowed",
            )
        try:
            data, mime = self.fetch.fetch(ref.source)
        except FetchRefused as e:
            raise MediaRefused(e.status, ref.label, str(e), e.code) from None
        if not data:
            raise MediaRefused(400, ref.label, "empty media", "empty_media")
        suffix = Path(urlsplit(ref.source).path).suffix
        return self._write(ref, data, MIME_SUFFIXES.get(mime) or (suffix if URL_SUFFIX.match(suffix) else ""))

    def _frames_video(self, ref: MediaRef) -> str:
        """The images of `ref.frames` as one video at FRAME_RATE (see the module docstring), one frame in memory."""
        paths = [self.path(frame) for frame in ref.frames]
        out = self._write(ref, b"", ".mkv")
        try:
            write_frames_video((load_image(path, self.max_frame_pixels) for path in paths), out)
        except MediaError as e:
            raise MediaRefused(400, self.labels.get(e.path, ref.label), e.problem, "invalid_media") from None
        return out

    def _local(self, ref: MediaRef) -> str:
        source = ref.source
        if source.startswith("file:"):
            url = urlsplit(source)
            if url.netloc not in ("", "localhost"):
                raise MediaRefused(400, ref.label, f"file URL of another host ({url.netloc})", "invalid_url")
            source = unquote(url.path)
        elif URL_SCHEME.match(source):
            scheme = source.split(":", 1)[0].lower()
            raise MediaRefused(
                400,
                ref.label,
                f"{scheme}: URLs are not fetched by this server; send the media as a data: URL (base64)",
                "unsupported_url",
            )
        if self.root is None:
            raise MediaRefused(
                403,
                ref.label,
                "local paths are not accepted (the server has no --allowed-root); send the media as a data: URL",
                "path_not_allowed",
            )
        if not source or "\x00" in source:
            raise MediaRefused(400, ref.label, "empty or invalid path", "invalid_path")
        real = os.path.realpath(self.root / source)  # an absolute `source` replaces the root
        if not _inside(real, self.root):
            raise MediaRefused(403, ref.label, "the path is outside the allowed root", "path_not_allowed")
        return self._open_inside(real, ref)

    def _open_inside(self, real: str, ref: MediaRef) -> str:
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)  # O_NONBLOCK: a FIFO must not hang the server
        except FileNotFoundError:
            raise MediaRefused(400, ref.label, "file not found", "file_not_found") from None
        except OSError as e:  # e.g. ELOOP: a symlink swapped in after realpath
            raise MediaRefused(403, ref.label, f"cannot open the file ({e.strerror})", "path_not_allowed") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_bytes:
            os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                raise MediaRefused(400, ref.label, "not a regular file", "not_a_file")
            raise MediaRefused(
                413,
                ref.label,
                f"the file is {st.st_size / (1 << 20):.1f} MiB; at most {self.max_bytes / (1 << 20):.1f} MiB",
                "media_too_large",
            )
        proc = PROC_FD / str(fd)
        if not proc.is_symlink():  # no /proc: the checked real path it is
            os.close(fd)
            return real
        self._fds.append(fd)
        if not _inside(os.path.realpath(proc), self.root):
            raise MediaRefused(403, ref.label, "the path is outside the allowed root", "path_not_allowed")
        return str(proc)


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root).rstrip(os.sep) + os.sep)


def _split_data_url(ref: MediaRef) -> tuple[str, str]:
    header, comma, payload = ref.source.partition(",")
    params = header[len("data:") :].split(";")
    if not comma or "base64" not in (p.strip().lower() for p in params[1:]):
        raise MediaRefused(400, ref.label, "a data: URL must be base64 (data:<type>;base64,<data>)", "invalid_data_url")
    return params[0].strip().lower(), payload


def _decode_base64(payload: str, ref: MediaRef, max_bytes: int) -> bytes:
    payload = payload.strip()
    if len(payload) * BASE64_BYTES_PER_CHAR > max_bytes + 3:  # checked before decoding anything
        raise MediaRefused(
            413,
            ref.label,
            f"about {len(payload) * BASE64_BYTES_PER_CHAR / (1 << 20):.1f} MiB; "
            f"at most {max_bytes / (1 << 20):.1f} MiB",
            "media_too_large",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaRefused(400, ref.label, "not valid base64", "invalid_base64") from None
    if not data:
        raise MediaRefused(400, ref.label, "empty media", "empty_media")
    if len(data) > max_bytes:
        raise MediaRefused(
            413,
            ref.label,
            f"{len(data) / (1 << 20):.1f} MiB; at most {max_bytes / (1 << 20):.1f} MiB",
            "media_too_large",
        )
    return data


def probe_seconds(path: str, label: str) -> float | None:
    """Header duration (seconds) of a video/audio file opened with plain media demuxers only.

    MediaRefused when FFmpeg would need another demuxer (a playlist, a reference file, or simply not media)."""
    try:
        with av.open(path, container_options={"format_whitelist": SAFE_DEMUXERS}) as container:
            seconds = [container.duration / av.time_base] if container.duration else []
            seconds += [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    except (av.error.FFmpegError, OSError, ValueError):
        raise MediaRefused(
            400,
            label,
            "not a readable audio/video file (or a format this server does not open: "
            "playlists and reference files are refused)",
            "invalid_media",
        ) from None
    return max(seconds) if seconds else None
