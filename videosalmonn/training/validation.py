"""Held-out validation during training: a fixed set read once, its frozen features computed once, and every
`validation.every` steps (and at the last) a read-out of the model on it, on the main process.

    validation.source ─► read_items, validate_items ─► Examples as written (no mixing) ─► Featurizer, once
    every `every` steps, model in eval mode, no grad:
        mean answer CE over the answer tokens                               (when loss.lm_weight > 0)
        media tokens ─► greedy_ctc over the alignment vocabulary ─► text ─► WER per task of data.align_tasks
                                                                            (when loss.alignment_weight > 0)
    ─► one console line + a row of OUTPUT_DIR/validation.jsonl

    validation step 200 | ce 2.3100 | ctc WER asr 51.2 % avsr 60.1 % | 64 samples, 3.1 s

A validation.jsonl row: `step`, `n` (held-out samples per task), `ce_loss` (token-weighted mean; null when the
LM loss is off or the value is not finite), `ctc_wer` ({task: WER as a fraction}), `seconds`, `transcripts` (the
first 3 aligned samples: id, task, reference, greedy transcript). The file is rewritten atomically after each
validation; on resume the rows after the checkpoint's step are dropped (as metrics.csv's are).

The held-out features are computed with the run's Featurizer at the start (not read from the feature cache: a
held-out set is small, and computing it keeps the training cache's contents exactly what training needs). Its
answers may hold tokens outside the training alignment vocabulary: no alignment targets are built for it, the
vocabulary only decodes. WER is a word edit distance here (lower case, punctuation removed): training may not import
`evaluation` (layers contract), whose `wer` also needs the eval extra (jiwer, whisper-normalizer); so these numbers
are close to `videosalmonn eval`'s, not equal (no Whisper normaliser: "25" and "twenty five" differ).

Under DDP only the main process validates, on the unwrapped model; the others wait. FSDP and DeepSpeed shard the
model across processes, so one process cannot run it alone: validation is refused there at the start.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from videosalmonn.checkpoint import atomic_write
from videosalmonn.errors import ConfigError, InputError
from videosalmonn.llm.tokenizer import TextTokenizer
from videosalmonn.losses import greedy_ctc
from videosalmonn.model import VideoSalmonn
from videosalmonn.prompting.conversation import IGNORE
from videosalmonn.prompting.instruction import InstructionTokenizer
from videosalmonn.prompting.templates import prompt_style
from videosalmonn.training.config import TrainConfig, ValidationConfig
from videosalmonn.training.data import Loaded, TrainCollator, TrainData, read_items, validate_items
from videosalmonn.training.features import Featurizer, SampleFeatures
from videosalmonn.training.mixing import Item, load_prompt_pool, mix

ROWS = "validation.jsonl"
SHOWN = 3  # greedy transcripts kept per row
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def refuse_sharded(cfg: ValidationConfig, distributed: DistributedType) -> None:
    """Validation runs the whole model on one process: not possible when FSDP/DeepSpeed shard it."""
    if cfg.source is not None and distributed in SHARDED:
        raise ConfigError(
            f"validation.source: held-out validation runs the model on the main process alone, which "
            f"{distributed.value} cannot (it shards the model); train without it (validation.source=null) and score "
            "the checkpoints with `videosalmonn eval`, or use DDP"
        )


class Validation:
    """The held-out set of one run, ready to score (features computed), and the rows written so far."""

    def __init__(
        self,
        cfg: TrainConfig,
        items: list[Item],
        loaded: list[Loaded],
        collate: TrainCollator,
        tokenizer: TextTokenizer,
        vocab: list[int] | None,
        rows: list[dict],
    ):
        self.cfg = cfg.validation
        self.total_steps = cfg.steps
        self.items = items
        self.loaded = loaded
        self.collate = collate
        self.tokenizer = tokenizer
        self.vocab = vocab  # the training alignment vocabulary (None: alignment off): decodes the media tokens
        self.align_tasks = frozenset(cfg.data.align_tasks)
        self.path = Path(cfg.output_dir) / ROWS
        self.rows = rows

    @classmethod
    def prepare(
        cls,
        cfg: TrainConfig,
        tokenizer: TextTokenizer,
        instruction_tokenizer: InstructionTokenizer,
        featurizer: Featurizer,
        vocab: list[int] | None,
        main: bool,
        start_step: int,
    ) -> Validation | None:
        """None when validation is off. Every process reads and checks the held-out items (an error stops them all
        alike); the main process computes their features and drops the rows after `start_step`."""
        if cfg.validation.source is None:
            return None
        model_cfg = cfg.model_config()
        items = read_items((cfg.validation.source,))
        if not items:
            raise InputError(f"validation.source {cfg.validation.source.path}: no held-out samples (limit, tasks)")
        style = prompt_style(model_cfg.llm.prompt_style)
        pool = load_prompt_pool(cfg.data.mixing.prompt_pool)
        validate_items(items, tokenizer, style, model_cfg.llm.max_text_tokens, pool)
        aligned = {item.task for item in items} & set(cfg.data.align_tasks)
        if model_cfg.loss.lm_weight == 0 and not aligned:
            raise ConfigError(
                f"validation.source {cfg.validation.source.path}: loss.lm_weight is 0 and no held-out sample has a "
                f"task in data.align_tasks {sorted(cfg.data.align_tasks)}: nothing to measure"
            )
        collate = TrainCollator(model_cfg, tokenizer, style, None, None)  # no alignment targets: see the docstring
        if not main:
            return cls(cfg, items, [], collate, tokenizer, vocab, [])
        data_cfg = dataclasses.replace(cfg.data, mixing=dataclasses.replace(cfg.data.mixing, enabled=False))
        data = TrainData(items, data_cfg, cfg.seed, model_cfg, instruction_tokenizer, pool, None)
        encode = TrainCollator(model_cfg, tokenizer, style, featurizer)
        tick, loaded = time.perf_counter(), []
        for i in range(len(items)):
            example = mix(items, data.pools, i, 0, cfg.seed, data.mixing, pool)  # as written, `<key>` expanded
            features = encode.features(data.load(example))
            loaded.append(Loaded(example, cached=_cpu(features)))
        tasks = ", ".join(f"{task} {n}" for task, n in sorted(_task_counts(items).items()))
        print(
            f"validation: {len(items)} held-out samples ({tasks}) every {cfg.validation.every} steps, features "
            f"computed in {time.perf_counter() - tick:.1f} s",
            flush=True,
        )
        validation = cls(cfg, items, loaded, collate, tokenizer, vocab, _rows_until(Path(cfg.output_dir), start_step))
        if validation.path.is_file():
            validation.save()  # what a new run does not continue is gone before its first step
        return validation

    def due(self, step: int) -> bool:
        return step % self.cfg.every == 0 or step == self.total_steps

    def run(self, accelerator: Accelerator, model, step: int) -> str | None:
        """Score the held-out set on the main process (the others wait); its console line there, else None."""
        text = None
        if accelerator.is_main_process:
            row = self.score(accelerator, accelerator.unwrap_model(model), step)
            self.rows.append(row)
            self.save()
            text = line(row)
        accelerator.wait_for_everyone()
        return text

    def save(self) -> None:
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in self.rows)))

    def score(self, accelerator: Accelerator, model: VideoSalmonn, step: int) -> dict:
        """One validation row; the model is in eval mode meanwhile (each module's mode restored after)."""
        tick = time.perf_counter()
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad(), accelerator.autocast():
                ce, transcripts = self._read(model, accelerator.device)
        finally:
            for m, training in modes:
                m.training = training
        errors, words = Counter(), Counter()
        for item, text in transcripts:
            e, n = word_errors(item.turns[-1].text, text)
            errors[item.task] += e
            words[item.task] += n
        shown = transcripts[:SHOWN]
        return {
            "step": step,
            "n": _task_counts(self.items),
            "ce_loss": ce if ce is not None and math.isfinite(ce) else None,
            "ctc_wer": {task: errors[task] / words[task] if words[task] else None for task in sorted(words)},
            "seconds": time.perf_counter() - tick,
            "transcripts": [
                {"id": item.id, "task": item.task, "reference": item.turns[-1].text, "transcript": text}
                for item, text in shown
            ],
        }

    def _read(self, model: VideoSalmonn, device) -> tuple[float | None, list[tuple[Item, str]]]:
        """(token-weighted mean answer CE or None, [(aligned item, greedy transcript)] in held-out order)."""
        loss = model.cfg.loss
        ce_sum, ce_tokens, transcripts = 0.0, 0, []
        table = vocab = None
        if loss.alignment_weight > 0 and self.vocab is not None:
            vocab = torch.tensor(self.vocab, dtype=torch.long, device=device)
            table = model.llm.embedding_table[vocab]  # (C, E)
        for start in range(0, len(self.loaded), self.cfg.batch_size):
            part = self.loaded[start : start + self.cfg.batch_size]
            batch = self.collate(part).batch.to(device)
            if loss.lm_weight > 0:
                n = int((batch.prompt.labels[:, 1:] != IGNORE).sum())
                ce_sum += float(model(batch, answer_logits_only=True).ce_loss) * n
                ce_tokens += n
            aligned = [k for k, x in enumerate(part) if self.items[x.example.index].task in self.align_tasks]
            if table is None or not aligned:
                continue
            media = model.encode(batch)
            for k in aligned:
                rows = greedy_ctc(media.embeds[k, : int(media.lengths[k])], table)
                ids = vocab[rows].tolist() if rows else []
                transcripts.append((self.items[part[k].example.index], self.tokenizer.decode(ids)))
        return (ce_sum / ce_tokens if ce_tokens else None), transcripts


def line(row: dict) -> str:
    """`validation step 200 | ce 2.3100 | ctc WER asr 51.2 % avsr 60.1 % | 64 samples, 3.1 s`."""
    parts = [f"validation step {row['step']}"]
    if row["ce_loss"] is not None:
        parts.append(f"ce {row['ce_loss']:.4f}")
    if row["ctc_wer"]:
        wers = " ".join(f"{t} {'-' if w is None else f'{100 * w:.1f} %'}" for t, w in row["ctc_wer"].items())
        parts.append(f"ctc WER {wers}")
    parts.append(f"{sum(row['n'].values())} samples, {row['seconds']:.1f} s")
    return " | ".join(parts)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits turning the hypothesis into the reference, reference words): lower-cased, punctuation removed."""
    ref, hyp = _words(reference), _words(hypothesis)
    previous = list(range(len(hyp) + 1))  # edit distance of ref[:i] to every prefix of hyp
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1], len(ref)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def read_rows(output_dir: str | Path) -> list[dict]:
    """validation.jsonl as a list of rows."""
    path = Path(output_dir) / ROWS
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _rows_until(output_dir: Path, step: int) -> list[dict]:
    """The rows of steps <= `step` (a resumed run rewrites what came after)."""
    if not (output_dir / ROWS).is_file():
        return []
    return [r for r in read_rows(output_dir) if r["step"] <= step]


def _task_counts(items: list[Item]) -> dict[str, int]:
    """Samples per task (`untagged`: no `task` in the manifest)."""
    return dict(Counter(item.task or "untagged" for item in items))


def _cpu(f: SampleFeatures) -> SampleFeatures:
    """Held on the CPU between validations, as cached training features are."""
    move = [None if t is None else t.cpu() for t in (f.visual, f.whisper, f.beats)]
    return SampleFeatures(move[0], f.is_image, move[1], move[2])
