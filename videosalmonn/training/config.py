"""TrainConfig: one frozen dataclass tree for a training run, read strictly from YAML with dotted overrides.

    TrainConfig
    ├── model       ModelRef         which model (preset or model YAML) + model overrides
    ├── data        DataConfig       sources (manifests), batch size, feature cache
    │   └── mixing  MixingConfig     the paper's mixed unpaired audio-visual training rules (spec §5.2)
    ├── optim       OptimConfig      AdamW, warmup + cosine, clipping
    ├── checkpoint  CheckpointConfig cadence and retention
    ├── log         LogConfig        console/CSV, TensorBoard, W&B
    └── validation  ValidationConfig held-out read-out every few steps (off without a source)

    cfg = load_train_config("configs/train/tiny-smoke.yaml", ["steps=10", "optim.lr=1e-3"])

Relative paths (sources, cache, output_dir, prompt pool) are relative to the working directory.
Distribution (DDP, FSDP, DeepSpeed) is not part of this tree: it comes from the launcher (torchrun, or
`accelerate launch --config_file ...`), so one training config runs unchanged on one CPU or many GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from videosalmonn.config import ModelConfig, load_config
from videosalmonn.errors import ConfigError


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class ModelRef:
    preset: str = "tiny"
    """A model preset name (`tiny`, `video-salmonn-13b`) or a model YAML file."""
    overrides: tuple[str, ...] = ()
    """Dotted model-config overrides, e.g. `[loss.diversity_weight=0.01, weights.delta=init.safetensors]`."""


@dataclass(frozen=True)
class SourceConfig:
    """One training manifest."""

    path: str
    format: str = "auto"
    """`auto`: our JSONL or the official JSON list (`image_name` + `conversation`); or a SAVE task name
    (`avm`, `avsr`, `video-qa`, ... as in `videosalmonn.data.save.READERS`) to read a SAVEBench file with
    that task's reader (prompt = the task's prompt, answer = the reference)."""
    media_root: str | None = None
    """Relative media paths resolve against this (default: the manifest's folder)."""
    repeat: int = 1
    """How many times the source appears in one epoch (up-sampling a small source)."""
    limit: int | None = None
    """Use only the first this many samples of the manifest (a budgeted run on part of a large file)."""
    tasks: tuple[str, ...] = ()
    """Of those (the first `limit`), use only the samples whose `task` is one of these; empty: every sample."""

    def __post_init__(self):
        _check(self.repeat >= 1, f"data.sources {self.path}: repeat must be >= 1")
        _check(self.limit is None or self.limit >= 1, f"data.sources {self.path}: limit must be >= 1")


@dataclass(frozen=True)
class MixingConfig:
    """Mixed unpaired audio-visual training (paper §3.3, spec §5.2). Defaults are the official code's rules."""

    enabled: bool = True
    """False: every sample is used as written (absent streams masked)."""
    avm_probability: float = 0.1
    """A paired video+audio sample becomes an audio-visual matching question ("Is the audio compatible with the
    video?") with this probability (official: 0.1)."""
    avm_mismatch_probability: float = 0.5
    """...and then gets a random unrelated audio (answer "No.") with this probability, else "Yes." (official 0.5)."""
    video_combined_probability: float = 0.2
    """A video-only sample is paired with an unrelated audio sample; with this probability both tasks are asked in
    one combined prompt (mask [1,1]), otherwise the audio is present but masked (mask [1,0]) (official 0.2)."""
    image_single_task_probability: float = 0.5
    """An image-only sample is paired with an unrelated audio sample (mask [1,1]); with this probability only one
    of the two tasks is asked, otherwise both in a combined prompt (official 0.5)."""
    matching_mismatch_probability: float = 0.5
    """An image+audio sample whose answer is `audio_text_matching` gets another sample's audio (answer "No") with
    this probability, else its own ("Yes") (official 0.5, SpokenCOCO)."""
    prompt_pool: str | None = None
    """JSON file `{key: [prompt, ...]}`: a user turn written `<key>` is replaced by a random prompt of that list
    (official `prompt/alignment_speech_multitask.json`, not released)."""

    def __post_init__(self):
        for name in (
            "avm_probability",
            "avm_mismatch_probability",
            "video_combined_probability",
            "image_single_task_probability",
            "matching_mismatch_probability",
        ):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"data.mixing.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class DataConfig:
    sources: tuple[SourceConfig, ...] = ()
    batch_size: int = 1
    """Samples per process per micro-batch (global batch = batch_size x processes x grad_accum)."""
    feature_cache: str | None = None
    """Directory of cached frozen-encoder outputs (`videosalmonn cache-features`); None runs the encoders every
    step."""
    build_cache: bool = True
    """Compute the cache entries this run needs and are missing before training starts (else: an error)."""
    num_workers: int = 0
    """DataLoader worker processes for media decoding / cache reads (0: in the training process)."""
    mixing: MixingConfig = field(default_factory=MixingConfig)
    align_tasks: tuple[str, ...] = ()
    """Tasks (a manifest sample's `task`) whose answer describes the media in order (e.g. asr, ocr, ic, aac): their
    samples carry alignment targets for `loss.alignment_weight` (the mini recipe's first stage)."""

    def __post_init__(self):
        _check(self.batch_size >= 1, "data.batch_size must be >= 1")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay to `min_lr_ratio * lr`, gradient-norm clipping."""

    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    """Applied to matrices only (not to biases, norms, query tokens)."""
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    max_nonfinite_steps: int = 0
    """Steps with a NaN/inf loss (or gradient norm) that may be skipped (weights and optimizer state unchanged)
    before the run stops with an error; 0 stops at the first."""

    def __post_init__(self):
        _check(self.lr > 0, "optim.lr must be positive")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio must be in [0, 1]")
        _check(self.warmup_steps >= 0, "optim.warmup_steps must be >= 0")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas must be two numbers in [0, 1)"
        )
        _check(self.grad_clip >= 0, "optim.grad_clip must be >= 0")
        _check(self.max_nonfinite_steps >= 0, "optim.max_nonfinite_steps must be >= 0")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 100
    """Save every this many optimizer steps (and always at the end)."""
    keep: int = 2
    """Keep the newest this many checkpoints (0: keep all)."""

    def __post_init__(self):
        _check(self.every >= 1, "checkpoint.every must be >= 1")
        _check(self.keep >= 0, "checkpoint.keep must be >= 0")


@dataclass(frozen=True)
class LogConfig:
    every: int = 10
    """Print and record metrics every this many optimizer steps (metrics.csv always)."""
    progress: bool = True
    """A progress bar with ETA on the first process (when stderr is a terminal)."""
    tensorboard: bool = False
    """Also write TensorBoard events to `output_dir/tensorboard` (needs the `tensorboard` package)."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs the `wandb` package and a login)."""

    def __post_init__(self):
        _check(self.every >= 1, "log.every must be >= 1")


@dataclass(frozen=True)
class ValidationConfig:
    """A held-out read-out during training (`training/validation.py`): off without a `source`."""

    source: SourceConfig | None = None
    """The held-out manifest (path, format, limit, tasks, media_root as in data.sources), used as written: no
    mixing rules. Keep it small (~64 samples): its frozen features are computed once at the start of the run."""
    every: int = 100
    """Validate every this many optimizer steps, and at the last step."""
    batch_size: int = 8
    """Held-out samples per forward pass."""

    def __post_init__(self):
        _check(self.every >= 1, "validation.every must be >= 1")
        _check(self.batch_size >= 1, "validation.batch_size must be >= 1")
        _check(self.source is None or self.source.repeat == 1, "validation.source: repeat must be 1 (held out once)")


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/train"
    """Run directory: config.yaml, metrics.csv, validation.jsonl, checkpoints/."""
    steps: int = 1000
    """Optimizer steps of the whole run."""
    seed: int = 0
    """Seeds data order, mixing decisions and dropout (each process adds its rank)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast compute dtype. The trained weights and their optimizer state are always float32; the frozen
    weights (encoders, LLM base) are stored in the model config's `dtype`, which must then be this dtype."""
    gradient_checkpointing: bool = False
    """Recompute the LLM's activations in the backward pass (less memory, ~30 % more compute)."""
    model: ModelRef = field(default_factory=ModelRef)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self):
        _check(len(self.data.sources) > 0, "data.sources: give at least one manifest")
        _check(self.steps >= 1, "steps must be >= 1")
        _check(self.grad_accum >= 1, "grad_accum must be >= 1")
        _check(
            self.optim.warmup_steps < self.steps or self.steps == 1,
            f"optim.warmup_steps ({self.optim.warmup_steps}) must be below steps ({self.steps})",
        )

    def model_config(self) -> ModelConfig:
        """The model to train; its `dtype` is the storage dtype of the frozen weights (trained ones: float32)."""
        cfg = ModelConfig.from_name(self.model.preset, self.model.overrides)
        wanted = {"float32": None, "bfloat16": "bf16", "float16": "fp16"}[cfg.dtype]
        _check(
            wanted is None or self.mixed_precision == wanted,
            f"the model's dtype is {cfg.dtype}: its frozen weights are used under autocast, so set "
            f"mixed_precision={wanted} (or model dtype=float32)",
        )
        return cfg


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A training YAML (strict: unknown keys and wrong types are errors) with dotted overrides."""
    if Path(path).suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: a training config is a .yaml file")
    return load_config(TrainConfig, path, overrides)
