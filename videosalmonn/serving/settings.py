"""ServeSettings: every limit and knob of the HTTP server, written once (the `serve` flags map onto these)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import ConfigError
from videosalmonn.serving.fetch import FetchPolicy, check_host

MIB = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    model_name: str = "tiny"
    """The model id clients send as `model` and `GET /v1/models` lists."""
    allowed_root: Path | None = None
    """Local media paths are read only inside this directory (symlinks resolved); None: no local paths at all."""
    max_batch_size: int = 8
    """Requests generated together at most; 1 turns dynamic batching off."""
    batch_wait_ms: float = 10.0
    """How long the worker waits for more requests to join a batch once one is waiting."""
    max_queue: int = 64
    """Requests in the server at once (decoding, waiting or generating); more get 503."""
    max_body_bytes: int = 128 * MIB
    """Largest request body (the JSON with its base64 media); more gets 413."""
    max_media_bytes: int = 64 * MIB
    """Largest single media item (decoded bytes of a data: URL, or a local file); more gets 413."""
    max_media_seconds: float = 120.0
    """Longest media (seconds): refused from the file header, or while decoding when no header states it; 400."""
    max_prompt_chars: int = 20_000
    """Characters of text over all messages; more gets 400."""
    max_tokens: int = 1024
    """Largest `max_tokens` a request may ask for; the default is min(the model's own setting, this)."""
    max_beam_tokens: int = 5 * 512
    """Largest num_beams x max_tokens of one request (the released default, 5 beams x 512, fits): one generation
    worker serves everyone, so a beam-16, 1024-token request must not hold it for minutes; more gets 400."""
    request_timeout_s: float = 300.0
    """Per request, from arrival to the last token (decoding, queueing and generation); then 504."""
    decode_workers: int = 2
    """Threads decoding media before requests join the queue."""
    strict: bool = False
    """Refuse (400) request fields this server does not know; default: ignore them, listed in the
    `X-Videosalmonn-Ignored` header and the response's `videosalmonn.ignored` (vLLM/lmms-eval vendor fields)."""
    allow_fetch: tuple[str, ...] = ()
    """Hosts http(s) media URLs may be fetched from (names or IP literals, as in the URL; "*": any host whose
    addresses are all public). A private, loopback or link-local address only for a host named here. Empty: no
    fetching (a 400 that says how to allow it)."""
    fetch_timeout_s: float = 30.0
    """Per fetched URL, redirects included: connecting, waiting and reading the whole body; then 400."""
    fetch_max_redirects: int = 3
    """Redirects followed per fetched URL (each target checked like the URL itself); more gets 400."""

    def __post_init__(self):
        for name in (
            "max_batch_size",
            "max_queue",
            "max_body_bytes",
            "max_media_bytes",
            "max_prompt_chars",
            "max_tokens",
            "max_beam_tokens",
            "decode_workers",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_media_seconds", "request_timeout_s", "fetch_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"serve: {name} must be positive, got {getattr(self, name)}")
        if self.fetch_max_redirects < 0:
            raise ConfigError(f"serve: fetch_max_redirects must be >= 0, got {self.fetch_max_redirects}")
        object.__setattr__(
            self, "allow_fetch", tuple(check_host(h) for h in self.allow_fetch)
        )  # lower-case, one IPv6 spelling
        if self.batch_wait_ms < 0:
            raise ConfigError(f"serve: batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.allowed_root is not None and not Path(self.allowed_root).is_dir():
            raise ConfigError(f"serve: allowed_root {self.allowed_root} is not a directory")

    def fetch_policy(self) -> FetchPolicy | None:
        """What http(s) media URLs may be fetched (None: none)."""
        if not self.allow_fetch:
            return None
        return FetchPolicy(self.allow_fetch, self.max_media_bytes, self.fetch_timeout_s, self.fetch_max_redirects)
