"""Malformed and hostile requests get a JSON 4xx and the server keeps serving; limits, 503, 504, bad batches."""

import base64
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow  # a live server per module

from conftest import ROOT  # noqa: E402

from videosalmonn.errors import InputError  # noqa: E402
from videosalmonn.pipeline import Pipeline  # noqa: E402
from videosalmonn.serving import ServeSettings, create_app  # noqa: E402

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"
TIMEOUT = 60
KIB, MIB = 1 << 10, 1 << 20
VIDEO_URL = "data:video/mp4;base64," + base64.b64encode(CLIP.read_bytes()).decode()


@contextmanager
def live(app):
    """Serve `app` with uvicorn in a thread on a free port; yields the base URL; always shuts down."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root = base / "root"
    root.mkdir()
    (root / "clip.mp4").write_bytes(CLIP.read_bytes())
    (base / "outside.mp4").write_bytes(CLIP.read_bytes())
    (root / "escape.mp4").symlink_to(base / "outside.mp4")
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo.mp4")
    (root / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def url(pipeline, root):
    settings = ServeSettings(
        model_name="tiny",
        allowed_root=root,
        max_body_bytes=2 * MIB,
        max_media_bytes=MIB,
        max_media_seconds=5,
        max_tokens=32,
        max_prompt_chars=2000,
        request_timeout_s=60,
    )
    with live(create_app(pipeline, settings)) as base:
        yield base


def body(*parts, **fields) -> dict:
    content = [{"type": "text", "text": "What happens?"}, *parts]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **fields}


def video(u: str) -> dict:
    return {"type": "video_url", "video_url": {"url": u}}


def b64(data: bytes, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def post(base: str, payload, **kw) -> httpx.Response:
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return httpx.post(
        f"{base}/v1/chat/completions", content=data, timeout=TIMEOUT, headers={"Content-Type": "application/json"}, **kw
    )


def hls_playlist() -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile://{CLIP}\n#EXT-X-ENDLIST\n".encode()


def long_wav(seconds: float) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\1" * int(seconds * 8000))
    return buf.getvalue()


HOSTILE = {
    "not json": (b"{'model': 'tiny'", 400, "invalid_json"),
    "json array": ([1, 2, 3], 400, "invalid_json"),
    "NaN": ('{"model": "tiny", "temperature": NaN, "messages": []}', 400, "invalid_json"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, 400, "invalid_json"),
    "binary garbage": (bytes(range(256)) * 10, 400, "invalid_json"),
    "unknown field in our extension": (body(video(VIDEO_URL), videosalmonn={"foo": 1}), 400, "unknown_field"),
    "unknown part type": (body({"type": "file", "file": {"file_id": "x"}}), 400, "invalid_value"),
    "wrong type": (body(video(VIDEO_URL), max_tokens="4"), 400, "invalid_value"),
    "unsupported field": (body(video(VIDEO_URL), tools=[{"type": "function"}]), 400, "unsupported_field"),
    "wrong model": ({**body(video(VIDEO_URL)), "model": "gpt-4o"}, 404, "model_not_found"),
    "too many tokens": (body(video(VIDEO_URL), max_tokens=10_000), 400, "max_tokens_too_large"),
    "prompt too long": (
        {
            **body(video(VIDEO_URL)),
            "messages": [{"role": "user", "content": [{"type": "text", "text": "why " * 600}, video(VIDEO_URL)]}],
        },
        400,
        "prompt_too_long",
    ),
    "no media": (body(), 400, "no_media"),
    "too many messages": (
        {**body(video(VIDEO_URL)), "messages": [{"role": "user", "content": "x"}] * 300},
        400,
        "too_many_messages",
    ),
    "too many parts": (body(*[{"type": "text", "text": "x"}] * 300), 400, "invalid_value"),
    "two videos": (body(video(VIDEO_URL), video(VIDEO_URL)), 400, "too_many_media"),
    "video and image": (
        body(video(VIDEO_URL), {"type": "image_url", "image_url": {"url": VIDEO_URL}}),
        400,
        "too_many_media",
    ),
    "system prompt only": (
        {**body(video(VIDEO_URL)), "messages": [{"role": "system", "content": "x"}]},
        400,
        "invalid_conversation",
    ),
    "system prompt after a user turn": (
        {
            **body(video(VIDEO_URL)),
            "messages": [*body(video(VIDEO_URL))["messages"], {"role": "system", "content": "x"}],
        },
        400,
        "invalid_conversation",
    ),
    "image frames that are not": (
        body(*[{"type": "image_url", "image_url": {"url": b64(b"GIF89a" + os.urandom(50), "image/gif")}}] * 3),
        400,
        "invalid_media",
    ),
    "beam search stream": (
        body(video(VIDEO_URL), stream=True, videosalmonn={"num_beams": 2}),
        400,
        "beam_search_cannot_stream",
    ),
    "invalid base64": (body(video("data:video/mp4;base64,!!!!")), 400, "invalid_base64"),
    "not base64 data url": (body(video("data:video/mp4,abcd")), 400, "invalid_data_url"),
    "undecodable video": (body(video(b64(os.urandom(4000)))), 400, "invalid_media"),
    "truncated video": (body(video(b64(CLIP.read_bytes()[:3000]))), 400, "invalid_media"),
    "text as video": (body(video(b64(b"hello world\n" * 50, "text/plain"))), 400, "invalid_media"),
    "hls playlist": (body(video(b64(hls_playlist(), "application/vnd.apple.mpegurl"))), 400, "invalid_media"),
    "audio without audio": (
        body(
            {
                "type": "input_audio",
                "input_audio": {
                    "data": base64.b64encode((ROOT / "tests" / "assets" / "clip2s.mp4").read_bytes()[:2000]).decode(),
                    "format": "wav",
                },
            }
        ),
        400,
        "invalid_media",
    ),
    "image that is not": (
        body({"type": "image_url", "image_url": {"url": b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 99, "image/png")}}),
        400,
        "invalid_media",
    ),
    "media over the size limit": (body(video(b64(os.urandom(MIB + KIB)))), 413, "media_too_large"),
    "media too long": (
        body({"type": "input_audio", "input_audio": {"data": base64.b64encode(long_wav(6)).decode(), "format": "wav"}}),
        400,
        "media_too_long",
    ),
    "bad time span": (body(video(VIDEO_URL), videosalmonn={"start": 5.0}), 400, "invalid_media"),
    "remote url without --allow-fetch": (body(video("http://127.0.0.1:1/clip.mp4")), 400, "fetch_not_allowed"),
    "ftp url": (body(video("ftp://127.0.0.1/clip.mp4")), 400, "unsupported_url"),
    "dot-dot escape": (body(video("../outside.mp4")), 403, "path_not_allowed"),
    "absolute escape": (body(video("/etc/passwd")), 403, "path_not_allowed"),
    "file url escape": (body(video("file:///etc/passwd")), 403, "path_not_allowed"),
    "symlink escape": (body(video("escape.mp4")), 403, "path_not_allowed"),
    "fifo": (body(video("fifo.mp4")), 400, "not_a_file"),
    "directory": (body(video("dir")), 400, "not_a_file"),
    "missing file": (body(video("nope.mp4")), 400, "file_not_found"),
    "text file in root": (body(video("notes.txt")), 400, "invalid_media"),
    "nul in path": (body(video("clip.mp4\u0000.txt")), 400, "invalid_path"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request_gets_a_json_4xx(url, name):
    payload, status, code = HOSTILE[name]
    r = post(url, payload)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"] and error["type"], error
    assert "Traceback" not in error["message"] and "/tmp/" not in error["message"]


def test_oversized_body_is_refused_unread(url):
    big = json.dumps(body(video(b64(os.urandom(2 * MIB)))))
    r = post(url, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_methods_answer_json(url):
    r = httpx.get(f"{url}/v1/nothing", timeout=TIMEOUT)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(f"{url}/v1/chat/completions", timeout=TIMEOUT)
    assert r.status_code == 405 and "error" in r.json()


def test_the_server_still_serves_after_every_hostile_request(url):
    with ThreadPoolExecutor(8) as pool:  # hostile and good requests mixed, concurrently
        bad = list(pool.map(lambda name: post(url, HOSTILE[name][0]).status_code, list(HOSTILE)))
    assert all(400 <= status < 500 for status in bad)
    good = post(url, body(video(VIDEO_URL)))
    assert good.status_code == 200 and good.json()["videosalmonn"]["audio_present"]
    assert post(url, body(video("clip.mp4"))).status_code == 200
    health = httpx.get(f"{url}/health", timeout=TIMEOUT).json()
    assert health["status"] == "ok" and health["in_flight"] == 0


def test_no_temporary_files_are_left(url, tmp_path, monkeypatch):
    import tempfile

    from videosalmonn.serving import media

    made, real_mkdtemp = [], tempfile.mkdtemp

    def mkdtemp(prefix=None):  # the server runs in this process: watch its temporary dirs
        made.append(real_mkdtemp(prefix=prefix, dir=tmp_path))
        return made[-1]

    monkeypatch.setattr(media.tempfile, "mkdtemp", mkdtemp)
    for name in ("undecodable video", "hls playlist", "media too long", "media over the size limit"):
        assert post(url, HOSTILE[name][0]).status_code == HOSTILE[name][1]
    assert post(url, body(video(VIDEO_URL))).status_code == 200
    assert len(made) == 4 and not any(os.path.exists(d) for d in made)  # (the too-large one is never written)


# ------------------------------------------------------------------------------ queue, timeouts, batches


class Wrapped:
    """The tiny Pipeline with a slower or failing answer_batch (everything else is the real Pipeline).

    `delay` applies to batches holding a prompt with `slow` in it (all batches when `slow` is None)."""

    def __init__(self, pipeline, delay: float = 0.0, poison: str | None = None, slow: str | None = None):
        self._pipeline, self.delay, self.poison, self.slow = pipeline, delay, poison, slow
        self.calls: list[int] = []
        self.active = 0

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def answer_batch(self, requests, *args, **kwargs):
        self.calls.append(len(requests))
        self.active += 1
        try:
            if self.slow is None or any(self.slow in r.turns()[0].text for r in requests):
                time.sleep(self.delay)
            if self.poison and any(self.poison in r.turns()[0].text for r in requests):
                raise InputError("poisoned request")
            return self._pipeline.answer_batch(requests, *args, **kwargs)
        finally:
            self.active -= 1


def ask(question: str, **fields) -> dict:
    return {
        **body(**fields),
        "messages": [{"role": "user", "content": [{"type": "text", "text": question}, video(VIDEO_URL)]}],
    }


def test_full_queue_gives_503_and_then_recovers(pipeline):
    settings = ServeSettings(max_queue=2, max_batch_size=1, request_timeout_s=30)
    with live(create_app(Wrapped(pipeline, delay=1.0), settings)) as base:
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(post, base, body(video(VIDEO_URL))) for _ in range(2)]
            time.sleep(0.5)
            r = post(base, body(video(VIDEO_URL)))
            assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
            assert r.headers["retry-after"] == "1"
            assert [f.result(TIMEOUT).status_code for f in slow] == [200, 200]
        assert post(base, body(video(VIDEO_URL))).status_code == 200


def test_request_timeout_gives_504_and_the_server_goes_on(pipeline):
    wrapped = Wrapped(pipeline, delay=2.5, slow="SLOW")
    with live(create_app(wrapped, ServeSettings(request_timeout_s=1.5))) as base:
        r = post(base, ask("SLOW"))
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=ask("SLOW", stream=True), timeout=TIMEOUT) as s:
            events = s.read().decode().split("\n\n")
        assert events[0].startswith("data: {") and '"timeout"' in events[-3] and events[-2] == "data: [DONE]"
        deadline = time.monotonic() + 30
        while wrapped.active and time.monotonic() < deadline:  # the abandoned generations end (or abort)
            time.sleep(0.1)
        r = post(base, ask("Quick?"))
        assert r.status_code == 200, r.text


def test_a_bad_request_does_not_poison_its_batch(pipeline):
    wrapped = Wrapped(pipeline, delay=0.3, poison="POISON")
    settings = ServeSettings(max_batch_size=8, batch_wait_ms=200, request_timeout_s=60)
    with live(create_app(wrapped, settings)) as base:
        questions = ["What moves?", "POISON", "What is the sound?", "Describe it."]
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda q: post(base, ask(q)), questions))
        assert [r.status_code for r in replies] == [200, 400, 200, 200]
        assert replies[1].json()["error"]["message"] == "poisoned request"
        assert max(wrapped.calls) > 1  # they were batched, then retried one by one
        health = httpx.get(f"{base}/health", timeout=TIMEOUT).json()
        assert health["answered"] == 3 and health["failed"] == 1
