"""The training loop: one explicit function on 🤗 accelerate (paper §3.3, §4.3; spec §8).

    setup:  model (trainable set: connector + LoRA, `model.set_trainable`), frozen encoders split off as the
            feature extractor, data (validated up front), feature cache, AdamW, accelerate.prepare, resume
    step:   for each of grad_accum micro-batches: Batch -> forward (CE + diversity) -> backward
            clip -> lr(step) -> AdamW step -> log -> held-out validation (validation.py) -> checkpoint

The same code runs as one CPU process, as DDP (gloo on CPU, NCCL on GPU) under `torchrun` or `accelerate launch`,
and with FSDP or DeepSpeed ZeRO-2/3 when `accelerate launch --config_file` chooses them. On CPU, `Accelerator(cpu=True)`
is required: without it two torchrun processes silently train unconnected (dependencies.md), which the
checkpoint's cross-process weight check would then report.

The frozen encoders are not part of the module given to accelerate: their outputs are *inputs* of training
(computed per sample by `Featurizer`, or read from the feature cache), so DDP/FSDP/DeepSpeed wrap only the
connector and the LLM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, gather_object, set_seed

from videosalmonn.checkpoint import load_model
from videosalmonn.config import to_dict
from videosalmonn.errors import CheckpointError, ConfigError, InputError, VideoSalmonnError
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.model import DTYPES, VideoSalmonn
from videosalmonn.prompting.instruction import instruction_tokenizer_for
from videosalmonn.prompting.templates import prompt_style
from videosalmonn.training import cache as feature_cache
from videosalmonn.training.checkpointing import (
    TrainState,
    clean_partial,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from videosalmonn.training.config import (
    DataConfig,
    MixingConfig,
    ModelRef,
    OptimConfig,
    SourceConfig,
    TrainConfig,
    load_train_config,
)
from videosalmonn.training.data import (
    CollatedExamples,
    TrainCollator,
    TrainData,
    alignment_vocab,
    micro_batches,
    read_items,
    validate_items,
)
from videosalmonn.training.faults import NonFiniteBudget, disk_full_is_an_error, step_is_nonfinite
from videosalmonn.training.features import Featurizer, load_raw_audio, load_raw_visual
from videosalmonn.training.feedback import Feedback
from videosalmonn.training.mixing import load_prompt_pool
from videosalmonn.training.validation import Validation, refuse_sharded
from videosalmonn.training.verify import Resume, check_checkpoint, choose_checkpoint

SHARD_BYTES = 512 << 20  # feature-cache shard size


class BatchTooLargeError(VideoSalmonnError):
    """A batch did not fit in memory; the message names its samples and their lengths."""


@dataclass
class TrainSummary:
    output_dir: Path
    steps: int
    losses: list[float]  # mean loss of every step run by this call
    checkpoint: Path | None


def train(cfg: TrainConfig, resume: bool | str | Path = False) -> TrainSummary:
    """Run (or continue, `resume=True` for the latest checkpoint, or a checkpoint path) one training run."""
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
    )
    try:
        with disk_full_is_an_error(cfg.output_dir):
            return _train(cfg, resume, accelerator)
    finally:
        accelerator.end_training()  # destroys the process group: no hang or abort at exit
        AcceleratorState._reset_state(reset_partial_state=True)


def _train(cfg: TrainConfig, resume, accelerator: Accelerator) -> TrainSummary:
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    refuse_sharded(cfg.validation, accelerator.distributed_type)
    out = Path(cfg.output_dir)
    start_from, resumed = _resume_point(out, resume)
    if main:
        for note in resumed.notes() if resumed is not None else ():
            print(note, flush=True)
    if resumed is not None and resumed.state.step >= cfg.steps:
        if main:
            print(
                f"{out}: the run is complete (step {resumed.state.step} of steps={cfg.steps}, checkpoint "
                f"{start_from}); nothing to do (give a larger steps=N to train further)",
                flush=True,
            )
        return TrainSummary(out, resumed.state.step, [], start_from)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        clean_partial(out)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    set_seed(cfg.seed + rank)  # dropout differs per process; data order does not (data.py)

    # ---- model: the trainable set is decided by `model.set_trainable`; the encoders become the feature extractor
    model, encoder, tokenizer, instruction_tokenizer, featurizer = build_model(cfg, accelerator)
    model_cfg = model.cfg
    if cfg.gradient_checkpointing:
        model.llm.enable_activation_checkpointing()

    # ---- data: every problem reported before the first step; features cached (and built) up front
    data = prepare_data(cfg, model_cfg, tokenizer, instruction_tokenizer, featurizer, accelerator)
    vocab = alignment_vocabulary(cfg, model_cfg, data, tokenizer)
    build_batch = TrainCollator(
        model_cfg,
        tokenizer,
        prompt_style(model_cfg.llm.prompt_style),
        None if data.cache is not None else featurizer,
        vocab,
    )

    optimizer = make_optimizer(model, cfg.optim)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no DataLoader is prepared: give DeepSpeed
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config  # the micro-batch and the clipping itself
        ds_config["train_micro_batch_size_per_gpu"] = cfg.data.batch_size
        ds_config["gradient_clipping"] = cfg.optim.grad_clip
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()
    if start_from is not None:
        state = load_checkpoint(accelerator, start_from, model, optimizer)
        if main and state.total_steps != cfg.steps:
            print(
                f"note: steps changed from {state.total_steps} to {cfg.steps}: the learning-rate schedule is "
                "recomputed for the new length",
                flush=True,
            )
        if main and state.world_size != world:
            print(
                f"note: {state.world_size} -> {world} processes: the data continues from the same position, "
                "but per-process dropout streams differ from an uninterrupted run",
                flush=True,
            )
    state.world_size, state.total_steps = world, cfg.steps
    per_micro = cfg.data.batch_size * world  # G: samples per global micro-batch
    batches = iter(
        micro_batches(
            data,
            state.samples_seen,
            cfg.data.batch_size,
            rank,
            world,
            (cfg.steps - state.step) * cfg.grad_accum,
            cfg.data.num_workers,
            cfg.seed,
        )
    )
    if main:
        features = "cached" if data.cache is not None else "on-the-fly"
        resuming = f", resuming at step {state.step}" if start_from is not None else ""
        print(
            f"training {len(data.items)} samples on {world} process(es) ({accelerator.distributed_type.value}, "
            f"{accelerator.device}), {per_micro * cfg.grad_accum} samples per step, {features} encoder "
            f"features{resuming}",
            flush=True,
        )
    validation = Validation.prepare(cfg, tokenizer, instruction_tokenizer, featurizer, vocab, main, state.step)
    feedback = Feedback(out, cfg.log, cfg.steps, state.step, main, to_dict(cfg))
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses, last_checkpoint = [], None
    nonfinite = NonFiniteBudget(cfg.optim.max_nonfinite_steps)

    for step in range(state.step, cfg.steps):
        tick = time.perf_counter()
        lr = learning_rate(step, cfg.steps, cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        sums = torch.zeros(7, dtype=torch.float64)  # loss, ce, diversity, alignment, tokens, micro-batches, aligned
        loss_was_nonfinite = skipped = False
        for _ in range(cfg.grad_accum):
            tb = build_batch(next(batches))
            with accelerator.accumulate(model), explain_oom(tb, step):
                output = model(tb.batch.to(accelerator.device))
                loss_was_nonfinite |= not bool(torch.isfinite(output.loss.detach()))
                accelerator.backward(output.loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(trainable, cfg.optim.grad_clip or math.inf)
                    skipped = step_is_nonfinite(accelerator, loss_was_nonfinite, grad_norm)
                    if not skipped:  # a skipped step leaves weights and optimizer state as they were
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            sums += torch.tensor(_step_sums(output, sum(tb.lengths)), dtype=torch.float64)
        totals = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
        state.step, state.samples_seen, state.lr = step + 1, state.samples_seen + per_micro * cfg.grad_accum, lr
        state.loss = float(totals[0] / totals[5])
        seconds = time.perf_counter() - tick
        losses.append(state.loss)
        feedback.step(
            {
                "step": state.step,
                "epoch": data.order.epoch_of(state.samples_seen),
                "loss": state.loss,
                "ce_loss": float(totals[1] / totals[5]) if model_cfg.loss.lm_weight > 0 else None,
                "diversity_loss": float(totals[2] / totals[5]) if model_cfg.loss.diversity_weight > 0 else None,
                "alignment_loss": float(totals[3] / totals[6]) if totals[6] > 0 else None,
                "lr": lr,
                "grad_norm": float("nan") if grad_norm is None else float(grad_norm),
                "tokens_per_s": float(totals[4]) / seconds,
                "samples_per_s": per_micro * cfg.grad_accum / seconds,
                "step_time_s": seconds,
            }
        )
        if skipped or not math.isfinite(state.loss):
            try:
                feedback.say(nonfinite.record(state.step, state.loss, last_checkpoint or start_from))
            except VideoSalmonnError:
                feedback.close()
                raise
        if validation is not None and validation.due(state.step):  # before the checkpoint: a resume redoes it
            feedback.say(validation.run(accelerator, model, state.step))
        if state.step % cfg.checkpoint.every == 0 or state.step == cfg.steps:
            last_checkpoint = save_checkpoint(accelerator, out, state, model, optimizer, cfg.checkpoint.keep)
            feedback.say(f"checkpoint {last_checkpoint}")
    feedback.close()
    return TrainSummary(out, state.step, losses, last_checkpoint)


# ------------------------------------------------------------------------------------------- pieces


def _step_sums(output, tokens: int) -> list[float]:
    """One micro-batch's [loss, ce, diversity, alignment, tokens, 1, had alignment], summed over micro-batches and
    processes, then divided: the alignment mean counts only the micro-batches that had aligned samples."""
    terms = (output.loss, output.ce_loss, output.diversity_loss, output.alignment_loss)
    values = [0.0 if t is None else t.item() for t in terms]
    return [*values, tokens, 1.0, float(output.alignment_loss is not None)]


def alignment_vocabulary(cfg: TrainConfig, model_cfg, data: TrainData, tokenizer) -> list[int] | None:
    """The alignment loss's vocabulary (None when the loss is off); an error when no sample would use it."""
    if model_cfg.loss.alignment_weight == 0:
        return None
    tasks = sorted(data.align_tasks)
    found = {item.task for item in data.items} & data.align_tasks
    if not found:
        raise ConfigError(
            f"loss.alignment_weight is {model_cfg.loss.alignment_weight} but no training sample has a task in "
            f"data.align_tasks {tasks} (the manifests' `task` fields)"
        )
    return alignment_vocab(data.items, data.align_tasks, tokenizer, model_cfg.loss.alignment_blank)


def build_model(cfg: TrainConfig, accelerator: Accelerator):
    """The model to train (trained weights float32; frozen weights in the model config's dtype) with its frozen
    encoders split off as the feature extractor, and the two tokenizers."""
    model_cfg = cfg.model_config()
    model = load_model(model_cfg, accelerator.device)  # every weight in model_cfg.dtype
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # float32 masters for AdamW
    encoder = model.split_encoder().eval()
    model.train()
    tokenizer = load_tokenizer(model_cfg.weights.tokenizer or model_cfg.weights.llm)
    instruction_tokenizer = instruction_tokenizer_for(model_cfg)
    featurizer = Featurizer(encoder, accelerator.device, DTYPES[model_cfg.dtype])
    return model, encoder, tokenizer, instruction_tokenizer, featurizer


def cache_features(
    config: str | None,
    manifests: list[str],
    out: str | None,
    model: str = "tiny",
    overrides: list[str] = (),
    prompt_pool: str | None = None,
) -> Path:
    """`videosalmonn cache-features`: compute every cache entry a training run (its config, or these manifests
    with the default mixing rules) can need. Runs on one process or shares the work under torchrun."""
    if config is not None:
        cfg = load_train_config(config, [f"data.feature_cache={out}"] if out else [])
        if cfg.data.feature_cache is None:
            raise InputError(f"{config}: no data.feature_cache; give --out")
    else:
        if not out:
            raise InputError("cache-features --manifest needs --out DIR")
        cfg = TrainConfig(
            model=ModelRef(model, tuple(overrides)),
            data=DataConfig(
                sources=tuple(SourceConfig(m) for m in manifests),
                feature_cache=out,
                mixing=MixingConfig(prompt_pool=prompt_pool),
            ),
        )
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, build_cache=True))
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    try:
        _, _, tokenizer, instruction_tokenizer, featurizer = build_model(cfg, accelerator)
        data = prepare_data(cfg, cfg.model_config(), tokenizer, instruction_tokenizer, featurizer, accelerator)
        if accelerator.is_main_process:
            size = sum(p.stat().st_size for p in Path(cfg.data.feature_cache).glob("shard-*.safetensors"))
            print(
                f"feature cache {cfg.data.feature_cache}: {len(data.cache.entries)} entries, {size / 2**20:.1f} MiB, "
                f"covering {len(data.items)} samples",
                flush=True,
            )
        return Path(cfg.data.feature_cache)
    finally:
        accelerator.end_training()
        AcceleratorState._reset_state(reset_partial_state=True)


def learning_rate(step: int, total: int, cfg: OptimConfig) -> float:
    """Linear warmup over `warmup_steps` to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, total - 1 - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: VideoSalmonn, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable set; weight decay on matrices only (not biases, norms, query tokens)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim == 2 and "norm" not in name.lower() else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def prepare_data(
    cfg: TrainConfig, model_cfg, tokenizer, instruction_tokenizer, featurizer: Featurizer, accelerator: Accelerator
) -> TrainData:
    """Read and validate every source; open the feature cache and compute its missing entries (all processes
    share the work), or fail naming what is missing when `data.build_cache` is false."""
    items = read_items(cfg.data.sources)
    prompt_pool = load_prompt_pool(cfg.data.mixing.prompt_pool)
    validate_items(
        items, tokenizer, prompt_style(model_cfg.llm.prompt_style), model_cfg.llm.max_text_tokens, prompt_pool
    )
    data = TrainData(items, cfg.data, cfg.seed, model_cfg, instruction_tokenizer, prompt_pool, None)
    if cfg.data.feature_cache is None:
        return data
    expected = feature_cache.fingerprint(model_cfg, featurizer.encoder, featurizer.dtype, instruction_tokenizer)
    root = cfg.data.feature_cache
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    # one run at a time completes a cache: the main process holds the cache's lock from opening to merging
    lock = feature_cache.BuildLock(root, create=cfg.data.build_cache) if main else contextlib.nullcontext()
    with lock:
        if main:
            feature_cache.FeatureCache.open(root, expected, create=cfg.data.build_cache).merge_parts()
        accelerator.wait_for_everyone()
        cache = feature_cache.FeatureCache.open(root, expected)
        paths = sorted({ref.path for item in items for ref in (item.visual, item.audio) if ref is not None})
        feature_cache.hash_media(cache, paths, rank, world, gather_object)
        data.cache = cache
        missing = [job for job in data.cache_jobs() if job.key not in cache]
        if missing and not cfg.data.build_cache:
            listed = "; ".join(
                f"{j.source} ({j.stream}{'' if j.instruction is None else f', {j.instruction!r}'})" for j in missing[:5]
            )
            raise InputError(
                f"{root}: {len(missing)} cache entries missing, e.g. {listed}; run `videosalmonn "
                "cache-features --config <this config>` or set data.build_cache=true"
            )
        if missing:
            if main:
                print(
                    f"feature cache {root}: computing {len(missing)} missing entries on {world} process(es)", flush=True
                )
            compute = cache_compute(model_cfg, instruction_tokenizer, featurizer)
            feature_cache.build(cache, missing, compute, rank, world, SHARD_BYTES)
        accelerator.wait_for_everyone()
        if main:
            cache.merge_parts()
            cache.save_media_records()
        accelerator.wait_for_everyone()
    media = cache.media
    data.cache = feature_cache.FeatureCache.open(root, expected)
    data.cache.media.update(media)
    return data


def cache_compute(model_cfg, instruction_tokenizer, featurizer: Featurizer):
    """job -> tensors to store, with exactly the functions the on-the-fly path uses."""

    def compute(job: feature_cache.CacheJob) -> dict[str, torch.Tensor]:
        try:
            if job.stream == "visual":
                raw = load_raw_visual(model_cfg, job.ref, job.is_image, job.instruction or "", instruction_tokenizer)
                return {"visual": featurizer.visual(raw)}
            whisper, beats = featurizer.audio(load_raw_audio(model_cfg, job.ref))
            return {"whisper": whisper, "beats": beats}
        except VideoSalmonnError as e:
            raise InputError(f"{job.source}: {e}") from None

    return compute


@contextlib.contextmanager
def explain_oom(tb: CollatedExamples, step: int):
    """Turn an out-of-memory failure into a message naming the batch's samples and their lengths."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as e:
        text = str(e)
        if not isinstance(e, torch.OutOfMemoryError) and "out of memory" not in text and "can't allocate" not in text:
            raise
        raise BatchTooLargeError(
            f"step {step + 1}: the batch does not fit in memory: {tb.describe()}. Lower data.batch_size, set "
            "gradient_checkpointing=true or mixed_precision, or use shorter clips"
        ) from None


def _resume_point(out: Path, resume: bool | str | Path):
    """(checkpoint to continue from, its verified Resume) or (None, None) for a new run. `resume=True`: the newest
    intact checkpoint of `out` (newer damaged ones are skipped, with a note each); a path: that one, verified."""
    if resume is False or resume is None:
        existing = latest_checkpoint(out)
        if existing is not None:
            raise CheckpointError(
                f"{out} already has checkpoints (latest {existing.name}): continue it with "
                "--resume, or choose another output_dir"
            )
        return None, None
    if resume is True:
        resumed = choose_checkpoint(out)
        return resumed.path, resumed
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    return path, Resume(path, check_checkpoint(path), [])
