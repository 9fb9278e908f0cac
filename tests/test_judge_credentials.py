"""The LLM judge's API key is a credential: https or loopback only, and never sent across a redirect."""

import http.server
import json
import threading

import pytest

from videosalmonn.errors import InputError
from videosalmonn.evaluation.judge import OpenAIChatClient

MESSAGES = [{"role": "user", "content": "same source?"}]


class _Server:
    """A local HTTP server in a thread; `handler(request_handler)` answers; `seen` records (method, path, auth)."""

    def __init__(self, handler):
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                outer.seen.append((self.command, self.path, self.headers.get("Authorization")))
                handler(self)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reply(handler):
    body = json.dumps({"choices": [{"message": {"content": "Yes."}}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def sink():
    server = _Server(_reply)
    yield server
    server.close()


def test_a_redirect_is_not_followed_with_the_key(sink):
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", sink.url + "/v1/chat/completions")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    redirector = _Server(redirect)
    try:
        client = OpenAIChatClient(redirector.url + "/v1", api_key="secret")
        with pytest.raises(InputError, match="redirected \\(302\\).*not followed"):
            client(MESSAGES)
    finally:
        redirector.close()
    assert redirector.seen and redirector.seen[0][2] == "Bearer secret"
    assert sink.seen == []  # the other host never saw the request, nor the key


def test_the_key_goes_over_http_only_to_this_machine(sink):
    assert OpenAIChatClient(sink.url + "/v1", api_key="secret")(MESSAGES) == "Yes."  # loopback: allowed
    assert sink.seen[-1][2] == "Bearer secret"
    with pytest.raises(InputError, match="refusing to send \\$OPENAI_API_KEY over http to judge.invalid"):
        OpenAIChatClient("http://judge.invalid/v1", api_key="secret")(MESSAGES)
    # without a key, or with the explicit flag, plain http to another host is the user's choice
    for client in (
        OpenAIChatClient("http://judge.invalid/v1"),
        OpenAIChatClient("http://judge.invalid/v1", api_key="secret", allow_http_key=True),
    ):
        with pytest.raises(InputError) as e:
            client(MESSAGES)
        assert "refusing" not in str(e.value)  # it tried (and the name does not resolve)


def test_the_settings_flag_reaches_the_client(monkeypatch):
    """`EvalSettings.judge_allow_http` (`eval run --judge-allow-http`) builds the judge client with the flag."""
    from videosalmonn.evaluation import judge
    from videosalmonn.evaluation.settings import EvalSettings

    made = []
    monkeypatch.setattr(judge, "OpenAIChatClient", lambda *a, **k: made.append(k) or (lambda m: "Yes."))
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    for flag in (True, False):
        EvalSettings(task="avssd", judge_url="http://judge.invalid/v1", judge_allow_http=flag).resolve_task()
    assert [k["allow_http_key"] for k in made] == [True, False] and made[0]["api_key"] == "secret"
