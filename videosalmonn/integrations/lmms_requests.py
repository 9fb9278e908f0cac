"""lmms-eval requests -> `Request`s, answered in batches by `Pipeline.answer_batch`, or scored (loglikelihood).

No lmms-eval here: `lmms_eval.py` turns its `Instance`s into `Job`s, this module does the rest.

What `doc_to_visual(doc)` may return, and what each item becomes (`media_fields`):

    a video path                 Request.video, its own sound track kept (`video_audio`; the model hears it)
    an image path, a PIL image   Request.image (a PIL image is written as a PNG into the batch's temporary folder)
    several images               one video at 2 fps, frame i shown from i/2 s (one frame per 0.5-s slot), as the
                                 server treats frames sent as images
    an audio path                Request.audio (with a video: it replaces the video's own sound track)
    {"array", "sampling_rate"}   Request.audio: the samples written as a 32-bit float WAV (lmms-eval's audio docs)
    {"path"/"bytes"}             an undecoded Hugging Face Audio/Image value: the file, or its bytes written out

A suffix the media table does not know is taken for a video (the decoder then says what it is). Several videos, or
several audio clips, in one request are refused: the model takes one visual stream and one audio stream.

gen_kwargs (`generation_for`) override the model config's decoding key by key (`max_new_tokens`, `num_beams`,
`do_sample`, `temperature`, `top_p`, `top_k`, `repetition_penalty`, `length_penalty`); keys a task does not set keep
the config's (the released model's: 5 beams, repetition penalty 1.5). `temperature: 0` is greedy; `until` cuts the
answer at the first stop string. Other keys are ignored.

A request the model cannot take (no media, a missing file, media over the context) is answered with "" (scored
-inf) and a warning naming it: one bad document does not end a long evaluation.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from videosalmonn.config import GenerationConfig
from videosalmonn.errors import InputError, VideoSalmonnError
from videosalmonn.losses import answer_positions
from videosalmonn.media.files import MediaKind, kind_of
from videosalmonn.media.image import load_image
from videosalmonn.media.writing import write_frames_video
from videosalmonn.media.writing import write_wav as write_media_wav
from videosalmonn.model import DTYPES
from videosalmonn.pipeline import Answer, Pipeline
from videosalmonn.prompting.conversation import IGNORE
from videosalmonn.types import MediaClip, Request

log = logging.getLogger(__name__)

PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})  # other modes are converted to RGB
FAILED_SCORE = (-math.inf, False)  # the loglikelihood of a request the model cannot take
INT_KEYS = ("max_new_tokens", "num_beams")
SAMPLING_KEYS = (("top_k", int), ("top_p", float))  # used only when sampling; 0 or None = off
FLOAT_KEYS = ("repetition_penalty", "length_penalty")


@dataclass(frozen=True)
class Job:
    """One lmms-eval request, mapped: the question, its media (fetched only when its batch runs), decoding.

    `answer`: the continuation to score (loglikelihood only). `label` names the request in warnings."""

    prompt: str
    visuals: Callable[[], Sequence]
    generation: GenerationConfig
    until: tuple[str, ...] = ()
    answer: str | None = None
    label: str = "request"


# --------------------------------------------------------------------------------------------- gen_kwargs


def generation_for(base: GenerationConfig, gen_kwargs: Mapping | None) -> tuple[GenerationConfig, tuple[str, ...]]:
    """lmms-eval gen_kwargs -> (decoding settings, stop strings): the keys given override `base` (module doc).

    Sampling is on when `do_sample` says so, or, without it, when `temperature` > 0; sampling without a
    `num_beams` uses one beam. ConfigError for settings the model refuses (e.g. sampling with 3 beams)."""
    kw = dict(gen_kwargs or {})
    until = stop_strings(kw.pop("until", None))
    changes: dict = {key: int(kw[key]) for key in INT_KEYS if kw.get(key) is not None}
    changes |= {key: float(kw[key]) for key in FLOAT_KEYS if kw.get(key) is not None}
    temperature = None if kw.get("temperature") is None else float(kw["temperature"])
    sample = _flag(kw["do_sample"]) if kw.get("do_sample") is not None else None
    if sample is None and temperature is not None:
        sample = temperature > 0
    if sample is not None:
        changes["do_sample"] = sample
    if changes.get("do_sample", base.do_sample):
        if temperature:
            changes["temperature"] = temperature
        changes |= {key: cast(kw[key]) for key, cast in SAMPLING_KEYS if kw.get(key)}
        changes.setdefault("num_beams", 1)
    ignored = sorted(set(kw) - set(INT_KEYS) - set(FLOAT_KEYS) - {"temperature", "do_sample", "top_k", "top_p"})
    if ignored:
        log.debug("gen_kwargs ignored: %s", ", ".join(ignored))
    return replace(base, **changes), until


def stop_strings(until) -> tuple[str, ...]:
    """gen_kwargs' `until`: None, a string or a list of strings -> the non-empty stop strings."""
    if until is None:
        return ()
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
        raise InputError(f"gen_kwargs 'until' must be a string or a list of strings, got {until!r}")
    return tuple(s for s in until if s)


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string (stripped); unchanged when none occurs."""
    found = [text.find(s) for s in until if s in text]
    return text[: min(found)].strip() if found else text


def _flag(value) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)


# --------------------------------------------------------------------------------------------- media


def media_fields(visuals: Sequence, folder: Path) -> dict[str, str]:
    """What `doc_to_visual(doc)` returned -> `Request` keyword arguments (video/image/audio paths); in-memory
    media are written into `folder`. InputError for what the model cannot take (module doc)."""
    files: dict[MediaKind, list[str]] = {"video": [], "image": [], "audio": []}
    for i, visual in enumerate(visuals):
        kind, path = media_file(visual, folder, i)
        files[kind].append(path)
    videos, images, audios = files["video"], files["image"], files["audio"]
    if len(videos) > 1 or (videos and images):
        raise InputError(
            f"{len(videos)} video(s) and {len(images)} image(s) in one request: the model takes one video, one "
            "image or several images (as frames)"
        )
    if len(audios) > 1:
        raise InputError(f"{len(audios)} audio clips in one request: the model takes one audio stream")
    if len(images) > 1:
        videos, images = [frames_video(images, folder / "frames.mkv")], []
    return {kind: paths[0] for kind, paths in (("video", videos), ("image", images), ("audio", audios)) if paths}


def media_file(visual, folder: Path, index: int) -> tuple[MediaKind, str]:
    """One visual -> (its kind, a file path), writing it into `folder` when it is in memory."""
    if isinstance(visual, (str, os.PathLike)):
        return kind_of(visual) or "video", os.fspath(visual)
    if isinstance(visual, Image.Image):
        return "image", save_image(visual, folder / f"{index}.png")
    if isinstance(visual, Mapping):
        if visual.get("array") is not None:
            return "audio", write_wav(folder / f"{index}.wav", visual["array"], visual.get("sampling_rate"))
        name = visual.get("path") or ""
        if visual.get("bytes"):
            path = folder / f"{index}{Path(name).suffix}"
            path.write_bytes(visual["bytes"])
            return kind_of(path) or "audio", str(path)
        if name:
            return kind_of(name) or "audio", str(name)
    raise InputError(
        f"visual {index}: a {type(visual).__name__}; give a media path, a PIL image or an audio dict "
        "({'array': ..., 'sampling_rate': ...})"
    )


def save_image(image: Image.Image, path: Path) -> str:
    """A PIL image -> a lossless PNG at `path` (modes PNG lacks, e.g. CMYK, converted to RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if image.mode in PNG_MODES else image.convert("RGB")).save(path, format="PNG")
    return str(path)


def write_wav(path: Path, array, sampling_rate) -> str:
    """Samples ((n,), or (channels, n) / (n, channels), downmixed; float in [-1, 1] or integer PCM) at
    `sampling_rate` Hz -> a mono 32-bit float WAV at that rate (the media loader resamples it)."""
    x = np.asarray(array)
    if np.issubdtype(x.dtype, np.integer):
        x = x / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=int(np.argmin(x.shape)))  # the channels are the short axis
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"audio array of shape {np.shape(array)}: give (n,) samples (or (channels, n))")
    if not sampling_rate or int(sampling_rate) <= 0:
        raise InputError(f"audio array without a valid sampling_rate ({sampling_rate!r})")
    write_media_wav(path, x, int(sampling_rate))
    return str(path)


def frames_video(images: Sequence[str], path: Path) -> str:
    """Image files -> one lossless video at 2 fps (`media.writing.write_frames_video`)."""
    write_frames_video((load_image(p) for p in images), path)
    return str(path)


# --------------------------------------------------------------------------------------------- batches


def generate(
    pipeline: Pipeline,
    jobs: Sequence[Job],
    batch_size: int,
    video_audio: bool = True,
    on_batch: Callable[[int], object] | None = None,
) -> list[str]:
    """Each job's answer, cut at its stop strings, in job order: jobs with the same decoding go through
    `answer_batch` `batch_size` at a time; `on_batch(n)` after each batch of n."""
    texts = [""] * len(jobs)
    for indices in batches(jobs, batch_size):
        answers = answer_jobs(pipeline, [jobs[i] for i in indices], video_audio)
        for i, answer in zip(indices, answers):
            texts[i] = "" if answer is None else cut_at_stop(answer.text, jobs[i].until)
        if on_batch is not None:
            on_batch(len(indices))
    return texts


def batches(jobs: Sequence[Job], size: int) -> Iterator[list[int]]:
    """Job indices in batches of at most `size`, each of one decoding setting, in order within a setting."""
    groups: dict[GenerationConfig, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.generation, []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), size):
            yield indices[start : start + size]


def answer_jobs(pipeline: Pipeline, jobs: Sequence[Job], video_audio: bool = True) -> list[Answer | None]:
    """One batch (one decoding setting) -> its Answers through one `answer_batch` call; None for a job the model
    cannot take (warned). A batch refused as a whole (one over the context) is answered one by one."""
    with tempfile.TemporaryDirectory(prefix="videosalmonn-lmms-") as tmp:
        loaded = load_jobs(pipeline, jobs, Path(tmp), video_audio)
        good = [k for k, item in enumerate(loaded) if item is not None]
        answers: list[Answer | None] = [None] * len(jobs)
        results = _answer_loaded(pipeline, [loaded[k] for k in good], jobs[0].generation, [jobs[k] for k in good])
        for k, answer in zip(good, results):
            answers[k] = answer
        return answers


def _answer_loaded(
    pipeline: Pipeline, loaded: list, generation: GenerationConfig, jobs: list[Job]
) -> list[Answer | None]:
    if not loaded:
        return []
    requests, clips = [r for r, _ in loaded], [c for _, c in loaded]
    try:
        return pipeline.answer_batch(requests, generation, clips=clips)
    except VideoSalmonnError as e:
        if len(loaded) == 1:
            log.warning("%s: %s; answered with an empty string", jobs[0].label, e)
            return [None]
    return [a for k in range(len(loaded)) for a in _answer_loaded(pipeline, loaded[k : k + 1], generation, jobs[k:])]


def load_jobs(
    pipeline: Pipeline, jobs: Sequence[Job], folder: Path, video_audio: bool = True
) -> list[tuple[Request, MediaClip] | None]:
    """Each job's Request and decoded media (in-memory media written under `folder`); None, with a warning, for
    one the model cannot take."""
    loaded: list[tuple[Request, MediaClip] | None] = []
    for k, job in enumerate(jobs):
        try:
            media = media_fields(job.visuals(), folder / str(k))
            request = Request(job.prompt, answer=job.answer, video_audio=video_audio, **media)
            loaded.append((request, pipeline.load(request)))
        except VideoSalmonnError as e:
            log.warning("%s: %s; %s", job.label, e, "scored -inf" if job.answer is not None else "answered ''")
            loaded.append(None)
    return loaded


# --------------------------------------------------------------------------------------------- scores


def score(
    pipeline: Pipeline,
    jobs: Sequence[Job],
    batch_size: int,
    video_audio: bool = True,
    on_batch: Callable[[int], object] | None = None,
) -> list[tuple[float, bool]]:
    """loglikelihood: for each job, (log-probability of its `answer` after its prompt and media, whether greedy
    decoding picks every one of its tokens), `batch_size` jobs per forward pass, in job order."""
    scores: list[tuple[float, bool]] = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        with tempfile.TemporaryDirectory(prefix="videosalmonn-lmms-") as tmp:
            loaded = load_jobs(pipeline, chunk, Path(tmp), video_audio)
            good = [k for k, item in enumerate(loaded) if item is not None]
            results = [FAILED_SCORE] * len(chunk)
            for k, result in zip(good, _score_loaded(pipeline, [loaded[k] for k in good], [chunk[k] for k in good])):
                results[k] = result
        scores += results
        if on_batch is not None:
            on_batch(len(chunk))
    return scores


def _score_loaded(pipeline: Pipeline, loaded: list, jobs: list[Job]) -> list[tuple[float, bool]]:
    if not loaded:
        return []
    try:
        return continuation_scores(pipeline, [r for r, _ in loaded], [c for _, c in loaded])
    except VideoSalmonnError as e:
        if len(loaded) == 1:
            log.warning("%s: %s; scored -inf", jobs[0].label, e)
            return [FAILED_SCORE]
    return [s for k in range(len(loaded)) for s in _score_loaded(pipeline, loaded[k : k + 1], jobs[k:])]


@torch.no_grad()
def continuation_scores(
    pipeline: Pipeline, requests: Sequence[Request], clips: Sequence[MediaClip]
) -> list[tuple[float, bool]]:
    """Requests with an `answer` -> (summed log-probability of the answer's tokens, all of them the argmax), one
    teacher-forced forward pass; the </s> that closes an answer in the prompt layout is not counted."""
    batch, _ = pipeline.prepare(list(requests), list(clips), side="right")
    length, limit = batch.prompt.input_ids.shape[1], pipeline.cfg.llm.max_positions
    if length > limit:
        raise InputError(f"the input is {length} tokens; the LLM takes at most {limit}")
    targets = batch.prompt.labels[:, 1:]
    keep = targets != IGNORE
    model, on_device = pipeline.model, batch.to(pipeline.device, DTYPES[pipeline.cfg.dtype])
    embeds = model.embed(on_device.prompt, model.encode(on_device))
    # the LM head only where a label is predicted: (N, V), row-major, in the order of targets[keep]
    logits = model.llm(embeds, on_device.prompt.attention_mask, answer_positions(on_device.prompt.labels))
    wanted = targets[keep].to(logits.device)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    chosen = logprobs.gather(1, wanted[:, None])[:, 0]
    greedy = logprobs.argmax(dim=-1) == wanted
    counts = keep.sum(dim=1).tolist()
    return [
        (float(lp[:-1].sum()), bool(g[:-1].all()))  # [:-1]: without the closing </s>
        for lp, g in zip(chosen.split(counts), greedy.split(counts))
    ]
