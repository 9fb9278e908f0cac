"""http(s) media URLs, fetched only from the hosts `--allow-fetch` names (stdlib http.client, no proxies).

    host check ─► resolve ─► address check ─► GET to the checked address ─► redirect? check the target again
                                                           └► 200: body, at most max_bytes, before the deadline

Rules, each a FetchRefused (the server answers it naming the part of the request):
* no `--allow-fetch` at all: no FetchPolicy; media.py answers 400 `fetch_not_allowed`, saying how to allow it;
* the URL's host must be listed (exactly, case-insensitive) or the list holds "*": else 403 `host_not_allowed`;
* every address the host resolves to must be public (not private, loopback, link-local, multicast, reserved or
  unspecified; IPv4-mapped IPv6 checked as IPv4) unless the host is listed by name or IP: else 403
  `address_not_allowed`. The connection goes to the address that was checked (no second DNS look-up to rebind);
* at most `max_redirects` redirects, each target checked as above: else 400 `too_many_redirects`;
* at most `max_bytes` (Content-Length, then counted while reading): else 413 `media_too_large`;
* one deadline of `timeout_s` over all hops (connect, wait, read): else 400 `fetch_timeout`;
* any other answer than 200, or a connection/TLS error: 400 `fetch_failed`.
The DNS look-up itself (getaddrinfo) cannot be interrupted; it is bounded by the resolver's own timeout.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from videosalmonn.errors import ConfigError

REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 1 << 16
MIB = 1 << 20
ANY_PUBLIC = "*"


class FetchRefused(Exception):
    """A URL not fetched; `status` is the HTTP status for the client (400, 403 or 413)."""

    def __init__(self, status: int, problem: str, code: str):
        super().__init__(problem)
        self.status, self.code = status, code


def check_host(host: str) -> str:
    """An --allow-fetch entry as it is matched: lower-case, no trailing dot; ConfigError for a URL, port or path."""
    name = host.strip().lower().rstrip(".")
    if name == ANY_PUBLIC:
        return name
    if ":" in name:  # only an IPv6 literal may hold colons
        try:
            return str(ipaddress.IPv6Address(name.strip("[]")))
        except ValueError:
            pass
    if not name or any(c in name for c in "/@:[] \t"):
        raise ConfigError(
            f"serve: --allow-fetch takes host names or IP literals (no scheme, port or path), got {host!r}"
        )
    return name


@dataclass(frozen=True)
class FetchPolicy:
    hosts: tuple[str, ...]  # check_host() forms; ANY_PUBLIC = any host whose addresses are all public
    max_bytes: int
    timeout_s: float
    max_redirects: int

    def fetch(self, url: str) -> tuple[bytes, str]:
        """The body of `url` and its content type (lower-case, no parameters); FetchRefused for anything refused."""
        deadline = time.monotonic() + self.timeout_s
        for _ in range(self.max_redirects + 1):
            host, port, address, path = self._check(url)
            status, location, content_type, body = self._get(url, host, port, address, path, deadline)
            if status in REDIRECTS:
                if not location:
                    raise FetchRefused(400, f"HTTP {status} without a Location", "fetch_failed")
                url = urljoin(url, location)
                continue
            if status != 200:
                raise FetchRefused(400, f"{_host_port(host, port)} answered HTTP {status}", "fetch_failed")
            return body, content_type
        raise FetchRefused(400, f"more than {self.max_redirects} redirects", "too_many_redirects")

    def _check(self, url: str) -> tuple[str, int, str, str]:
        """(host, port, the address to connect to, path + query) of an allowed URL."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchRefused(400, f"a redirect to a {scheme or 'relative'}: URL is not followed", "fetch_failed")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise FetchRefused(400, "invalid port in the URL", "invalid_url") from None
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise FetchRefused(400, "no host in the URL", "invalid_url")
        try:
            host = str(ipaddress.ip_address(host))  # one spelling of an IP literal
        except ValueError:
            pass
        named = host in self.hosts
        if not named and ANY_PUBLIC not in self.hosts:
            raise FetchRefused(
                403,
                f"{host} is not a host this server fetches from (--allow-fetch {' '.join(self.hosts)})",
                "host_not_allowed",
            )
        addresses = _resolve(host, port)
        if not named:
            for address in addresses:
                if not _public(address):
                    raise FetchRefused(
                        403,
                        f"{host} resolves to {address}, a private, loopback or link-local address: fetched only "
                        "from a host named in --allow-fetch",
                        "address_not_allowed",
                    )
        return host, port, addresses[0], (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _get(self, url: str, host: str, port: int, address: str, path: str, deadline: float):
        """One GET: (status, Location, content type, body); the body is read only for a 200."""
        https = urlsplit(url).scheme.lower() == "https"
        conn = (_PinnedHTTPS if https else _PinnedHTTP)(host, port, address, _left(deadline, self.timeout_s))
        try:
            conn.request("GET", path, headers={"User-Agent": "videosalmonn", "Accept-Encoding": "identity"})
            sock = conn.sock  # the response reads from it even once `conn` lets go of it (Connection: close)
            resp = conn.getresponse()
            if resp.status != 200:
                return resp.status, resp.getheader("Location"), "", b""
            length = resp.getheader("Content-Length", "")
            if length.isdigit() and int(length) > self.max_bytes:
                raise self._too_large(int(length))
            chunks, total = [], 0
            while True:
                sock.settimeout(_left(deadline, self.timeout_s))
                chunk = resp.read1(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > self.max_bytes:
                    raise self._too_large(total, at_least=True)
                chunks.append(chunk)
            content_type = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
            return 200, None, content_type, b"".join(chunks)
        except TimeoutError:
            raise FetchRefused(400, f"not fetched within {self.timeout_s:g} s", "fetch_timeout") from None
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            raise FetchRefused(
                400, f"could not fetch from {_host_port(host, port)} ({type(e).__name__})", "fetch_failed"
            ) from None
        finally:
            conn.close()

    def _too_large(self, size: int, at_least: bool = False) -> FetchRefused:
        more = "more than " if at_least else ""
        return FetchRefused(
            413, f"{more}{size / MIB:.1f} MiB; at most {self.max_bytes / MIB:.1f} MiB", "media_too_large"
        )


def _left(deadline: float, timeout_s: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchRefused(400, f"not fetched within {timeout_s:g} s", "fetch_timeout")
    return left


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchRefused(400, f"cannot resolve {host}", "fetch_failed") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_global and not ip.is_multicast


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to `address` (already checked), with `host` in the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `address` (already checked); the certificate is verified against `host` (SNI too)."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
