"""What every SAVE task shares: the `Sample` it reads, the `Task` record, and small manifest helpers.

A task file defines three pure functions and one `TASK = Task(...)`:
    read(manifest_path, media_root) -> list[Sample]          manifest -> samples (media paths not checked)
    score(sample, prediction) -> float | None                one sample's score (None: corpus-only metric)
    aggregate(samples, predictions, scores=None) -> [MetricResult, ...]   the paper's number first
`scores` lets a resumable runner pass per-sample scores it already has (e.g. paid-for judge verdicts), so
they are not recomputed; corpus metrics (WER, CIDEr-D) ignore it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videosalmonn.errors import InputError
from videosalmonn.evaluation.bootstrap import bootstrap_ci
from videosalmonn.evaluation.metrics import MetricResult, accuracy
from videosalmonn.media.files import kind_of

SAVEBENCH_SOURCE = "SAVEBench manifests: https://huggingface.co/datasets/tsinghua-ee/SAVEBench"
SUBSET_SEED = 0          # the paper's TextVQA/GQA subsets are not published; ours are reproducible


@dataclass(frozen=True)
class Sample:
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


Reader = Callable[..., list[Sample]]
Scorer = Callable[[Sample, str], "float | None"]
Aggregator = Callable[..., list[MetricResult]]


@dataclass(frozen=True)
class Task:
    """A SAVE task: metadata (what the paper reports, where the data comes from) plus its three functions.

    `paper_value` is the video-SALMONN 13B result (Tables 2, 3, 12 and App. G) in `MetricResult` units
    (0.026 for 2.6% WER, 0.896 for CIDEr 89.6); None where the paper gives none. `default_manifest` is a
    file name inside the SAVEBench folder (None: the dataset's own layout, see `source`).
    """

    name: str
    title: str
    paper_metric: str
    paper_value: float | None
    source: str
    default_manifest: str | None
    read: Reader
    score: Scorer
    aggregate: Aggregator
    lower_is_better: bool = False


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


def read_question_answer(manifest_path: str | Path, media_root: str | Path | None, id_prefix: str,
                         indices: Sequence[int] | None = None, group=None) -> list[Sample]:
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
        samples.append(Sample(id=f"{id_prefix}-{i:0{width}d}", prompt=question, question=question,
                              references=text_list(get(entry, "answer", where=where), where),
                              group=group(media) if group else "", **media))
    return samples


def read_multiple_choice(manifest_path: str | Path, media_root: str | Path | None, id_prefix: str,
                         span_key: str | None = None) -> list[Sample]:
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
        samples.append(Sample(id=f"{id_prefix}-{i:04d}", prompt=multiple_choice_prompt(question, candidates),
                              references=(answer,), candidates=candidates, span=span, question=question,
                              **media_fields(get(entry, "image", "image_name", where=where), root, where)))
    return samples


def _span(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
        raise InputError(f"{where}: expected a [start, end] time span in seconds, got {value!r}")
    start, end = float(value[0]), float(value[1])
    if end < start:
        raise InputError(f"{where}: the time span ends before it starts ({start} > {end})")
    return start, end


# ---------------------------------------------------------------------------------------------------------
# Aggregation helpers

def check_aligned(samples: Sequence[Sample], predictions: Sequence[str],
                  scores: Sequence[float | None] | None = None) -> None:
    if len(samples) != len(predictions):
        raise InputError(f"{len(samples)} samples but {len(predictions)} predictions")
    if scores is not None and len(scores) != len(samples):
        raise InputError(f"{len(samples)} samples but {len(scores)} scores")


def accuracy_results(name: str, samples: Sequence[Sample], predictions: Sequence[str], score: Scorer,
                     scores: Sequence[float | None] | None = None, note: str = "") -> list[MetricResult]:
    """Overall accuracy (mean score, with a 95% bootstrap CI in `details`), then one per `group` if several."""
    check_aligned(samples, predictions, scores)
    values = [float(s) if s is not None else float(score(x, p))
              for x, p, s in zip(samples, predictions, scores or [None] * len(samples))]
    results = [_with_ci(accuracy(name, values, note))]
    groups = sorted({x.group for x in samples})
    if len(groups) > 1:
        for g in groups:
            part = [v for x, v in zip(samples, values) if x.group == g]
            results.append(_with_ci(accuracy(f"{name} [{g}]", part, note)))
    return results


def _with_ci(result: MetricResult) -> MetricResult:
    low, high = bootstrap_ci(result.per_sample or ())
    return MetricResult(result.name, result.value, note=result.note, per_sample=result.per_sample,
                        details={**result.details, "ci95_low": low, "ci95_high": high})
