"""The lmms-eval model plugin: video-SALMONN as `lmms-eval --model videosalmonn`.

    lmms-eval --model videosalmonn --model_args model=video-salmonn-13b,device=cuda --tasks <tasks> --batch_size 4

lmms-eval finds the class through the `lmms_eval.models` entry point (`videosalmonn.integrations.lmms_eval_models`).
model_args: `model` (or `pretrained`): what `--model` takes (a preset, a model YAML, a `save_pretrained` directory,
a hub id); `device` (default: cuda if available); `batch_size`; `overrides`: dotted `key=value` config overrides
separated by `;` (lmms-eval splits model_args at commas); `video_audio=false` to ignore videos' own sound tracks.
model_args win over lmms-eval's own `--batch_size`/`--device` (which it always passes).

Each request's `doc_to_visual(doc)` and gen_kwargs are mapped by `lmms_requests` (media, decoding, batching):
    generate_until              answers, `batch_size` requests per `Pipeline.answer_batch` call, in request order
    loglikelihood               the continuation's summed log-probability as the answer, and whether it is greedy
    generate_until_multi_round  rounds as lmms-eval's own models run them (`doc_to_text(doc, previous_output=...,
                                round_idx=..., previous_round_info=...)` until its terminal signal), one doc at a time
One process: lmms-eval's data-parallel launch (accelerate, several ranks) is not supported.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Sequence

from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from videosalmonn.errors import ConfigError
from videosalmonn.integrations.lmms_requests import Job, generate, generation_for, score
from videosalmonn.pipeline import Pipeline

log = logging.getLogger(__name__)


class VideoSalmonnLmms(lmms):
    """video-SALMONN behind lmms-eval's `lmms` interface (a "simple" model: requests carry `doc_to_visual`)."""

    is_simple = True

    def __init__(
        self,
        model: str = "tiny",
        device: str | None = None,
        batch_size: int | str = 1,
        overrides: str = "",
        video_audio: bool | str = True,
        pretrained: str | None = None,
        max_batch_size: int | None = None,
        **unused,
    ) -> None:
        super().__init__()
        if unused:
            log.warning("videosalmonn: model_args not used: %s", ", ".join(sorted(unused)))
        self.pipeline = Pipeline.from_pretrained(str(pretrained or model), split_overrides(overrides), device)
        self.batch_size_per_gpu = parse_batch_size(batch_size)
        self.video_audio = video_audio if isinstance(video_audio, bool) else str(video_audio).lower() == "true"
        if self.pipeline.notice:
            log.warning("videosalmonn: %s", self.pipeline.notice)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> VideoSalmonnLmms:
        """`--model_args a=1,b=2` + lmms-eval's own settings (`batch_size`, `device`, ...; None = unset), the
        model_args winning where both name a key (lmms-eval passes its default `--batch_size 1` always)."""
        args = lmms_utils.simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in args}
        return cls(**args, **extra)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self):
        return self.pipeline.device

    # ------------------------------------------------------------------------------------------ requests

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answers to `(context, gen_kwargs, doc_to_visual, doc_id, task, split)` requests, in request order."""
        jobs = [self._generation_job(r.args) for r in requests]
        with self._progress(len(requests)) as bar:
            texts = generate(self.pipeline, jobs, self.batch_size, self.video_audio, bar.update)
        for request, text in zip(requests, texts):
            self.cache_hook.add_partial("generate_until", (request.args[0], request.args[1]), text)
        return texts

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(log P(continuation | context, media), is_greedy) for `(context, continuation or doc_to_target,
        doc_to_visual, doc_id, task, split)` requests; a request without media (lmms-eval's unconditional
        `(context, continuation)` of acc_mutual_info) cannot be scored: -inf, with a warning."""
        jobs = [self._scoring_job(r.args) for r in requests]
        with self._progress(len(requests)) as bar:
            scores = score(self.pipeline, jobs, self.batch_size, self.video_audio, bar.update)
        for job, result in zip(jobs, scores):
            self.cache_hook.add_partial("loglikelihood", (job.prompt, job.answer), result)
        return scores

    def generate_until_multi_round(self, requests: list[Instance]) -> list[tuple[str, ...]]:
        """Each `(context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split)` request's answers, one
        per round: round 0 answers `context`; each later round asks `doc_to_text` for its media (None: the
        first round's), question and terminal signal."""
        results = []
        with self._progress(len(requests)) as bar:
            for request in requests:
                results.append(self._rounds(request.args))
                self.cache_hook.add_partial("generate_until_multi_round", request.args[:2], list(results[-1]))
                bar.update(1)
        return results

    # ------------------------------------------------------------------------------------------ mapping

    def _generation_job(self, args: Sequence) -> Job:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = args[:6]
        generation, until = generation_for(self.pipeline.cfg.generation, gen_kwargs)
        visuals = functools.partial(self._visuals, doc_to_visual, task, split, doc_id)
        return Job(context, visuals, generation, until, label=f"{task} ({split}) doc {doc_id}")

    def _scoring_job(self, args: Sequence) -> Job:
        context, continuation = args[:2]
        if len(args) < 6:
            return Job(context, tuple, self.pipeline.cfg.generation, answer=str(continuation), label="unconditional")
        doc_to_visual, doc_id, task, split = args[2:6]
        if callable(continuation):  # loglikelihood tasks give doc_to_target
            continuation = continuation(self.task_dict[task][split][doc_id])
        visuals = functools.partial(self._visuals, doc_to_visual, task, split, doc_id)
        label = f"{task} ({split}) doc {doc_id}"
        return Job(context, visuals, self.pipeline.cfg.generation, answer=str(continuation), label=label)

    def _rounds(self, args: Sequence) -> tuple[str, ...]:
        context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = args[:7]
        generation, until = generation_for(self.pipeline.cfg.generation, gen_kwargs)
        doc = self.task_dict[task][split][doc_id]
        visuals = _as_list(doc_to_visual(doc) if doc_to_visual is not None else None)
        outputs: list[str] = []
        info = None
        for round_idx in itertools.count():
            if round_idx:
                new_visuals, context, terminal, previous, info = doc_to_text(
                    doc, previous_output=outputs, round_idx=round_idx, previous_round_info=info
                )
                if terminal:
                    break
                outputs = list(previous)
                visuals = visuals if new_visuals is None else _as_list(new_visuals)
            job = Job(context, functools.partial(tuple, visuals), generation, until, label=f"{task} doc {doc_id}")
            outputs.append(generate(self.pipeline, [job], 1, self.video_audio)[0])
        return tuple(outputs)

    def _visuals(self, doc_to_visual, task: str, split: str, doc_id) -> list:
        """What the task's `doc_to_visual` gives for the document (none: [])."""
        if doc_to_visual is None:
            return []
        return _as_list(doc_to_visual(self.task_dict[task][split][doc_id]))

    def _progress(self, total: int) -> tqdm:
        return tqdm(total=total, disable=self.rank != 0, desc="video-SALMONN")


def _as_list(visuals) -> list:
    if visuals is None:
        return []
    return list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]


def split_overrides(overrides: str | None) -> list[str]:
    """model_args' `overrides=a.b=1;c=2` -> ["a.b=1", "c=2"] (`;`: lmms-eval splits model_args at commas)."""
    return [o.strip() for o in str(overrides or "").split(";") if o.strip()]


def parse_batch_size(batch_size: int | str) -> int:
    """lmms-eval's batch size (an int, or the string its CLI passes) -> a positive int; `auto` is not supported."""
    try:
        size = int(batch_size)
    except (TypeError, ValueError):
        raise ConfigError(f"batch_size {batch_size!r}: give a number (`auto` is not supported)") from None
    if size < 1:
        raise ConfigError(f"batch_size {size}: must be at least 1")
    return size
