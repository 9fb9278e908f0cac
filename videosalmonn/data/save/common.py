"""What every SAVE reader shares: the `BenchmarkSample` it reads, and small manifest helpers.

A reader module (one per task, named like its evaluation task module) defines
    NAME                                     the task's registry name, e.g. "video-qa"
    MANIFEST                                 the SAVEBench file name (None: the dataset's own layout)
    read(manifest_path, media_root) -> list[BenchmarkSample]   manifest -> samples (media paths not checked)
Scoring lives in evaluation/tasks/; training reads the same files through `data.save.READERS`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videosalmonn.errors import InputError
from videosalmonn.media.files import kind_of
from videosalmonn.types import Request, Turn

SUBSET_SEED = 0  # the paper's TextVQA/GQA subsets are not published; ours are reproducible


@dataclass(frozen=True)
class BenchmarkSample:
    """One benchmark item, ready for the Pipeline: media paths, the exact prompt, and what to score against.

    `prompt` is the text the model gets (for multiple choice it already lists the options); `question` is
    the bare question (judge prompts, reports). `history` holds earlier (question, answer) turns (AVSD),
    to be given as a conversation before `prompt`. `span` is a (start, end) time in seconds as given by
    the manifest (Ego4D-QA only; see its file). `group` names a sub-set reported separately (e.g. AVM's
    "vggss" / "spokencoco").
    """

    id: str
    prompt: str
    references: tuple[str, ...]
    video: Path | None = None
    audio: Path | None = None
    image: Path | None = None
    candidates: tuple[str, ...] = ()
    span: tuple[float, float] | None = None
    question: str = ""
    history: tuple[tuple[str, str], ...] = ()
    group: str = ""

    @property
    def media(self) -> list[Path]:
        return [p for p in (self.video, self.image, self.audio) if p is not None]

    def turns(self) -> tuple[Turn, ...]:
        """The conversation the model gets: the earlier questions with their answers (AVSD), then the prompt."""
        return tuple(t for q, a in self.history for t in (Turn("user", q), Turn("assistant", a))) + (
            Turn("user", self.prompt),
        )

    def to_request(
        self,
        span: tuple[float, float] | None = None,
        video_audio: bool = False,
        modality_mask: tuple[float, float] | None = None,
    ) -> Request:
        """The Pipeline request: `turns()`, the media, and the caller's choices: the time span to use (None: the
        whole file), whether a video's own sound track is the audio, the [visual, audio] stream multipliers."""
        return Request(
            prompt=self.turns(),
            video=_str(self.video),
            audio=_str(self.audio),
            image=_str(self.image),
            start=span[0] if span else None,
            end=span[1] if span else None,
            video_audio=video_audio,
            modality_mask=modality_mask,
        )


# ---------------------------------------------------------------------------------------------------------
# Manifest helpers


def load_json_list(path: str | Path) -> list[dict[str, Any]]:
    """A SAVEBench manifest: a JSON list of objects."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise InputError(f"{path}: expected a JSON list of objects")
    return data


def get(entry: dict[str, Any], *keys: str, where: str) -> Any:
    """The first of `keys` present in `entry` (SAVEBench uses "image" in some files, "image_name" in others)."""
    for key in keys:
        if key in entry:
            return entry[key]
    raise InputError(f"{where}: missing field {' or '.join(repr(k) for k in keys)}")


def media_root_for(manifest_path: str | Path, media_root: str | Path | None) -> Path:
    """Relative media paths resolve against `media_root`, or the manifest's folder when none is given."""
    return Path(media_root) if media_root is not None else Path(manifest_path).parent


def media_fields(paths: str | Sequence[str], root: Path, where: str) -> dict[str, Path]:
    """One path or a list of paths -> {"video"|"image"|"audio": root / path}, by file suffix."""
    items = [paths] if isinstance(paths, str) else list(paths)
    out: dict[str, Path] = {}
    for rel in items:
        kind = media_kind(rel, where)
        if kind in out:
            raise InputError(f"{where}: two {kind} files ({out[kind].name}, {Path(rel).name})")
        out[kind] = root / rel
    if "video" in out and "image" in out:
        raise InputError(f"{where}: both a video and an image")
    return out


def media_kind(path: str, where: str) -> str:
    kind = kind_of(path)
    if kind is None:
        raise InputError(f"{where}: cannot tell the media kind of {path!r} from its suffix")
    return kind


def seeded_subset(n_total: int, size: int | None, seed: int = SUBSET_SEED) -> list[int]:
    """Indices of a fixed random subset (Python's `random.Random(seed).sample`), in manifest order.

    Table 1: TextVQA and GQA are evaluated on 1,000 randomly drawn samples; `size=None` keeps all.
    """
    if size is None or size >= n_total:
        return list(range(n_total))
    return sorted(random.Random(seed).sample(range(n_total), size))


def text_list(value: Any, where: str) -> tuple[str, ...]:
    """A reference answer or a list of them, as a tuple of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise InputError(f"{where}: expected a string or a non-empty list of strings, got {value!r}")
    return tuple(items)


# ---------------------------------------------------------------------------------------------------------
# Prompts


def multiple_choice_prompt(question: str, candidates: Sequence[str]) -> str:
    """The in-context multiple-choice prompt (paper App. C; App. A: "<question> Options/Choose one from:
    (Add choices here during inference)").

    The paper gives only that outline, so the exact layout is ours: the question verbatim, then
    "Choose one from:" and one option per line, verbatim and unlettered, e.g.

        why is the man pointing at something
        Choose one from:
        direct attention
        making a speech
        ...

    One option per line keeps options that contain commas or full stops (Ego4D-QA, Presentation-QA)
    unambiguous, and no letters means the model answers with the option text, which is what the paper's
    exact-match scoring compares with the reference.
    """
    if len(candidates) < 2:
        raise InputError(f"a multiple-choice question needs at least 2 options, got {len(candidates)}")
    return "\n".join([question.strip(), "Choose one from:", *(c.strip() for c in candidates)])


def read_question_answer(
    manifest_path: str | Path,
    media_root: str | Path | None,
    id_prefix: str,
    indices: Sequence[int] | None = None,
    group=None,
) -> list[BenchmarkSample]:
    """The common SAVEBench layout {"image" or "image_name": media, "question", "answer": text or [texts]}
    -> samples prompted with the question verbatim. `indices`: a subset (manifest order kept, ids keep the
    manifest index); `group(media) -> str`: an optional per-sample group for split results."""
    root = media_root_for(manifest_path, media_root)
    entries = load_json_list(manifest_path)
    width = max(4, len(str(len(entries) - 1)))
    samples = []
    for i in range(len(entries)) if indices is None else indices:
        entry, where = entries[i], f"{manifest_path}[{i}]"
        question = get(entry, "question", where=where)
        media = media_fields(get(entry, "image", "image_name", where=where), root, where)
        samples.append(
            BenchmarkSample(
                id=f"{id_prefix}-{i:0{width}d}",
                prompt=question,
                question=question,
                references=text_list(get(entry, "answer", where=where), where),
                group=group(media) if group else "",
                **media,
            )
        )
    return samples


def read_multiple_choice(
    manifest_path: str | Path, media_root: str | Path | None, id_prefix: str, span_key: str | None = None
) -> list[BenchmarkSample]:
    """NExT-QA / Ego4D-QA / Presentation-QA: {"image" or "image_name": media, "question", "answer",
    "answer_candidates": [5 options]} (+ `span_key`: [start, end] seconds) -> samples whose prompt lists
    the options (`multiple_choice_prompt`). The reference must be one of the options."""
    root = media_root_for(manifest_path, media_root)
    samples = []
    for i, entry in enumerate(load_json_list(manifest_path)):
        where = f"{manifest_path}[{i}]"
        question = get(entry, "question", where=where)
        answer = get(entry, "answer", where=where)
        candidates = text_list(get(entry, "answer_candidates", where=where), where)
        if answer not in candidates:
            raise InputError(f"{where}: the answer {answer!r} is not one of the answer_candidates")
        span = _span(get(entry, span_key, where=where), where) if span_key else None
        samples.append(
            BenchmarkSample(
                id=f"{id_prefix}-{i:04d}",
                prompt=multiple_choice_prompt(question, candidates),
                references=(answer,),
                candidates=candidates,
                span=span,
                question=question,
                **media_fields(get(entry, "image", "image_name", where=where), root, where),
            )
        )
    return samples


def _span(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
        raise InputError(f"{where}: expected a [start, end] time span in seconds, got {value!r}")
    start, end = float(value[0]), float(value[1])
    if end < start:
        raise InputError(f"{where}: the time span ends before it starts ({start} > {end})")
    return start, end


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
