"""Manifests: one sample per line (JSONL, ours) or the official JSON list; validated up front.

Our JSONL line (every key but the conversation/prompt optional):

    {"id": "clip-7", "video": "clips/7.mp4", "audio": "clips/7.wav", "image": null, "start": 12.0, "end": 30.0,
     "conversation": [{"role": "user", "content": "What happens?"}, {"role": "assistant", "content": "..."}],
     "task": "video-qa"}

`"prompt": "..."` is a shorthand for a one-turn conversation (inference), `"answer": "..."` adds the reply;
`"video_audio": false` ignores a video's own sound track (video-only input, as the official format means it).
The official format (spec §1.1) is a JSON list of `{"image_name": path | [media, audio], "conversation":
[{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}` (a `.jpg/.png/...` first item is an image).

Relative paths resolve against `media_root` (default: the manifest's directory). A malformed line is an
`InputError` naming `file:line` and the reason; `missing_media` lists absent files before any work starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import InputError
from videosalmonn.media.files import kind_of
from videosalmonn.types import Request, Turn

OUR_KEYS = {"id", "video", "audio", "image", "start", "end", "conversation", "prompt", "answer", "task", "video_audio"}
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


@dataclass(frozen=True)
class Sample:
    id: str
    conversation: tuple[Turn, ...]  # user first; ends with the assistant's answer when there is one
    video: str | None = None
    audio: str | None = None
    image: str | None = None
    start: float | None = None
    end: float | None = None
    task: str | None = None
    source: str = ""  # "file:line" for messages
    video_audio: bool = True  # use a video's own audio track when no audio file is given

    @property
    def media(self) -> list[str]:
        return [p for p in (self.video, self.audio, self.image) if p]

    @property
    def prompt_turns(self) -> tuple[Turn, ...]:
        """The conversation without a final answer (what generation starts from)."""
        turns = self.conversation
        return turns[:-1] if turns and turns[-1].role == "assistant" else turns

    @property
    def answer(self) -> str | None:
        return self.conversation[-1].text if self.conversation[-1].role == "assistant" else None

    def to_request(self, with_answer: bool = False) -> Request:
        """The Pipeline request: the conversation up to the last question, this sample's media and time span
        (`with_answer`: the final answer too, for scoring or training)."""
        return Request(
            prompt=self.prompt_turns,
            video=self.video,
            audio=self.audio,
            image=self.image,
            answer=self.answer if with_answer else None,
            start=self.start,
            end=self.end,
            video_audio=self.video_audio,
        )


def read_manifest(path: str | Path, media_root: str | Path | None = None) -> list[Sample]:
    """Every sample of a JSONL (ours) or JSON-list (official) manifest; the first bad line is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found" if not path.exists() else f"{path}: not a file")
    root = Path(media_root) if media_root is not None else path.parent
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise InputError(f"{path}: not valid JSON (nested too deeply)") from None
        samples = [_official(e, root, f"{path}[{i}]", i) for i, e in enumerate(entries)]
    else:
        samples = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise InputError(f"{path}:{n}: not valid JSON (nested too deeply)") from None
            samples.append(_ours(entry, root, f"{path}:{n}", n))
    if not samples:
        raise InputError(f"{path}: the manifest holds no samples")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{path}: sample id {dup!r} appears more than once")
    return samples


def missing_media(samples: list[Sample]) -> list[str]:
    """'source: path' for every media file that does not exist (checked before any decoding or training)."""
    return [f"{s.source}: {p}" for s in samples for p in s.media if not Path(p).is_file()]


def _ours(entry, root: Path, where: str, n: int) -> Sample:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a JSON object")
    unknown = sorted(set(entry) - OUR_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(OUR_KEYS))})")
    if "conversation" in entry:
        if "prompt" in entry or "answer" in entry:
            raise InputError(f"{where}: give either a conversation or prompt/answer, not both")
        turns = _turns(entry["conversation"], where, "role", "content")
    elif "prompt" in entry:
        turns = [Turn("user", _text(entry["prompt"], where, "prompt"))]
        if entry.get("answer") is not None:
            turns.append(Turn("assistant", _text(entry["answer"], where, "answer")))
    else:
        raise InputError(f"{where}: no prompt or conversation")
    media = {k: _path(entry.get(k), root, where, k) for k in ("video", "audio", "image")}
    if not any(media.values()):
        raise InputError(f"{where}: no media (video, audio or image)")
    if media["video"] and media["image"]:
        raise InputError(f"{where}: give a video or an image, not both")
    start, end = _time(entry.get("start"), where, "start"), _time(entry.get("end"), where, "end")
    if start is not None and end is not None and end <= start:
        raise InputError(f"{where}: end ({end}) must be after start ({start})")
    task = entry.get("task")
    if task is not None and not isinstance(task, str):
        raise InputError(f"{where}: task must be a string")
    video_audio = entry.get("video_audio", True)
    if not isinstance(video_audio, bool):
        raise InputError(f"{where}: video_audio must be true or false")
    return Sample(
        str(entry.get("id", n)),
        tuple(turns),
        **media,
        start=start,
        end=end,
        task=task,
        source=where,
        video_audio=video_audio,
    )


def _official(entry, root: Path, where: str, i: int) -> Sample:
    if not isinstance(entry, dict) or "image_name" not in entry or "conversation" not in entry:
        raise InputError(f"{where}: expected an object with image_name and conversation (official format)")
    names = entry["image_name"]
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not 1 <= len(names) <= 2 or not all(isinstance(x, str) for x in names):
        raise InputError(f"{where}: image_name must be a path or [media, audio]")
    first = _path(names[0], root, where, "image_name")
    media = {"video": None, "audio": None, "image": None}
    media[kind_of(first) or "video"] = first
    if len(names) == 2:
        media["audio"] = _path(names[1], root, where, "image_name[1]")
    turns = _turns(entry["conversation"], where, "from", "value")
    # official: a video given alone is video-only (its audio is masked, spec §1.8), not video + its sound track
    return Sample(f"{i}", tuple(turns), **media, source=where, video_audio=False)


def _turns(conv, where: str, role_key: str, text_key: str) -> list[Turn]:
    if not isinstance(conv, list) or not conv:
        raise InputError(f"{where}: conversation must be a non-empty list of turns")
    turns = []
    for k, turn in enumerate(conv):
        if not isinstance(turn, dict) or turn.get(role_key) not in ROLES:
            raise InputError(f"{where}: turn {k + 1} needs {role_key!r} = user/assistant (or human/gpt)")
        turns.append(Turn(ROLES[turn[role_key]], _text(turn.get(text_key), where, f"turn {k + 1} {text_key}")))
    for k, turn in enumerate(turns):
        if turn.role != ("user" if k % 2 == 0 else "assistant"):
            raise InputError(f"{where}: turns must alternate user/assistant starting with the user (turn {k + 1})")
    return turns


def _text(value, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {what} must be a non-empty string")
    return value


def _path(value, root: Path, where: str, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: {what} must be a path string")
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else root / p)


def _time(value, where: str, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InputError(f"{where}: {what} must be a non-negative number of seconds")
    return float(value)
