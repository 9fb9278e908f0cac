"""The OpenAI chat-completions request as this server accepts it, and its translation to a `Request`.

Accepted:

    model, messages, max_tokens | max_completion_tokens, temperature, top_p, seed, stream, stream_options,
    n (= 1), frequency_penalty / presence_penalty (= 0), user (ignored), vLLM's `mm_processor_kwargs`:
    {use_audio_in_video}, and the extension object
    `videosalmonn`: {num_beams, length_penalty, repetition_penalty, top_k, start, end, video_audio}.

Any other field (a vendor's: lmms-eval's `media_io_kwargs`, vLLM's `uuid` on a media part, ...) is dropped and
listed in `ChatCompletionRequest.ignored` (the server answers it in a header); with `strict` it is a 400 naming it.
OpenAI fields this server does not implement (UNSUPPORTED, e.g. `tools`, `stop`) and unknown keys inside
`videosalmonn` are a 400 either way: ignoring them would change what the client asked for.

Content parts of a user message:

    {"type": "text", "text": "..."}
    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}        (vLLM's video part)
    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}
    {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}
    {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,..."}}        (vLLM's audio part)

A url may also be an http(s) URL (fetched only from the hosts of --allow-fetch), a local path or file:// URL
(read only inside the server's --allowed-root). A video's own sound track is used unless
`mm_processor_kwargs.use_audio_in_video` or `videosalmonn.video_audio` is false (both given: they must agree;
`use_audio_in_video: true` with a separate audio part is a 400: the model has one audio slot). The model has one
media slot, in the first user turn: a conversation carries at most one video or image and at most one audio, given
in any user message. Several images in one message are the frames of one video, at the model's 2 fps (media.py).
System/developer messages before the first user message are the conversation's system text, rendered by the
prompt layout (prompting/templates.py; the official layout has no system slot: the text goes before the first
question); one after it is a 400.

Decoding: neither temperature nor top_p -> the model's own setting (its preset: greedy for `tiny`, beam 5 for
the released model; greedy when streaming); temperature 0 -> greedy; temperature > 0 or top_p -> sampling.
Beam search cannot stream: `stream: true` with `videosalmonn.num_beams > 1` is a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from videosalmonn.config import GenerationConfig
from videosalmonn.serving.media import MediaRef
from videosalmonn.types import Request, Turn

# OpenAI fields this server does not implement: a clear "not supported" instead of "unknown field".
UNSUPPORTED = (
    "stop",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "response_format",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
    "service_tier",
    "store",
    "metadata",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
)
UNSET_VALUES = (None, False, [], {})
MAX_MESSAGES = 256  # turns per conversation (checked before the rest is validated)
MAX_PARTS = 256  # content parts per message (frames sent as images: 128 s of video at 2 fps)
MAX_LISTED = 20  # ignored field names reported
LISTED_NAME = re.compile(r"[^A-Za-z0-9_.\-]")  # other characters of a reported name become "?" (a header value)
UNION_BRANCHES = (
    "str",
    "int",
    "float",
    "bool",
    "list",
    "dict",
    "none",
)  # pydantic's names of union branches      # an unsupported field sent with one of these is simply ignored


class ApiError(Exception):
    """An error answered as OpenAI's `{"error": {...}}` object with an HTTP status."""

    TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout",
        413: "invalid_request_error",
        500: "internal_error",
        503: "server_overloaded",
        504: "timeout",
    }

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class MediaURL(_Strict):
    url: str


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: MediaURL


class AudioURLPart(_Strict):
    type: Literal["audio_url"]
    audio_url: MediaURL


class InputAudio(_Strict):
    data: str
    format: str = Field(pattern=r"^[A-Za-z0-9]{1,8}$")


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


Part = Annotated[TextPart | ImagePart | VideoPart | AudioURLPart | InputAudioPart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | Annotated[list[Part], Field(max_length=MAX_PARTS)]
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class Extension(_Strict):
    """`videosalmonn`: decoding settings OpenAI has no field for, and which part of the media to use."""

    num_beams: int | None = Field(None, ge=1, le=16)
    length_penalty: float | None = None
    repetition_penalty: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=0)
    start: float | None = Field(None, ge=0)
    end: float | None = Field(None, gt=0)
    video_audio: bool | None = None  # None: mm_processor_kwargs.use_audio_in_video, else True


class MMProcessorKwargs(_Strict):
    """vLLM's per-request processor settings; the one that means something for this model."""

    use_audio_in_video: bool | None = None


class ChatCompletionRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    user: str | None = None
    mm_processor_kwargs: MMProcessorKwargs | None = None
    videosalmonn: Extension | None = None
    _ignored: tuple[str, ...] = PrivateAttr(default=())

    @property
    def ignored(self) -> tuple[str, ...]:
        """Fields of the request that were dropped as unknown (dotted paths, e.g. 'media_io_kwargs')."""
        return self._ignored


def parse_request(data: object, strict: bool = True) -> ChatCompletionRequest:
    """Parsed JSON -> a validated request; ApiError(400) naming the first bad field. Not `strict`: unknown fields
    are dropped instead and listed in `.ignored`."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_json")
    for key in UNSUPPORTED:
        if key in data and data[key] not in UNSET_VALUES:
            raise ApiError(400, f"'{key}' is not supported by this server", "unsupported_field", key)
    data = {k: v for k, v in data.items() if k not in UNSUPPORTED}
    ignored: list[str] = []
    if not strict:
        data = _known(data, [ChatCompletionRequest], "", ignored)
    if isinstance(data.get("messages"), list) and len(data["messages"]) > MAX_MESSAGES:
        raise ApiError(
            400,
            f"{len(data['messages'])} messages; this server takes at most {MAX_MESSAGES}",
            "too_many_messages",
            "messages",
        )
    try:
        req = ChatCompletionRequest.model_validate(data)
    except ValidationError as e:
        raise _first_error(e) from None
    req._ignored = tuple(ignored)
    for key, supported in (("n", 1), ("frequency_penalty", 0), ("presence_penalty", 0)):
        if getattr(req, key) != supported:
            raise ApiError(
                400,
                f"'{key}' must be {supported} (this server does not support other values)",
                "unsupported_value",
                key,
            )
    return req


def _known(value, models: list[type[BaseModel]], path: str, ignored: list[str]):
    """`value` without the keys none of `models` has (recorded in `ignored`), down through the fields' models.
    A dict goes by its model: the only one, or the content part whose `type` it names; `videosalmonn` stays as sent
    (strict: it is ours)."""
    if isinstance(value, list):
        return [_known(v, models, f"{path}.{i}", ignored) if isinstance(v, dict) else v for i, v in enumerate(value)]
    model = _model_of(value, models) if isinstance(value, dict) else None
    if model is None or model is Extension:
        return value
    known = {}
    for key, v in value.items():
        where = f"{path}.{key}" if path else key
        field = model.model_fields.get(key)
        if field is None:
            ignored.append(where)
        else:
            known[key] = _known(v, _models(field.annotation), where, ignored)
    return known


def _models(annotation) -> list[type[BaseModel]]:
    """The models anywhere in a field's annotation (through unions, lists and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _model_of(value: dict, models: list[type[BaseModel]]) -> type[BaseModel] | None:
    if len(models) == 1:
        return models[0]
    tagged = [
        m
        for m in models
        if "type" in m.model_fields and value.get("type") in get_args(m.model_fields["type"].annotation)
    ]
    return tagged[0] if len(tagged) == 1 else None  # an unknown part type: left to validation (a 400)


def listed(names: tuple[str, ...]) -> list[str]:
    """Ignored field names as reported: at most MAX_LISTED, header-safe characters, then a count of the rest."""
    shown = [LISTED_NAME.sub("?", name)[:100] for name in names[:MAX_LISTED]]
    return shown + ([f"(+{len(names) - MAX_LISTED} more)"] if len(names) > MAX_LISTED else [])


def _first_error(e: ValidationError) -> ApiError:
    """The most telling error: an unknown field first, else the deepest one (a union reports every branch)."""
    errors = e.errors(include_url=False)
    unknown = [err for err in errors if err["type"] == "extra_forbidden"]
    err = unknown[0] if unknown else max(errors, key=lambda err: len(err["loc"]))
    where = _where(err["loc"])
    if unknown:
        return ApiError(400, f"unknown field '{where}'", "unknown_field", where)
    return ApiError(400, f"{where}: {err['msg']}" if where else err["msg"], "invalid_value", where or None)


def _where(loc: tuple) -> str:
    """A pydantic error location as a dotted path without union branch names, e.g.
    ('messages', 0, 'content', 'list[...]', 1, 'video_url', 'video_url', 'x') -> 'messages.0.content.1.video_url.x'."""
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p in UNION_BRANCHES or "[" in p))]
    return ".".join(p for i, p in enumerate(parts) if i == 0 or p != parts[i - 1])


# ------------------------------------------------------------------------------------ -> Request


@dataclass(frozen=True)
class Conversation:
    """A validated conversation: the turns (a system turn first if any), the media it refers to, the extension's
    media settings, and notes on how the request was read (e.g. images taken as a video)."""

    turns: tuple[Turn, ...]
    media: tuple[MediaRef, ...]
    start: float | None
    end: float | None
    video_audio: bool
    notes: tuple[str, ...] = ()

    @property
    def chars(self) -> int:
        return sum(len(t.text) for t in self.turns)

    def to_request(self, paths: dict[str, str]) -> Request:
        """The Pipeline request, once the media refs are local files (`paths`: kind -> path)."""
        return Request(
            self.turns,
            video=paths.get("video"),
            audio=paths.get("audio"),
            image=paths.get("image"),
            start=self.start,
            end=self.end,
            video_audio=self.video_audio,
        )


def conversation(req: ChatCompletionRequest, max_prompt_chars: int) -> Conversation:
    """Messages -> turns (system text first, then alternating, user first and last) + media refs; ApiError(400)
    when they don't fit."""
    system: list[str] = []
    turns: list[Turn] = []
    media: list[MediaRef] = []
    notes: list[str] = []
    for i, msg in enumerate(req.messages):
        where = f"messages.{i}"
        if msg.role in ("system", "developer"):
            if turns:
                raise ApiError(
                    400,
                    f"{where}: a {msg.role} message must come before the first user message (the prompt has one "
                    "system text, at the start)",
                    "invalid_conversation",
                    f"{where}.role",
                )
            system.append(_texts(msg, where))
            continue
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if msg.role != expected:
            raise ApiError(
                400,
                f"{where}: expected a {expected} message (turns alternate, starting with the user)",
                "invalid_conversation",
                f"{where}.role",
            )
        if msg.role == "assistant":
            turns.append(Turn("assistant", _texts(msg, where)))
            continue
        parts = [TextPart(type="text", text=msg.content)] if isinstance(msg.content, str) else msg.content
        texts, images = [], []
        for j, part in enumerate(parts):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                images.append(_media_ref(part, f"{where}.content.{j}"))
            else:
                media.append(_media_ref(part, f"{where}.content.{j}"))
        if len(images) > 1:
            label = f"{images[0].label.rsplit('.', 2)[0]}.{_index(images[0])}-{_index(images[-1])}.image_url"
            media.append(MediaRef("video", "", label, frames=tuple(images)))
            notes.append(f"{label}: {len(images)} images taken as the frames of one video at 2 fps")
        else:
            media += images
        turns.append(Turn("user", "\n".join(texts)))
    if not turns or turns[-1].role != "user":
        raise ApiError(400, "the last message must be a user message", "invalid_conversation", "messages")
    _check_media(media)
    ext = req.videosalmonn or Extension()
    if ext.start is not None and ext.end is not None and ext.end <= ext.start:
        raise ApiError(
            400,
            f"videosalmonn.end ({ext.end:g}) must be after videosalmonn.start ({ext.start:g})",
            "invalid_value",
            "videosalmonn.end",
        )
    system_text = "\n".join(t for t in system if t)
    head = (Turn("system", system_text),) if system_text else ()
    conv = Conversation(head + tuple(turns), tuple(media), ext.start, ext.end, _video_audio(req, media), tuple(notes))
    if conv.chars > max_prompt_chars:
        raise ApiError(
            400,
            f"the messages hold {conv.chars} characters of text; this server takes at most {max_prompt_chars}",
            "prompt_too_long",
            "messages",
        )
    return conv


def _texts(msg: Message, where: str) -> str:
    """The text of a message that may hold only text (system, developer, assistant)."""
    if isinstance(msg.content, str):
        return msg.content
    for j, part in enumerate(msg.content):
        if not isinstance(part, TextPart):
            raise ApiError(
                400,
                f"{where}.content.{j}: a{'n' if msg.role == 'assistant' else ''} {msg.role} message can only hold text",
                "invalid_conversation",
                f"{where}.content.{j}",
            )
    return "\n".join(part.text for part in msg.content)


def _index(ref: MediaRef) -> str:
    return ref.label.rsplit(".", 2)[1]  # "messages.0.content.3.image_url" -> "3"


def _video_audio(req: ChatCompletionRequest, media: list[MediaRef]) -> bool:
    """Whether a video's own sound track is used: videosalmonn.video_audio, else vLLM's use_audio_in_video, else yes."""
    ours = (req.videosalmonn or Extension()).video_audio
    vllm = req.mm_processor_kwargs.use_audio_in_video if req.mm_processor_kwargs else None
    if ours is not None and vllm is not None and ours != vllm:
        raise ApiError(
            400,
            f"videosalmonn.video_audio={str(ours).lower()} and mm_processor_kwargs.use_audio_in_video="
            f"{str(vllm).lower()} disagree; give one",
            "invalid_value",
            "mm_processor_kwargs.use_audio_in_video",
        )
    audio = [m for m in media if m.kind == "audio"]
    if vllm and audio:
        raise ApiError(
            400,
            f"mm_processor_kwargs.use_audio_in_video=true asks for the video's own sound track, but {audio[0].label} "
            "is an audio too: the model has one audio slot; drop one of them",
            "too_many_media",
            audio[0].label,
        )
    return next((v for v in (ours, vllm) if v is not None), True)


def _media_ref(part, where: str) -> MediaRef:
    if isinstance(part, VideoPart):
        return MediaRef("video", part.video_url.url, f"{where}.video_url")
    if isinstance(part, ImagePart):
        return MediaRef("image", part.image_url.url, f"{where}.image_url")
    if isinstance(part, AudioURLPart):
        return MediaRef("audio", part.audio_url.url, f"{where}.audio_url")
    return MediaRef("audio", part.input_audio.data, f"{where}.input_audio", part.input_audio.format.lower())


def _check_media(media: list[MediaRef]) -> None:
    if not media:
        raise ApiError(
            400,
            "no media: this model answers about a video, an image or an audio; add a video_url, "
            "image_url or input_audio part to a user message",
            "no_media",
            "messages",
        )
    visual = [m for m in media if m.kind in ("video", "image")]
    audio = [m for m in media if m.kind == "audio"]
    if len(visual) > 1:
        raise ApiError(
            400,
            f"{visual[1].label}: one video or image per conversation (the model has one media "
            f"slot; the first is {visual[0].label}; several images in one message are one video's frames)",
            "too_many_media",
            visual[1].label,
        )
    if len(audio) > 1:
        raise ApiError(
            400,
            f"{audio[1].label}: one audio per conversation (the first is {audio[0].label})",
            "too_many_media",
            audio[1].label,
        )


# ------------------------------------------------------------------------------------ decoding settings


def generation_config(
    req: ChatCompletionRequest, base: GenerationConfig, max_tokens: int, max_beam_tokens: int | None = None
) -> GenerationConfig:
    """OpenAI's decoding fields + the extension over the model's own GenerationConfig (see module docstring).

    `max_beam_tokens` caps num_beams x max_new_tokens (the cost of one request on the one generation worker)."""
    ext = req.videosalmonn or Extension()
    if req.max_tokens and req.max_completion_tokens and req.max_tokens != req.max_completion_tokens:
        raise ApiError(400, "max_tokens and max_completion_tokens differ; give one", "invalid_value", "max_tokens")
    new_tokens = req.max_completion_tokens or req.max_tokens or min(base.max_new_tokens, max_tokens)
    if new_tokens > max_tokens:
        raise ApiError(
            400,
            f"max_tokens={new_tokens} is more than this server allows ({max_tokens})",
            "max_tokens_too_large",
            "max_tokens",
        )
    sample = req.temperature > 0 if req.temperature is not None else req.top_p is not None
    beams = ext.num_beams or (1 if sample or req.stream else base.num_beams)
    if sample and beams > 1:
        raise ApiError(
            400,
            "sampling (temperature > 0 or top_p) and videosalmonn.num_beams > 1 cannot be combined",
            "invalid_value",
            "videosalmonn.num_beams",
        )
    if req.stream and beams > 1:
        raise ApiError(
            400,
            "stream: true needs videosalmonn.num_beams = 1: beam search only knows its answer at "
            "the end (send stream: false to use beams)",
            "beam_search_cannot_stream",
            "videosalmonn.num_beams",
        )
    if max_beam_tokens is not None and beams * new_tokens > max_beam_tokens:
        raise ApiError(
            400,
            f"videosalmonn.num_beams={beams} x max_tokens={new_tokens} = {beams * new_tokens} is more than this server "
            f"allows per request ({max_beam_tokens}): fewer beams or fewer tokens",
            "request_too_costly",
            "videosalmonn.num_beams",
        )
    return replace(
        base,
        max_new_tokens=new_tokens,
        num_beams=beams,
        do_sample=sample,
        temperature=req.temperature if sample and req.temperature else (1.0 if sample else base.temperature),
        top_p=req.top_p if req.top_p is not None else (1.0 if sample else base.top_p),
        top_k=ext.top_k if ext.top_k is not None else base.top_k,
        repetition_penalty=ext.repetition_penalty if ext.repetition_penalty is not None else base.repetition_penalty,
        length_penalty=ext.length_penalty if ext.length_penalty is not None else base.length_penalty,
        seed=req.seed if req.seed is not None else base.seed,
    )
