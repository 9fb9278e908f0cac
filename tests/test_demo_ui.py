"""`videosalmonn demo-ui`: the answer stream, the Gradio API, and the page driven in headless Chromium.

The browser test talks the Chrome DevTools Protocol over `--remote-debugging-pipe` (no extra Python package):
it uploads the test clip, types a question, clicks Ask, waits for the answer and writes a screenshot to
test-artifacts/demo-ui.png. It skips when no `chromium` is installed (Debian: apt-get install chromium).
"""

import base64
import itertools
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import pytest
from conftest import ROOT

from videosalmonn.config import GenerationConfig
from videosalmonn.demo.app import ask, display_frames
from videosalmonn.errors import VideoSalmonnError
from videosalmonn.pipeline import Pipeline, Request

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT = 60


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.from_pretrained("tiny", device="cpu")


def test_ask_streams_the_answer_and_reports_what_was_used(pipeline):
    steps = list(ask(pipeline, str(CLIP), None, None, "What moves?", max_tokens=8))
    texts = [text for text, _, _ in steps]
    solo = pipeline.answer_batch(
        [Request("What moves?", video=str(CLIP))],
        GenerationConfig(max_new_tokens=8, num_beams=1, repetition_penalty=1.0),
    )[0]
    assert texts[0] == "" and texts[-1] == solo.text and len(steps) > 3  # streamed, then the answer
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts[1:-1]))
    used, frames = steps[-1][1], steps[-1][2]
    assert "2.00 s of 2.00 s" in used and "**yes**" in used and "video's own sound track" in used
    assert [caption for _, caption in frames] == ["0.00 s", "0.48 s", "1.00 s", "1.48 s"]
    assert frames[0][0].shape == (224, 224, 3) and frames[0][0].dtype.name == "uint8"
    beams = list(ask(pipeline, str(CLIP), None, None, "What moves?", max_tokens=8, beams=2))
    assert len(beams) == 2 and beams[-1][0]  # no streaming with beams


def test_display_frames_undo_the_normalisation(pipeline):
    clip = pipeline.load(Request("x", video=str(CLIP)))
    frames = display_frames(clip)
    square = frames[0][0][96:128, :, :].max()  # the white square is there
    assert square >= 250 and len(frames) == clip.frames.shape[0]


def test_ask_errors_are_user_errors(pipeline):
    with pytest.raises(VideoSalmonnError):
        list(ask(pipeline, None, None, None, "What?"))
    with pytest.raises(VideoSalmonnError):
        list(ask(pipeline, str(CLIP), None, None, "  "))


@pytest.fixture(scope="module")
def demo_url(pipeline):
    pytest.importorskip("gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from videosalmonn.demo.app import build_demo

    demo = build_demo(pipeline).queue()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, share=False)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.mark.slow
def test_gradio_api_answers(demo_url):
    from gradio_client import Client, handle_file

    client = Client(demo_url, verbose=False)
    text, used, frames = client.predict(handle_file(str(CLIP)), None, None, "What moves?", 6, 1, api_name="/answer")
    assert text and "audio: **yes**" in used and len(frames) == 4


class Chromium:
    """Headless Chromium driven over --remote-debugging-pipe: CDP JSON messages, NUL-separated, on fds 3 and 4."""

    def __init__(self, width: int = 1200, height: int = 1300):
        to_chrome, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="videosalmonn-chromium-")

        def on_fds_3_and_4():
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(3, 4, to_chrome, from_chrome),
            preexec_fn=on_fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id, self.session = b"", 0, None

    def send(self, method: str, params: dict | None = None, browser: bool = False, timeout: float = TIMEOUT) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer {method} within {timeout} s")
            if select.select([self._from_chrome], [], [], left)[0]:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium exited")
                self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"still false after {timeout} s: {expression}")

    def upload(self, selector: str, path: str, attempts: int = 5) -> None:
        for attempt in range(attempts):  # node ids go stale when the page re-renders in between: retry
            try:
                document = self.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]["nodeId"]
                node = self.send("DOM.querySelector", {"nodeId": document, "selector": selector})["nodeId"]
                if not node:
                    raise RuntimeError(f"no element {selector}")
                self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [path]})
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)

    def type_into(self, selector: str, text: str) -> None:
        self.js(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(el, {json.dumps(text)});
            el.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()""")

    def screenshot(self, path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_page_in_headless_chromium(demo_url):
    # The DevTools session itself can fail on a loaded machine (a stale node, a slow first render): one retry
    # with a fresh browser for driver errors only; the assertions below are never retried.
    for attempt in range(2):
        try:
            answer, used, frames = _ask_through_the_page(demo_url)
            break
        except (RuntimeError, TimeoutError):
            if attempt == 1:
                raise
    assert answer and "2.00 s of 2.00 s" in used and "audio: yes" in used and frames == 4
    assert (ARTIFACTS / "demo-ui.png").stat().st_size > 10_000


def _ask_through_the_page(demo_url: str) -> tuple[str, str, int]:
    browser = Chromium()
    try:
        browser.open(demo_url)
        browser.wait_for("document.querySelector('#question textarea') !== null")
        # every element is awaited before use: Gradio renders components one by one (a bare query can race)
        browser.wait_for("document.querySelector('#video input[type=file]') !== null")
        browser.upload("#video input[type=file]", str(CLIP))
        browser.wait_for("document.querySelector('#video video') !== null")
        browser.type_into("#question textarea", "What is moving, and what do you hear?")
        browser.wait_for("document.querySelector('#ask') !== null")
        browser.js("document.querySelector('#ask').click()")
        answer = browser.wait_for("""(() => { const t = document.querySelector('#answer textarea');
            const used = document.querySelector('#used');
            return t && t.value && used && used.innerText.includes('answer tokens') ? t.value : null; })()""")
        used = browser.js("document.querySelector('#used').innerText")
        frames = browser.wait_for("document.querySelectorAll('#frames img').length")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "demo-ui.png")
        return answer, used, frames
    finally:
        browser.close()
