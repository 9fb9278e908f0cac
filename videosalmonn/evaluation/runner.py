"""`videosalmonn eval run`: one SAVE task through the inference Pipeline into a resumable, shardable run directory.

    summary = run_eval(EvalSettings(task="asr", media_root="/data/LibriSpeech"), "runs/asr")
    summary.results["metrics"][0]     # {"name": "WER", "value": 0.026, "details": {"ci95_low": ..., ...}}

Each process (rank R of W: torchrun's RANK/WORLD_SIZE, or 0 of 1) does

    select samples -> media missing? (an error unless allow_missing) -> its share: i % W == R, not yet answered
    in any shard -> batches through infer_manifest.answer_requests (the Pipeline of `videosalmonn infer`: media
    decoded first, one bad file fails alone) -> task.score -> one atomic line each in samples.rank<R>.jsonl
    -> once every sample has a record, merge (whichever rank sees that first; rundir.py says why that is safe)

A killed run resumes where it stopped; merge.merge_run(DIR) (`videosalmonn eval merge`) rebuilds the merged files.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import torch
from tqdm import tqdm

from videosalmonn.config import to_dict
from videosalmonn.data.save import BenchmarkSample
from videosalmonn.errors import InputError, MediaError
from videosalmonn.evaluation.diagnostics import zeroed_levels
from videosalmonn.evaluation.merge import BOOTSTRAP, FORMAT, base_record, merge
from videosalmonn.evaluation.rundir import RunDir
from videosalmonn.evaluation.settings import EvalSettings, samples_missing_media, select_samples
from videosalmonn.evaluation.tasks import Task
from videosalmonn.infer_manifest import answer_requests, error_text, with_attempts
from videosalmonn.media.files import kind_of
from videosalmonn.media.video import probe_video
from videosalmonn.pipeline import Answer, Pipeline, Request
from videosalmonn.results import MAX_ATTEMPTS

SPAN_TOLERANCE_S = 1.0


@dataclass
class EvalSummary:
    answered: int = 0
    failed: int = 0  # failed in this run (each has an error record; a rerun retries it)
    skipped: int = 0  # this rank's samples already answered (resumed run)
    given_up: list[str] = field(default_factory=list)  # failed MAX_ATTEMPTS times: not run again
    missing: int = 0  # samples whose media do not exist (not run, not scored)
    other_ranks: int = 0  # samples left to the other processes
    results: dict | None = None  # results.json, when this process merged


def run_eval(
    settings: EvalSettings,
    out: str | Path,
    *,
    batch_size: int = 8,
    device: str | None = None,
    pipe: Pipeline | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = False,
) -> EvalSummary:
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    task = settings.resolve_task()
    samples = select_samples(settings, task)
    missing = samples_missing_media(samples)
    _check_missing(settings, samples, missing)
    run = RunDir(out)
    run.check_identity(settings.identity())
    torch.manual_seed(settings.seed)
    if pipe is None:
        pipe = Pipeline.from_pretrained(settings.model, settings.overrides, _device(device, world))
    with zeroed_levels(pipe.model.connector, settings.zeroed_levels()):  # diagnostics hook, for this run only
        if rank == 0:
            run.record_session(
                run_header(settings, task, pipe, len(samples), missing), session_info(world, batch_size, pipe)
            )

        done, failures = run.done(), run.failures()
        share = [s for i, s in enumerate(samples) if i % world == rank and s.id not in missing]
        pending = [s for s in share if s.id not in done]
        todo = [s for s in pending if failures.get(s.id, 0) < MAX_ATTEMPTS]
        summary = EvalSummary(
            skipped=len(share) - len(pending),
            given_up=[s.id for s in pending if failures.get(s.id, 0) >= MAX_ATTEMPTS],
            missing=len(missing),
            other_ranks=len(samples) - len(missing) - len(share),
        )
        shard = run.shard(rank)
        desc = f"{settings.task} (rank {rank}/{world})"
        with tqdm(total=len(todo), desc=desc, unit="sample", disable=not progress or rank != 0) as bar:
            for i in range(0, len(todo), batch_size):
                for record in answer_chunk(pipe, task, settings, todo[i : i + batch_size]):
                    shard.append({**with_attempts(record, failures), "rank": rank})
                    summary.failed += "error" in record
                    summary.answered += "error" not in record
                bar.update(len(todo[i : i + batch_size]))

    records = run.records()
    if all(s.id in records for s in samples if s.id not in missing):
        summary.results = merge(run, settings, task, samples, missing)
    return summary


def answer_chunk(pipe: Pipeline, task: Task, settings: EvalSettings, samples: list[BenchmarkSample]) -> list[dict]:
    """One batch: requests (a sample whose request cannot be built fails alone), answers, scores."""
    records: dict[str, dict] = {}
    requests, ok = [], []
    for s in samples:
        try:
            requests.append(request_for(s, settings))
            ok.append(s)
        except Exception as e:  # anything (a hostile file's probe included) fails this sample alone
            records[s.id] = {**base_record(s), "error": error_text(e)}
    for s, request, result in zip(ok, requests, answer_requests(pipe, requests, None)):
        if isinstance(result, Exception):
            records[s.id] = {**base_record(s), "error": error_text(result)}
        else:
            records[s.id] = scored_record(task, s, request, result)
    return [records[s.id] for s in samples]


# ---------------------------------------------------------------------------------------------- requests


def request_for(sample: BenchmarkSample, settings: EvalSettings) -> Request:
    """A SAVE sample as a Pipeline request (`BenchmarkSample.to_request`) with this run's choices: its time span
    (`span_for`), whether a video's own sound track is the audio, the diagnostics mask."""
    return sample.to_request(span_for(sample, settings.spans), settings.uses_video_audio(), settings.modality_mask())


def span_for(sample: BenchmarkSample, mode: str) -> tuple[float, float] | None:
    """The [start, end) seconds to use, or None for the whole file.

    Ego4D-QA's "duration" is a span of the *source* video, and SAVEBench does not say whether its
    `<video_uid>__<k>.mp4/.wav` files are already cut to it (their names suggest clips). "cut" always cuts,
    "whole" never does, and "auto" (the default) cuts only when the file reaches the span's end and is longer
    than the span by more than SPAN_TOLERANCE_S, i.e. when it can only be the source video.
    """
    if sample.span is None or mode == "whole":
        return None
    if mode == "cut":
        return sample.span
    start, end = sample.span
    seconds = media_seconds(sample.video if sample.video is not None else sample.audio)
    is_source = seconds >= end - SPAN_TOLERANCE_S and seconds > (end - start) + SPAN_TOLERANCE_S
    return sample.span if is_source else None


def media_seconds(path: Path) -> float:
    """Header duration of a video (as the frame sampler sees it) or of an audio file."""
    if kind_of(path) == "audio":
        return _audio_seconds(path)
    return float(probe_video(path).duration)


def _audio_seconds(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            if container.duration is None:
                raise MediaError(path, "its duration is not in the header (needed to place the time span)")
            return container.duration / av.time_base
    except av.error.FFmpegError as e:
        raise MediaError(path, f"not readable audio ({e})") from None


# ---------------------------------------------------------------------------------------------- records


def scored_record(task: Task, sample: BenchmarkSample, request: Request, answer: Answer) -> dict:
    record = {**base_record(sample), "output": answer.text, "score": None}
    try:
        record["score"] = task.score(sample, answer.text)
    except Exception as e:  # e.g. the judge endpoint is down: the merge scores it again
        record["score_error"] = error_text(e)
    if request.start is not None:
        record["span"] = [request.start, request.end]
    details = answer.to_json()
    details.pop("answer")
    return {**record, **details}


# ---------------------------------------------------------------------------------------------- run.json


def run_header(
    settings: EvalSettings, task: Task, pipe: Pipeline, selected: int, missing: dict[str, list[str]]
) -> dict:
    return {
        "format": FORMAT,
        "task": task.name,
        "title": task.title,
        "paper_metric": task.paper_metric,
        "paper_value": task.paper_value,
        "source": task.source,
        "identity": settings.identity(),
        "settings": settings.to_json(),
        "diagnostics": {**settings.diagnostics(), "label": settings.diagnostics_label()},
        "model": {
            "name": settings.model,
            "overrides": list(settings.overrides),
            "zeroed_levels": list(settings.zeroed_levels()),
            "config": to_dict(pipe.cfg),
        },
        "generation": to_dict(pipe.cfg.generation),
        "seed": settings.seed,
        "bootstrap": BOOTSTRAP,
        "samples": {
            "selected": selected,
            "missing_media": len(missing),
            "missing_examples": dict(list(missing.items())[:10]),
        },
    }


def session_info(world: int, batch_size: int, pipe: Pipeline) -> dict:
    import numpy
    import transformers

    import videosalmonn

    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "world_size": world,
        "batch_size": batch_size,
        "device": str(pipe.device),
        "host": socket.gethostname(),
        "command": sys.argv,
        "versions": {
            "videosalmonn": videosalmonn.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
    }


# ---------------------------------------------------------------------------------------------- checks


def _check_missing(settings: EvalSettings, samples: list[BenchmarkSample], missing: dict[str, list[str]]) -> None:
    if not missing:
        return
    first = next(iter(missing.values()))[0]
    if len(missing) == len(samples):
        raise InputError(
            f"the media of all {len(samples)} samples are missing (first: {first}); check "
            f"--media-root, or run `videosalmonn eval prepare --task {settings.task}`"
        )
    if not settings.allow_missing:
        raise InputError(
            f"{len(missing)} of {len(samples)} samples have missing media (first: {first}); "
            f"see `videosalmonn eval prepare --task {settings.task}`, or pass --allow-missing"
        )


def _device(device: str | None, world: int) -> str | None:
    if device is None and world > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device
