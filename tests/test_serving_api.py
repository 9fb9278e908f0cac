"""`videosalmonn serve` as a user runs it: a live server (the CLI, tiny preset) and the official openai client."""

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow  # a live server per module

from conftest import ROOT  # noqa: E402

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"  # 2 s, moving square, 440 Hz tone as AAC
TIMEOUT = 60  # seconds, every client call
MAX_TOKENS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wav_bytes(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


VIDEO_URL = data_url(CLIP.read_bytes(), "video/mp4")


def video_message(question: str, url: str = VIDEO_URL) -> dict:
    return {
        "role": "user",
        "content": [{"type": "text", "text": question}, {"type": "video_url", "video_url": {"url": url}}],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m videosalmonn serve --model tiny` on a free port; media root with the test clip; stopped after."""
    root = tmp_path_factory.mktemp("media-root")
    shutil.copy(CLIP, root / "clip.mp4")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "videosalmonn",
            "serve",
            "--model",
            "tiny",
            "--port",
            str(port),
            "--allowed-root",
            str(root),
            "--max-batch-size",
            "8",
            "--request-timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {proc.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the server did not start within 120 s")
        time.sleep(0.2)
    yield url, root
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)


def extension(obj) -> dict:
    return obj.model_extra["videosalmonn"]


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx.get(f"{server[0]}/health", timeout=TIMEOUT).json()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_video_data_url_keeps_its_audio_track(client):
    reply = client.chat.completions.create(
        model="tiny", messages=[video_message("What do you see and hear?")], max_tokens=MAX_TOKENS
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length") and reply.object == "chat.completion"
    assert reply.usage.completion_tokens <= MAX_TOKENS and reply.usage.prompt_tokens > 30
    used = extension(reply)
    assert used["audio_present"] is True and used["audio_seconds"] == pytest.approx(2.0, abs=0.05)
    assert used["frames"] == 4 and used["video_seconds"] == pytest.approx(2.0, abs=0.05)
    assert used["media_tokens"] == 30 and used["generation"]["max_new_tokens"] == MAX_TOKENS


def test_video_audio_can_be_dropped(client):
    reply = client.chat.completions.create(
        model="tiny",
        messages=[video_message("What do you see?")],
        max_tokens=MAX_TOKENS,
        extra_body={"videosalmonn": {"video_audio": False}},
    )
    assert extension(reply)["audio_present"] is False and extension(reply)["frames"] == 4


def test_streaming_gives_the_same_answer(client):
    messages = [video_message("Describe the video.")]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=MAX_TOKENS)
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=MAX_TOKENS, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason == whole.choices[0].finish_reason
    assert extension(last)["audio_present"] is True
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # it did stream


def test_raw_sse_format(server):
    body = {"model": "tiny", "messages": [video_message("Hi")], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server[0]}/v1/chat/completions", json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-2])


def test_image_and_input_audio(client):
    content = [
        {"type": "text", "text": "What is in the picture, and what is the sound?"},
        {"type": "image_url", "image_url": {"url": data_url(png_bytes(), "image/png")}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(1.5)).decode(), "format": "wav"}},
    ]
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": content}], max_tokens=MAX_TOKENS
    )
    used = extension(reply)
    assert used["frames"] == 1 and used["audio_present"] and used["audio_seconds"] == pytest.approx(1.5, abs=0.01)


def test_multi_turn(client):
    one = client.chat.completions.create(model="tiny", messages=[video_message("What moves?")], max_tokens=MAX_TOKENS)
    messages = [
        video_message("What moves?"),
        {"role": "assistant", "content": "A white square."},
        {"role": "user", "content": "Which way does it go?"},
    ]
    two = client.chat.completions.create(model="tiny", messages=messages, max_tokens=MAX_TOKENS)
    assert two.choices[0].message.content and two.usage.prompt_tokens > one.usage.prompt_tokens


def test_local_paths_inside_the_allowed_root(server, client):
    for url in ("clip.mp4", f"file://{server[1] / 'clip.mp4'}"):
        reply = client.chat.completions.create(model="tiny", messages=[video_message("Hi", url)], max_tokens=MAX_TOKENS)
        assert extension(reply)["audio_present"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="tiny", messages=[video_message("Hi", "../../etc/passwd")], max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="tiny",
            messages=[video_message("Hi")],
            max_tokens=2,
            stream=True,
            extra_body={"videosalmonn": {"num_beams": 2}},
        )
    assert "beam" in str(e.value)


def test_32_concurrent_requests_are_batched_and_answered_as_alone(server, client):
    questions = ["What moves?", "What is the sound?", "Describe the scene.", "What colour is the square?"]
    alone = {
        q: client.chat.completions.create(model="tiny", messages=[video_message(q)], max_tokens=MAX_TOKENS)
        .choices[0]
        .message.content
        for q in questions
    }
    before = httpx.get(f"{server[0]}/health", timeout=TIMEOUT).json()

    def ask(i: int) -> tuple[str, str]:
        q = questions[i % len(questions)]
        reply = client.chat.completions.create(model="tiny", messages=[video_message(q)], max_tokens=MAX_TOKENS)
        return q, reply.choices[0].message.content

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, range(32)))
    assert len(answers) == 32 and all(text == alone[q] for q, text in answers)
    after = httpx.get(f"{server[0]}/health", timeout=TIMEOUT).json()
    assert after["answered"] - before["answered"] == 32 and after["largest_batch"] > 1
    assert after["in_flight"] == 0 and after["queued"] == 0
