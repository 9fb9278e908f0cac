"""Server compatibility mode (issue 16, item 3): vLLM- and lmms-eval-shaped requests, system messages in the prompt
layouts, unknown vendor fields ignored (or refused with `strict`), images as a video, and http(s) fetching with its
refusals. Unit tests first, then the fetcher against a local HTTP server, then a live server and the openai client."""

import base64
import io
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from conftest import ROOT

from videosalmonn.errors import ConfigError
from videosalmonn.media.video import load_video
from videosalmonn.prompting.templates import prompt_style
from videosalmonn.serving.fetch import FetchPolicy, FetchRefused
from videosalmonn.serving.media import MediaFiles, MediaRef, MediaRefused
from videosalmonn.serving.schema import ApiError, conversation, listed, parse_request
from videosalmonn.serving.settings import ServeSettings
from videosalmonn.types import Turn

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"  # 2 s, moving square, 440 Hz tone as AAC
MB = 1 << 20
TIMEOUT = 60


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def image_part(data: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data, "image/png")}}


VIDEO_PART = {"type": "video_url", "video_url": {"url": data_url(CLIP.read_bytes(), "video/mp4")}}


def chat(*parts, messages=None, **fields) -> dict:
    user = {"role": "user", "content": [{"type": "text", "text": "What happens?"}, *(parts or [VIDEO_PART])]}
    return {"model": "tiny", "messages": messages if messages is not None else [user], **fields}


def refusal(data, strict: bool = False) -> ApiError:
    with pytest.raises(ApiError) as e:
        conversation(parse_request(data, strict), 10_000)
    return e.value


# ------------------------------------------------------------------------------------ prompt layouts


def text_of(style: str, turns: list[Turn]) -> str:
    return "".join(
        p.text if p.text is not None else ("[media]" if p.media else f"<{p.special}>")
        for p in prompt_style(style).render(turns)
    )


def test_system_text_in_each_prompt_layout():
    turns = [Turn("user", "What moves?")]
    system = [Turn("system", "Answer in one word."), *turns]
    assert text_of("official", turns) == "<bos>USER: <Img>[media]</Img> What moves?\nASSISTANT:"
    assert text_of("official", system) == "<bos>USER: <Img>[media]</Img> Answer in one word.\nWhat moves?\nASSISTANT:"
    assert text_of("llama2", system) == (
        "<bos>[INST] <<SYS>>\nAnswer in one word.\n<</SYS>>\n\n<Img>[media]</Img> What moves? [/INST]"
    )
    assert text_of("llama2", turns) == "<bos>[INST] <Img>[media]</Img> What moves? [/INST]"
    chatml = text_of("chatml", system)
    assert chatml.startswith("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\n<Img>")
    assert "SmolLM" in text_of("chatml", turns) and "SmolLM" not in chatml
    later = [*system, Turn("assistant", "A square."), Turn("user", "Where?")]
    assert text_of("official", later).endswith("A square.<eos>USER: Where?\nASSISTANT:")  # only the first turn


# ------------------------------------------------------------------------------------ schema


def test_unknown_vendor_fields_are_dropped_and_listed_or_refused_when_strict():
    data = chat(
        {**VIDEO_PART, "video_url": {**VIDEO_PART["video_url"], "fps": 2}, "uuid": "v1"},
        media_io_kwargs={"video": {"num_frames": 8}},
        mm_processor_kwargs={"use_audio_in_video": False, "fps": 1},
        chat_template_kwargs={},
        max_tokens=4,
    )
    data["messages"][0]["name_extra"] = 1
    req = parse_request(data, strict=False)
    assert req.ignored == (
        "messages.0.content.1.video_url.fps",
        "messages.0.content.1.uuid",
        "messages.0.name_extra",
        "media_io_kwargs",
        "mm_processor_kwargs.fps",
        "chat_template_kwargs",
    )
    conv = conversation(req, 10_000)
    assert conv.video_audio is False and req.max_tokens == 4 and [m.kind for m in conv.media] == ["video"]
    strict = refusal(data, strict=True)
    assert strict.code == "unknown_field" and strict.param == "messages.0.content.1.video_url.fps"
    assert refusal(chat(media_io_kwargs={}), strict=True).param == "media_io_kwargs"
    assert parse_request(chat(), strict=False).ignored == ()


def test_compatibility_mode_still_refuses_what_would_change_the_answer():
    assert refusal(chat(tools=[{"type": "function"}])).code == "unsupported_field"  # an OpenAI field not implemented
    assert refusal(chat(videosalmonn={"beams": 2})).code == "unknown_field"  # our own extension stays strict
    part = {"type": "file", "file": {"file_id": "x"}}
    assert refusal(chat(part)).code == "invalid_value"  # an unknown part type is content, not a vendor field
    assert refusal(chat(mm_processor_kwargs={"use_audio_in_video": "yes"})).code == "invalid_value"


def test_listed_names_are_capped_and_header_safe():
    names = tuple(f"f{i}" for i in range(25)) + ("bad\r\nSet-Cookie: x",)
    shown = listed(names)
    assert shown[:2] == ["f0", "f1"] and len(shown) == 21 and shown[-1] == "(+6 more)"
    assert listed(("a\r\nb: c",)) == ["a??b??c"]


@pytest.mark.parametrize(
    "fields, audio_part, expected",
    [
        ({}, False, True),  # the model's default: a video's own sound is used
        ({"mm_processor_kwargs": {"use_audio_in_video": True}}, False, True),
        ({"mm_processor_kwargs": {"use_audio_in_video": False}}, False, False),
        ({"videosalmonn": {"video_audio": False}}, False, False),
        ({"videosalmonn": {"video_audio": True}, "mm_processor_kwargs": {"use_audio_in_video": True}}, False, True),
        ({"mm_processor_kwargs": {"use_audio_in_video": False}}, True, False),
        ({"mm_processor_kwargs": {}}, True, True),
    ],
)
def test_use_audio_in_video(fields, audio_part, expected):
    parts = [VIDEO_PART] + ([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}] * audio_part)
    assert conversation(parse_request(chat(*parts, **fields)), 10_000).video_audio is expected


def test_use_audio_in_video_conflicts_are_refused():
    both = chat(videosalmonn={"video_audio": True}, mm_processor_kwargs={"use_audio_in_video": False})
    e = refusal(both)
    assert e.code == "invalid_value" and e.param == "mm_processor_kwargs.use_audio_in_video"
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    e = refusal(chat(VIDEO_PART, audio, mm_processor_kwargs={"use_audio_in_video": True}))
    assert e.code == "too_many_media" and "one audio slot" in e.message


def test_system_and_developer_messages_become_the_system_turn():
    user = chat()["messages"][0]
    conv = conversation(
        parse_request(
            chat(
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
                    user,
                ]
            )
        ),
        10_000,
    )
    assert conv.turns[0] == Turn("system", "Be brief.\nUse English.") and conv.turns[1] == Turn("user", "What happens?")
    empty = conversation(parse_request(chat(messages=[{"role": "system", "content": ""}, user])), 10_000)
    assert [t.role for t in empty.turns] == ["user"]
    late = refusal(chat(messages=[user, {"role": "assistant", "content": "x"}, {"role": "system", "content": "y"}]))
    assert late.code == "invalid_conversation" and late.param == "messages.2.role"
    media = refusal(chat(messages=[{"role": "system", "content": [VIDEO_PART]}, user]))
    assert media.code == "invalid_conversation" and media.param == "messages.0.content.0"
    long = refusal(chat(messages=[{"role": "system", "content": "x" * 10_001}, user]))
    assert long.code == "prompt_too_long"  # the system text counts


def test_images_of_one_message_are_one_video():
    frames = [image_part(png((i * 40, 0, 0))) for i in range(3)]
    conv = conversation(parse_request(chat(*frames)), 10_000)
    (video,) = conv.media
    assert video.kind == "video" and len(video.frames) == 3 and video.label == "messages.0.content.1-3.image_url"
    assert [f.label for f in video.frames] == [f"messages.0.content.{j}.image_url" for j in (1, 2, 3)]
    assert conv.notes == ("messages.0.content.1-3.image_url: 3 images taken as the frames of one video at 2 fps",)
    single = conversation(parse_request(chat(frames[0])), 10_000)
    assert [m.kind for m in single.media] == ["image"] and not single.notes
    two_messages = chat(
        messages=[
            {"role": "user", "content": [frames[0]]},
            {"role": "assistant", "content": "Red."},
            {"role": "user", "content": [frames[1], {"type": "text", "text": "And now?"}]},
        ]
    )
    assert refusal(two_messages).code == "too_many_media"
    assert refusal(chat(VIDEO_PART, *frames)).code == "too_many_media"


def test_frames_are_written_as_a_2_fps_video(tmp_path):
    frames = [MediaRef("image", data_url(png((i * 60, 200, 30)), "image/png"), f"f{i}") for i in range(3)]
    frames.append(MediaRef("image", data_url(png((250, 250, 250), (33, 17)), "image/png"), "f3"))  # another size
    with MediaFiles(MB, None, max_frame_pixels=1 << 20) as files:
        path = files.path(MediaRef("video", "", "frames", frames=tuple(frames)))
        video = load_video(path, "uniform", size=32)
        assert path.endswith(".mkv") and video.times == pytest.approx([0.0, 0.5, 1.0, 1.5])
        assert video.info.duration == pytest.approx(2.0)
        red = video.frames[:, 0, 16, 16]  # lossless: every frame keeps its own colour (CLIP-normalised)
        assert red[0] < red[1] < red[2] < red[3]
        bad = [frames[0], MediaRef("image", data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * 99, "image/png"), "bad frame")]
        with pytest.raises(MediaRefused) as e:
            files.path(MediaRef("video", "", "frames", frames=tuple(bad)))
        assert e.value.code == "invalid_media" and str(e.value).startswith("bad frame:") and "/tmp" not in str(e.value)


def test_allow_fetch_settings():
    settings = ServeSettings(allow_fetch=("Example.COM.", "127.0.0.1", "*", "[::1]", "0:0::1"))
    assert settings.allow_fetch == ("example.com", "127.0.0.1", "*", "::1", "::1")
    assert ServeSettings().fetch_policy() is None and settings.fetch_policy().max_bytes == settings.max_media_bytes
    for bad in ("http://example.com", "example.com:8080", "example.com/x", "", "user@host"):
        with pytest.raises(ConfigError):
            ServeSettings(allow_fetch=(bad,))


# ------------------------------------------------------------------------------------ fetching


class Handler(BaseHTTPRequestHandler):
    """Routes of the local test server: the clip, redirects, a too-large body (with and without a length), a
    trickle that never ends in time, a 404."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/clip.mp4":
            self._send(200, CLIP.read_bytes(), "video/mp4")
        elif self.path == "/redirect":
            self._redirect("/clip.mp4")
        elif self.path == "/redirect-private":  # a public-looking name, but it resolves to loopback
            self._redirect(f"http://localhost:{port}/clip.mp4")
        elif self.path == "/redirect-link-local":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/redirect-ftp":
            self._redirect("ftp://127.0.0.1/clip.mp4")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/big":
            self._send(200, b"\0" * (2 * MB), "video/mp4")
        elif self.path == "/big-unannounced":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 65536)
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\0" * 10)
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self._send(404, b"not here", "text/plain")

    def _send(self, status: int, body: bytes, mime: str):
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that stops reading (the size/time limits) is fine
        pass


@pytest.fixture(scope="module")
def origin():
    """http://127.0.0.1:PORT of the local test server."""
    httpd = Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def policy(*hosts, max_bytes=MB, timeout=5.0, redirects=3) -> FetchPolicy:
    return ServeSettings(
        allow_fetch=hosts, max_media_bytes=max_bytes, fetch_timeout_s=timeout, fetch_max_redirects=redirects
    ).fetch_policy()


def fetch_refused(p: FetchPolicy, url: str) -> FetchRefused:
    with pytest.raises(FetchRefused) as e:
        p.fetch(url)
    return e.value


def test_fetch_from_an_explicitly_listed_host(origin):
    body, mime = policy("127.0.0.1").fetch(f"{origin}/clip.mp4")
    assert body == CLIP.read_bytes() and mime == "video/mp4"
    assert policy("127.0.0.1").fetch(f"{origin}/redirect")[0] == CLIP.read_bytes()  # same host, relative Location
    with MediaFiles(MB * 4, None, policy("127.0.0.1", max_bytes=4 * MB)) as files:
        path = files.path(MediaRef("video", f"{origin}/clip.mp4", "part"))
        assert path.endswith(".mp4") and Path(path).read_bytes() == CLIP.read_bytes()


def test_fetch_refusals(origin):
    port = origin.rsplit(":", 1)[1]
    unlisted = fetch_refused(policy("example.org"), f"{origin}/clip.mp4")
    assert (unlisted.status, unlisted.code) == (403, "host_not_allowed") and "--allow-fetch" in str(unlisted)
    for url in (  # "*" allows public addresses only; these are all refused before any connection
        f"{origin}/clip.mp4",
        f"http://localhost:{port}/clip.mp4",
        "http://10.1.2.3/x.mp4",
        "http://192.168.0.1/x.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.mp4",
        "http://[::ffff:127.0.0.1]/x.mp4",
        "http://0.0.0.0/x.mp4",
    ):
        e = fetch_refused(policy("*"), url)
        assert (e.status, e.code) == (403, "address_not_allowed"), url
    big = fetch_refused(policy("127.0.0.1"), f"{origin}/big")  # Content-Length says so: nothing read
    assert (big.status, big.code) == (413, "media_too_large")
    counted = fetch_refused(policy("127.0.0.1"), f"{origin}/big-unannounced")  # counted while reading
    assert (counted.status, counted.code) == (413, "media_too_large") and "more than" in str(counted)
    private = fetch_refused(policy("127.0.0.1", "*"), f"{origin}/redirect-private")  # localhost: only via "*"
    assert (private.status, private.code) == (403, "address_not_allowed") and "localhost" in str(private)
    link_local = fetch_refused(policy("127.0.0.1", "*"), f"{origin}/redirect-link-local")
    assert link_local.code == "address_not_allowed" and "169.254.169.254" in str(link_local)
    assert fetch_refused(policy("127.0.0.1"), f"{origin}/redirect-private").code == "host_not_allowed"
    assert fetch_refused(policy("127.0.0.1"), f"{origin}/redirect-ftp").code == "fetch_failed"
    loop = fetch_refused(policy("127.0.0.1", redirects=2), f"{origin}/loop")
    assert (loop.status, loop.code) == (400, "too_many_redirects")
    assert fetch_refused(policy("127.0.0.1", redirects=0), f"{origin}/redirect").code == "too_many_redirects"
    start = time.monotonic()
    slow = fetch_refused(policy("127.0.0.1", timeout=0.6), f"{origin}/slow")  # bytes keep coming, too slowly
    assert (slow.status, slow.code) == (400, "fetch_timeout") and time.monotonic() - start < 3
    assert fetch_refused(policy("127.0.0.1"), f"{origin}/missing").code == "fetch_failed"
    closed = fetch_refused(policy("127.0.0.1"), "http://127.0.0.1:1/x.mp4")  # nothing listens there
    assert closed.code == "fetch_failed"


def test_media_files_map_fetch_refusals_to_the_request_part(origin):
    with MediaFiles(MB, None, policy("127.0.0.1")) as files:
        with pytest.raises(MediaRefused) as e:
            files.path(MediaRef("video", f"{origin}/big", "messages.0.content.1.video_url"))
    assert e.value.status == 413 and str(e.value).startswith("messages.0.content.1.video_url: ")


# ------------------------------------------------------------------------------------ live server, openai client

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")


@contextmanager
def serving(pipeline, **settings):
    from test_serving_hostile import live

    from videosalmonn.serving import create_app

    base = ServeSettings(model_name="tiny", max_tokens=32, request_timeout_s=120, **settings)
    with live(create_app(pipeline, base)) as url:
        yield url, openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)


@pytest.fixture(scope="module")
def pipeline():
    from videosalmonn.pipeline import Pipeline

    return Pipeline.from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def live_client(pipeline, origin):
    with serving(pipeline, allow_fetch=("127.0.0.1",), max_media_bytes=MB) as (url, client):
        yield client


def ext(reply) -> dict:
    return reply.model_extra["videosalmonn"]


def video_message(text: str, url: str = VIDEO_PART["video_url"]["url"]) -> dict:
    return {
        "role": "user",
        "content": [{"type": "text", "text": text}, {"type": "video_url", "video_url": {"url": url}}],
    }


@pytest.mark.slow
def test_vllm_video_url_with_use_audio_in_video(live_client):
    """vLLM's documented shape for an audio-visual model: a video_url part, mm_processor_kwargs via extra_body."""
    for use, present in ((True, True), (False, False)):
        reply = live_client.chat.completions.create(
            model="tiny",
            messages=[video_message("What do you hear?")],
            max_tokens=4,
            extra_body={"mm_processor_kwargs": {"use_audio_in_video": use}},
        )
        assert reply.choices[0].message.content is not None
        assert ext(reply)["audio_present"] is present and ext(reply)["frames"] == 4


@pytest.mark.slow
def test_vllm_system_message_image_url_and_input_audio(live_client):
    content = [
        {"type": "image_url", "image_url": {"url": data_url(png((200, 30, 30)), "image/png")}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav(1.0)).decode(), "format": "wav"}},
        {"type": "text", "text": "What is shown and heard?"},
    ]
    plain = live_client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": content}], max_tokens=4
    )
    with_system = live_client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "You are a careful assistant."}, {"role": "user", "content": content}],
        max_tokens=4,
    )
    assert ext(with_system)["frames"] == 1 and ext(with_system)["audio_present"]
    assert with_system.usage.prompt_tokens > plain.usage.prompt_tokens  # the system text is in the prompt


@pytest.mark.slow
def test_lmms_eval_openai_backend_shape(live_client):
    """lmms-eval's OpenAI backends send a video as base64 PNG frames (image_url parts after the text); a vLLM
    target also gets media_io_kwargs. The frames are one 2-fps video; the unknown field comes back in a header."""
    frames = [image_part(png((i * 30, 100, 100))) for i in range(8)]
    raw = live_client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Describe the video."}, *frames]}],
        max_tokens=4,
        temperature=0,
        extra_body={"media_io_kwargs": {"video": {"num_frames": 8}}},
    )
    assert raw.headers["x-videosalmonn-ignored"] == "media_io_kwargs"
    reply = raw.parse()
    used = ext(reply)
    assert used["frames"] == 8 and used["video_seconds"] == pytest.approx(4.0) and used["audio_present"] is False
    assert used["ignored"] == ["media_io_kwargs"] and any("8 images" in note for note in used["notes"])
    plain = live_client.chat.completions.with_raw_response.create(
        model="tiny", messages=[video_message("Hi")], max_tokens=2
    )
    assert "x-videosalmonn-ignored" not in plain.headers and "ignored" not in ext(plain.parse())


@pytest.mark.slow
def test_streaming_carries_the_ignored_header(live_client):
    with live_client.chat.completions.with_streaming_response.create(
        model="tiny", messages=[video_message("Hi")], max_tokens=3, stream=True, extra_body={"media_io_kwargs": {}}
    ) as response:
        assert response.headers["x-videosalmonn-ignored"] == "media_io_kwargs"
        chunks = list(response.parse())
    assert ext([c for c in chunks if c.choices][-1])["ignored"] == ["media_io_kwargs"]


@pytest.mark.slow
def test_http_video_url_fetched_from_an_allowed_host(live_client, origin):
    reply = live_client.chat.completions.create(
        model="tiny", messages=[video_message("What moves?", f"{origin}/clip.mp4")], max_tokens=4
    )
    assert ext(reply)["audio_present"] and ext(reply)["video_seconds"] == pytest.approx(2.0, abs=0.05)
    with pytest.raises(openai.PermissionDeniedError) as e:
        live_client.chat.completions.create(
            model="tiny", messages=[video_message("Hi", "http://example.org/clip.mp4")], max_tokens=2
        )
    assert e.value.body["code"] == "host_not_allowed"
    with pytest.raises(openai.APIStatusError) as e:
        live_client.chat.completions.create(model="tiny", messages=[video_message("Hi", f"{origin}/big")], max_tokens=2)
    assert e.value.status_code == 413


@pytest.mark.slow
def test_strict_server_refuses_unknown_fields_and_no_flag_refuses_urls(pipeline):
    with serving(pipeline, strict=True) as (_, client):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="tiny",
                messages=[video_message("Hi")],
                max_tokens=2,
                extra_body={"media_io_kwargs": {"video": {"num_frames": 8}}},
            )
        assert e.value.body["code"] == "unknown_field" and e.value.body["param"] == "media_io_kwargs"
        reply = client.chat.completions.create(  # what compatibility mode honours, strict honours too
            model="tiny",
            messages=[{"role": "system", "content": "Be brief."}, video_message("Hi")],
            max_tokens=2,
            extra_body={"mm_processor_kwargs": {"use_audio_in_video": False}},
        )
        assert ext(reply)["audio_present"] is False
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(
                model="tiny", messages=[video_message("Hi", "https://example.org/clip.mp4")], max_tokens=2
            )
        assert e.value.body["code"] == "fetch_not_allowed" and "--allow-fetch" in e.value.body["message"]


def wav(seconds: float, rate: int = 16_000) -> bytes:
    import wave

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_serve_flags():
    import argparse

    from videosalmonn.serving.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["serve", "--allow-fetch", "cdn.example.org", "127.0.0.1", "--allow-fetch", "*", "--strict"]
    )
    assert args.allow_fetch == ["cdn.example.org", "127.0.0.1", "*"] and args.strict and args.fetch_timeout == 30
    plain = parser.parse_args(["serve"])
    assert plain.allow_fetch == [] and not plain.strict
