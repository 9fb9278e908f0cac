"""create_app(pipeline, settings): the OpenAI-compatible endpoints over one `Pipeline`.

    GET  /health                 liveness + queue and batching counters
    GET  /v1/models              the one served model
    POST /v1/chat/completions    OpenAI chat completions (schema.py), `stream: true` as server-sent events

A request goes: body (size-limited) -> strict schema -> conversation + decoding settings -> admission (at most
`max_queue` in the server, else 503) -> media fetched and decoded in a thread pool (media.py, `Pipeline.load`)
-> queued for the batcher -> answer (JSON) or chunks (SSE). Every failure is a JSON `{"error": ...}` with a 4xx
for bad input, 503 when full, 504 past the request timeout and 500 for a bug; none stops the server.

Extension of the response (and of the last stream chunk): `videosalmonn` = what the model used (Answer.to_json
without the text: media_tokens, media_seconds, video_seconds, audio_seconds, frames, audio_present, cut, notes)
and the decoding settings (`generation`). A model with random weights (the `tiny` preset) says so: `notice` in
that extension, the `X-Videosalmonn-Notice` header of every completion, and `notice` in /health.

Compatibility mode (the default; `strict` settings turn the first point off): request fields this server does not
know are dropped and named in the `X-Videosalmonn-Ignored` header (comma-separated) and `videosalmonn.ignored`;
how the request was read (e.g. images taken as a video) is added to `videosalmonn.notes`. See schema.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from videosalmonn.errors import MediaError, VideoSalmonnError
from videosalmonn.media.budget import MediaTooLong
from videosalmonn.pipeline import Answer, Pipeline, Request
from videosalmonn.prompting.conversation import encode_conversation
from videosalmonn.serving.batcher import Batcher, Job
from videosalmonn.serving.media import MediaFiles, MediaRefused, probe_seconds
from videosalmonn.serving.schema import (
    ApiError,
    ChatCompletionRequest,
    Conversation,
    conversation,
    generation_config,
    listed,
    parse_request,
)
from videosalmonn.serving.settings import ServeSettings
from videosalmonn.streaming import TextDeltas
from videosalmonn.types import MediaClip

log = logging.getLogger(__name__)
MIB = 1 << 20
NOTICE_HEADER = "X-Videosalmonn-Notice"
IGNORED_HEADER = "X-Videosalmonn-Ignored"


def create_app(pipeline: Pipeline, settings: ServeSettings) -> FastAPI:
    server = Server(pipeline, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start()
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(title="videosalmonn", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(_, e: ApiError):
        return JSONResponse(e.body(), e.status, headers={"Retry-After": "1"} if e.status == 503 else None)

    @app.exception_handler(VideoSalmonnError)
    async def input_error(_, e: VideoSalmonnError):
        return JSONResponse(ApiError(400, str(e), "invalid_request").body(), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, e: StarletteHTTPException):
        return JSONResponse(ApiError(e.status_code, str(e.detail), "http_error").body(), e.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_, e: RequestValidationError):
        return JSONResponse(ApiError(400, str(e.errors()[0].get("msg", e)), "invalid_request").body(), 400)

    @app.exception_handler(Exception)
    async def bug(_, e: Exception):
        log.exception("unhandled error")
        return JSONResponse(ApiError(500, f"internal error ({type(e).__name__})", "internal_error").body(), 500)

    @app.get("/health")
    async def health():
        return server.health()

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {"id": settings.model_name, "object": "model", "created": server.created, "owned_by": "videosalmonn"}
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HttpRequest):
        return await server.chat(http)

    return app


class Server:
    """The state behind the endpoints: the pipeline, the batcher, the decode pool and the admission count."""

    def __init__(self, pipeline: Pipeline, settings: ServeSettings):
        self.pipeline = pipeline
        self.settings = settings
        self.batcher = Batcher(pipeline, settings.max_batch_size, settings.batch_wait_ms / 1000)
        self.pool: ThreadPoolExecutor | None = None
        self.in_flight = 0
        self.created = int(time.time())

    def start(self) -> None:
        self.pool = ThreadPoolExecutor(self.settings.decode_workers, thread_name_prefix="videosalmonn-decode")
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.stop()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def health(self) -> dict:
        s = self.batcher.stats
        return {
            "status": "ok",
            "model": self.settings.model_name,
            **({"notice": self.pipeline.notice} if self.pipeline.notice else {}),
            "in_flight": self.in_flight,
            "queued": len(self.batcher),
            "max_batch_size": self.settings.max_batch_size,
            "batches": s.batches,
            "answered": s.answered,
            "failed": s.failed,
            "aborted": s.aborted,
            "largest_batch": s.largest_batch,
            "batch_sizes": {str(k): v for k, v in sorted(s.sizes.items())},
        }

    def notice_headers(self) -> dict[str, str]:
        """`X-Videosalmonn-Notice: random weights: ...` when the pipeline has a notice (ASCII: a header value)."""
        notice = self.pipeline.notice
        return {NOTICE_HEADER: notice.encode("ascii", "replace").decode()} if notice else {}

    # ------------------------------------------------------------------------------------ one request

    async def chat(self, http: HttpRequest):
        deadline = time.monotonic() + self.settings.request_timeout_s
        release = self._admit()  # a queue slot before the body is read: a full server reads (buffers) nothing
        try:
            body = await self._body(http, deadline)
            strict = self.settings.strict
            req = await asyncio.to_thread(lambda: parse_request(_json(body), strict))  # a big body: not on the loop
            if req.model != self.settings.model_name:
                raise ApiError(
                    404,
                    f"model '{req.model}' is not served here (this server serves '{self.settings.model_name}')",
                    "model_not_found",
                    "model",
                )
            conv = conversation(req, self.settings.max_prompt_chars)
            try:
                gen = generation_config(
                    req, self.pipeline.cfg.generation, self.settings.max_tokens, self.settings.max_beam_tokens
                )
            except VideoSalmonnError as e:
                raise ApiError(400, str(e), "invalid_value") from None
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.pool, self._load, conv)
            request, clip, text_tokens = await _until(future, deadline, self.settings.request_timeout_s)
            events: asyncio.Queue = asyncio.Queue()
            job = Job(
                request,
                clip,
                gen,
                _emitter(loop, events),
                TextDeltas(self.pipeline.tokenizer.decode, self.pipeline.tokenizer.eos_id),
                req.stream,
            )
            self.batcher.submit(job)
        except BaseException:
            release()
            raise
        reply = Reply(self.settings.model_name, req, gen, text_tokens, conv.notes)
        headers = {**self.notice_headers(), **({IGNORED_HEADER: ", ".join(listed(req.ignored))} if req.ignored else {})}
        if req.stream:

            def finish():
                job.cancelled.set()
                release()

            return StreamingResponse(
                reply.sse(job, events, deadline, self.settings.request_timeout_s, finish),
                media_type="text/event-stream",
                background=BackgroundTask(finish),
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
            )
        try:
            while True:
                kind, value = await _until(_next_event(events, http, job), deadline, self.settings.request_timeout_s)
                if kind == "done":
                    return JSONResponse(reply.completion(value), headers=headers)
                if kind == "error":
                    raise _generation_error(value)
        except ApiError as e:
            if e.status == 504:
                job.cancelled.set()
            raise
        finally:
            release()

    async def _body(self, http: HttpRequest, deadline: float) -> bytes:
        """The request body, at most `max_body_bytes`, read within the request's deadline (408 past it); a client
        that goes away mid-body is one log line, not a traceback."""
        limit = self.settings.max_body_bytes
        too_large = ApiError(413, f"the request body is larger than {limit / MIB:.1f} MiB", "request_too_large")
        length = http.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_large

        async def read() -> bytes:
            chunks, total = [], 0
            async for chunk in http.stream():
                total += len(chunk)
                if total > limit:
                    raise too_large
                chunks.append(chunk)
            return b"".join(chunks)

        timeout = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(read(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:  # = TimeoutError from Python 3.11
            raise ApiError(
                408, f"the request body did not arrive within the request timeout ({timeout:g} s)", "body_timeout"
            ) from None
        except ClientDisconnect:
            log.info("client %s disconnected while sending its request body", _client(http))
            raise ApiError(
                400, "the client disconnected while sending the request body", "client_disconnected"
            ) from None

    def _admit(self):
        """Count the request in (503 when the server holds `max_queue` already); returns its idempotent release."""
        if self.in_flight >= self.settings.max_queue:
            raise ApiError(
                503,
                f"the server is busy ({self.in_flight} requests in progress, at most "
                f"{self.settings.max_queue}); retry later",
                "queue_full",
            )
        self.in_flight += 1
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        return release

    def _load(self, conv: Conversation) -> tuple[Request, MediaClip, int]:
        """(decode thread) media refs -> files -> MediaClip, checked; and the prompt's text token count."""
        s = self.settings
        try:
            media = self.pipeline.cfg.media
            with MediaFiles(s.max_media_bytes, s.allowed_root, s.fetch_policy(), media.max_frame_pixels) as files:
                paths = {}
                for ref in conv.media:
                    paths[ref.kind] = files.path(ref)
                    seconds = None if ref.kind == "image" else probe_seconds(paths[ref.kind], ref.label)
                    if seconds is not None and seconds > s.max_media_seconds:
                        raise MediaRefused(
                            400,
                            ref.label,
                            f"the media lasts {seconds:.1f} s; this server takes at most {s.max_media_seconds:g} s",
                            "media_too_long",
                        )
                # The paths die with `files`; the Pipeline gets the decoded clip along with the request.
                request = conv.to_request(paths)
                try:  # the duration limit holds while decoding too: a header need not state the duration
                    clip = self.pipeline.load(request, s.max_media_seconds)
                except MediaTooLong as e:
                    raise ApiError(400, files.describe(e), "media_too_long") from None
                except MediaError as e:
                    raise ApiError(400, files.describe(e), "invalid_media") from None
        except MediaRefused as e:
            raise ApiError(e.status, str(e), e.code, e.label) from None
        except ApiError:
            raise
        except VideoSalmonnError as e:  # e.g. InputError: a video and an image, a bad time span
            raise ApiError(400, str(e), "invalid_request") from None
        except Exception as e:  # a decoder choking on hostile input is still bad input
            log.warning("media decoding failed", exc_info=True)
            raise ApiError(400, f"the media could not be decoded ({type(e).__name__})", "invalid_media") from None
        try:
            return request, clip, self._text_tokens(request)
        except VideoSalmonnError as e:
            raise ApiError(400, str(e), "invalid_request") from None

    def _text_tokens(self, request: Request) -> int:
        """Tokenise the prompt as the Pipeline will (so a bad conversation fails here, not in a batch)."""
        pipe = self.pipeline
        prompt = encode_conversation(request.turns(), pipe.style, pipe.tokenizer, 0, pipe.cfg.llm.max_text_tokens)
        return len(prompt.ids)


class Reply:
    """Builds the OpenAI response objects of one request."""

    def __init__(self, model: str, req: ChatCompletionRequest, gen, text_tokens: int, notes: tuple[str, ...] = ()):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.req = req
        self.gen = gen
        self.text_tokens = text_tokens
        self.notes = notes  # how the request was read (schema.Conversation.notes)

    def info(self, answer: Answer) -> dict:
        used = {k: v for k, v in answer.to_json().items() if k != "answer"}
        used["notes"] = [*self.notes, *used.get("notes", [])]
        return {
            **used,
            **({"ignored": listed(self.req.ignored)} if self.req.ignored else {}),
            "generation": asdict(self.gen),
        }

    def usage(self, answer: Answer) -> dict:
        prompt = self.text_tokens + answer.media_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": len(answer.token_ids),
            "total_tokens": prompt + len(answer.token_ids),
        }

    def finish_reason(self, answer: Answer) -> str:
        limited = any(note.startswith("answer limited") for note in answer.notes)
        return "length" if limited or len(answer.token_ids) >= self.gen.max_new_tokens else "stop"

    def completion(self, answer: Answer) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "logprobs": None,
                    "finish_reason": self.finish_reason(answer),
                }
            ],
            "usage": self.usage(answer),
            "videosalmonn": self.info(answer),
        }

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            **extra,
        }
        return _sse(body)

    async def sse(self, job: Job, events: asyncio.Queue, deadline: float, timeout: float, finish):
        """`data: {chunk}` events: the role, text deltas, the finish reason (+ extension), usage, `[DONE]`."""
        try:
            yield self.chunk({"role": "assistant", "content": ""})
            while True:
                try:
                    kind, value = await _until(events.get(), deadline, timeout)
                except ApiError as e:
                    yield _sse(e.body())
                    break
                if kind == "text":
                    yield self.chunk({"content": value})
                    continue
                if kind == "error":
                    yield _sse(_generation_error(value).body())
                    break
                rest = job.deltas.rest(value.text)
                if rest:
                    yield self.chunk({"content": rest})
                yield self.chunk({}, self.finish_reason(value), videosalmonn=self.info(value))
                options = self.req.stream_options
                if options is not None and options.include_usage:
                    yield _sse(
                        {
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": self.usage(value),
                        }
                    )
                break
            yield "data: [DONE]\n\n"
        finally:
            finish()


# ------------------------------------------------------------------------------------------ helpers


def _json(body: bytes) -> object:
    def constant(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        data = json.loads(body, parse_constant=constant)
    except (ValueError, RecursionError) as e:
        raise ApiError(
            400, f"the request body is not valid JSON ({str(e).splitlines()[0][:200]})", "invalid_json"
        ) from None
    where = _invalid_text(data)
    if where is not None:
        raise ApiError(
            400, f"{where[:200]}: text that is not valid Unicode (a lone surrogate such as \\ud800)", "invalid_text"
        )
    return data


def _invalid_text(data: object) -> str | None:
    """Where (`messages[0].content`) the first string (key or value) that UTF-8 cannot encode is, else None: JSON
    lets `\\ud800` escapes through, and neither the tokenizer nor the response could take them."""
    stack = [("body", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return where
        elif isinstance(value, dict):
            for k, v in value.items():
                if not _encodable(k):
                    return f"{where} (a key)"
                stack.append((f"{where}.{k}" if where != "body" else k, v))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sse(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


DISCONNECT_POLL_S = 0.5  # how often a waiting (non-streaming) request checks that its client is still there


async def _next_event(events: asyncio.Queue, http: HttpRequest, job: Job):
    """The worker's next event for `job`; a client that has gone away meanwhile cancels the job, which stops its
    generation (beam search included) within a decoding step."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            if await http.is_disconnected():
                job.cancelled.set()
                log.info("client %s left before its answer; its generation is cancelled", _client(http))
                raise ApiError(400, "the client disconnected before the answer", "client_disconnected") from None


def _client(http: HttpRequest) -> str:
    return http.client.host if http.client else "?"


async def _until(awaitable, deadline: float, timeout: float):
    try:
        return await asyncio.wait_for(awaitable, max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        raise ApiError(504, f"no answer within the request timeout ({timeout:g} s)", "timeout") from None


def _emitter(loop: asyncio.AbstractEventLoop, events: asyncio.Queue):
    def emit(event):
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is stopping
            pass

    return emit


def _generation_error(e: object) -> ApiError:
    if isinstance(e, VideoSalmonnError):
        return ApiError(400, str(e), "invalid_request")
    if isinstance(e, RuntimeError) and "shutting down" in str(e):
        return ApiError(503, str(e), "shutting_down")
    return ApiError(500, f"generation failed ({type(e).__name__})", "internal_error")
