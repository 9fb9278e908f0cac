"""`videosalmonn estimate`: the GPU memory and host RAM a config needs, before anything is downloaded or loaded.

videosalmonn estimate --model video-salmonn-13b --seconds 30 300 --beams 1 --quantization none int8 nf4

weights        parameter counts of the model built empty (meta device) x bytes per parameter: the model dtype;
               int8: 1 byte + a 4-byte scale per output row; nf4: 1/2 byte + block scales (bitsandbytes double
               quantisation: 1 byte per 64 weights + 4 bytes per 64 x 256). Only the LLM's decoder
               projections are quantised; embeddings, LM head, norms, LoRA and the encoders stay in the dtype.
media          the decoded inputs on the device: frames (2 per second, 3 x S x S), log-mel and fbank chunks.
               `--image`: an image (one frame over `connector.image_slots`, or with `media.image_spotlight` its
               grid x grid sub-images as a short video: `media.clip.image_frames`) with `seconds` of audio.
KV cache       2 (K, V) x layers x kv_heads x head_dim x dtype bytes x tokens x batch x beams,
               tokens = prompt text + media tokens (`connector.multires.media_token_count`) + generated.
activations    the largest working set of one stage (stages run one after another, inference, no grad):
               a transformer block holds ~4 copies of its (N, T, W) stream plus the larger of its attention
               (eager: scores and softmax, N x H x T x T each, the LLM's softmax in fp32; sdpa: none) and its
               MLP (2 x N x T x M; the LLM's SwiGLU 3 x); encoders run `frame_batch` frames / `chunk_batch` 30-s
               chunks at a time; the LLM prefill has batch x beams rows and keeps the KV of the prompt; a decoding
               step adds one layer's KV copy (the cache grows by concatenation); a quantised projection is
               dequantised per call (2 x its largest weight in the dtype).
GPU peak       weights + media + the largest (stage activations + the KV cache alive then).
               Not counted: the CUDA context (~0.5 GiB) and allocator fragmentation.
host at load   the process (python + torch + transformers, ~0.6 GiB) + the largest piece read at once (an encoder's
               tensors from its fp32 hub files, or one LLM shard: its file size when `weights.llm` is on disk,
               else 10 GB, the size of Vicuna-13B-v1.5's `.bin` shards) + the model itself on a CPU target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.config import ModelConfig
from videosalmonn.media.timeline import (
    BEATS_N_MELS,
    OFFICIAL_MAX_AUDIO_SECONDS,
    OFFICIAL_MAX_VIDEO_SECONDS,
    SAMPLE_RATE,
    VIDEO_FPS,
    WHISPER_CHUNK_SAMPLES,
    WHISPER_FRAMES_PER_CHUNK,
    WHISPER_MEL_FRAMES,
    WHISPER_N_MELS,
    audio_slots,
)

# torch and the model are imported where used: `videosalmonn --help` registers this command without loading them
GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
PROCESS_BYTES = int(0.35 * GIB)  # python + torch + transformers imported (0.33 GiB: bench/load_memory.py)
SOURCE_BYTES = 4  # the encoders' hub files are fp32
DEFAULT_SHARD_BYTES = 10 * 10**9  # Vicuna-13B-v1.5 ships .bin shards of up to 10 GB
BEATS_TOKENS_PER_CHUNK = 1496  # 8 x (2998 fbank frames // 16) for 30 s
BEATS_FRAMES_PER_CHUNK = 2998
COMPONENTS = ("vision", "whisper", "beats", "connector", "llm", "lora")


@dataclass(frozen=True)
class Params:
    """Parameter counts of a config's model, by component; `llm_quantised` (numel, rows) of the projections."""

    counts: dict[str, int]
    llm_quantised: int
    llm_quantised_rows: int
    largest_linear: int


@dataclass(frozen=True)
class Estimate:
    seconds: float
    quantization: str
    tokens: dict[str, int]  # text, media, generated, rows (batch x beams)
    weights: dict[str, int]  # bytes per component
    media: int
    kv_cache: int
    activations: dict[str, int]  # stage -> bytes, with the KV cache alive during it
    host_at_load: int
    image: bool = False  # an image (+ `seconds` of audio) instead of a video with audio

    @property
    def weights_total(self) -> int:
        return sum(self.weights.values())

    @property
    def peak_stage(self) -> str:
        return max(self.activations, key=self.activations.get)

    @property
    def gpu_peak(self) -> int:
        return self.weights_total + self.media + max(self.activations.values())


def parameter_counts(cfg: ModelConfig) -> Params:
    """Parameters by component, counted on the model built empty (parameters on meta: nothing is allocated)."""
    from accelerate import init_empty_weights

    from videosalmonn.model import VideoSalmonn

    plain = cfg.replace("llm.quantization=none")
    with init_empty_weights():
        model = VideoSalmonn.from_config(plain)
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        counts[_component(name)] += p.numel()
    linears = [_base_linear(model.llm.model.get_submodule(n)) for n in _projection_names(model.llm.model)]
    return Params(
        counts,
        sum(m.weight.numel() for m in linears),
        sum(m.out_features for m in linears),
        max((m.weight.numel() for m in linears), default=0),
    )


def _component(name: str) -> str:
    if ".lora_" in name:
        return "lora"
    for prefix, component in (
        ("encoder.vision.", "vision"),
        ("encoder.whisper.", "whisper"),
        ("encoder.beats.", "beats"),
        ("connector.", "connector"),
        ("llm.", "llm"),
    ):
        if name.startswith(prefix):
            return component
    raise ValueError(f"parameter {name} belongs to no component")


def _projection_names(model) -> list[str]:
    """`llm.quantization`'s selection (`quantized_linear_names`), also under LoRA wrappers."""
    from torch import nn

    from videosalmonn.llm.quantization import QUANTISED

    return [
        n
        for n, m in model.named_modules()
        if n.rsplit(".", 1)[-1] in QUANTISED and ".layers." in f".{n}" and isinstance(_base_linear(m), nn.Linear)
    ]


def _base_linear(m):
    return m.get_base_layer() if hasattr(m, "get_base_layer") else m


def weight_bytes(params: Params, quantization: str, dtype_bytes: int) -> dict[str, int]:
    """Bytes per component: the LLM's projections as `quantization` stores them, everything else in the dtype."""
    out = {k: v * dtype_bytes for k, v in params.counts.items()}
    n, rows = params.llm_quantised, params.llm_quantised_rows
    stored = {
        "none": n * dtype_bytes,
        "int8": n + 4 * rows,
        "nf4": n // 2 + math.ceil(n / 64) + 4 * math.ceil(n / (64 * 256)),
    }[quantization]
    out["llm"] += stored - n * dtype_bytes
    return out


def media_counts(cfg: ModelConfig, seconds: float) -> tuple[int, int, int]:
    """(frames, 30-s audio chunks, audio slots) of a clip with video and audio of `seconds` (media.limits
    applied)."""
    official = cfg.media.limits == "official"
    video, audio = seconds, seconds
    if official:
        video, audio = min(video, OFFICIAL_MAX_VIDEO_SECONDS), min(audio, OFFICIAL_MAX_AUDIO_SECONDS)
    samples = max(1, round(audio * SAMPLE_RATE))
    return (
        max(1, math.ceil(video * VIDEO_FPS)),
        math.ceil(samples / WHISPER_CHUNK_SAMPLES),
        audio_slots(samples, official),
    )


def block_bytes(
    rows: int, seq: int, width: int, heads: int, mlp: int, b: int, *, eager: bool, score_bytes: int, mlp_copies: int
) -> int:
    """Working set of one transformer block on (rows, seq, width): 4 copies of the stream + the larger of the
    attention scores (`score_bytes` per score, all copies alive at once; none for sdpa) and the MLP hidden."""
    attention = rows * heads * seq * seq * score_bytes if eager else 0
    return 4 * rows * seq * width * b + max(attention, mlp_copies * rows * seq * mlp * b)


def estimate(
    cfg: ModelConfig,
    seconds: float,
    beams: int | None = None,
    *,
    batch: int = 1,
    text_tokens: int = 64,
    new_tokens: int | None = None,
    device: str = "cuda",
    params: Params | None = None,
    shard_bytes: int | None = None,
    image: bool = False,
) -> Estimate:
    """Memory of answering about one `seconds`-long video with audio (x `batch`), `beams` beams (default: the
    config's), `new_tokens` generated (default: generation.max_new_tokens) after `text_tokens` of prompt text.
    `image`: about an image with `seconds` of audio (0: none) instead."""
    from videosalmonn.connector.multires import SPAN_SECONDS, media_token_count
    from videosalmonn.media.clip import image_frames

    params = params or parameter_counts(cfg)
    b = DTYPE_BYTES[cfg.dtype]
    beams = beams or cfg.generation.num_beams
    new_tokens = new_tokens or cfg.generation.max_new_tokens
    frames, chunks, slots = media_counts(cfg, seconds)
    is_image = False
    if image:
        frames, is_image = image_frames(cfg.media)
        chunks, slots = (chunks, slots) if seconds > 0 else (0, 0)
    media_tokens = media_token_count(cfg.connector, frames, is_image, slots)
    level = cfg.connector.levels[0]
    connector_slots = media_tokens // level.queries * level.frames if image else frames  # an image fills its slots
    multiple = cfg.connector.window_multiple
    span = math.ceil(SPAN_SECONDS * VIDEO_FPS / multiple) * multiple  # the connector runs in spans this long
    connector_slots = min(connector_slots, span)
    rows = batch * beams
    prompt = text_tokens + media_tokens
    llm, enc = cfg.llm, cfg.encoders
    head_dim = llm.width // llm.num_heads
    kv_per_token = 2 * llm.depth * llm.num_kv_heads * head_dim * b
    weights = weight_bytes(params, llm.quantization, b)

    s = cfg.media.image_size
    media = batch * (
        frames * 3 * s * s + chunks * (WHISPER_N_MELS * WHISPER_MEL_FRAMES + BEATS_FRAMES_PER_CHUNK * BEATS_N_MELS)
    )
    media *= b
    n_frames, n_chunks = batch * min(32, frames), min(1, chunks)  # AVEncoder frame_batch / chunk_batch (1)
    patches = 1 + (s // enc.eva.patch_size) ** 2
    eva, wh, be = enc.eva, enc.whisper, enc.beats
    features = (
        batch
        * (
            frames * enc.image_qformer.num_queries * enc.image_qformer.width
            + chunks * WHISPER_FRAMES_PER_CHUNK * (wh.width + be.width)
        )
        * b
    )
    dequant = 2 * params.largest_linear * b if llm.quantization != "none" else 0
    sdpa = llm.attention == "sdpa" and device == "cuda"
    window = max(lv.frames for lv in cfg.connector.levels) * enc.image_qformer.num_queries
    connector_in = 3 * enc.image_qformer.width
    encoder_block = {"eager": True, "score_bytes": 2 * b, "mlp_copies": 2}
    activations = {
        # scores + softmax (2 b); BEATs: scores, shifted, + gated bias, softmax (4 b); the LLM: + fp32 softmax
        "vision": block_bytes(n_frames, patches, eva.width, eva.num_heads, eva.mlp_width, b, **encoder_block),
        "whisper": block_bytes(
            n_chunks, WHISPER_FRAMES_PER_CHUNK, wh.width, wh.num_heads, wh.mlp_width, b, **encoder_block
        )
        + features,
        "beats": block_bytes(
            n_chunks,
            BEATS_TOKENS_PER_CHUNK,
            be.width,
            be.num_heads,
            be.mlp_width,
            b,
            eager=True,
            score_bytes=4 * b,
            mlp_copies=2,
        )
        + features,
        "connector": batch * connector_slots * enc.image_qformer.num_queries * 6 * connector_in * b
        + batch * math.ceil(connector_slots / 10) * cfg.connector.num_heads * window * window * 2 * b
        + features,
        "llm prefill": kv_per_token * prompt * rows
        + block_bytes(
            rows,
            prompt,
            llm.width,
            llm.num_heads,
            llm.mlp_width,
            b,
            eager=not sdpa,
            score_bytes=2 * b + 4,
            mlp_copies=3,
        )
        + rows * llm.vocab_size * 4
        + dequant,
        "llm decoding": kv_per_token * (prompt + new_tokens) * rows
        + kv_per_token // llm.depth * (prompt + new_tokens) * rows
        + rows * llm.vocab_size * 4 * 2
        + dequant,
    }
    model_bytes = sum(weights.values())
    read_at_once = max(
        SOURCE_BYTES * max(params.counts[k] for k in ("vision", "whisper", "beats")),
        shard_bytes if shard_bytes is not None else llm_shard_bytes(cfg),
    )
    host = PROCESS_BYTES + read_at_once + (model_bytes if device == "cpu" else 0)
    return Estimate(
        seconds,
        llm.quantization,
        {"text": text_tokens, "media": media_tokens, "generated": new_tokens, "rows": rows},
        weights,
        media,
        kv_per_token * (prompt + new_tokens) * rows,
        activations,
        host,
        image,
    )


def llm_shard_bytes(cfg: ModelConfig) -> int:
    """The largest weight file of `weights.llm` when it is a local directory, else DEFAULT_SHARD_BYTES."""
    source = cfg.weights.llm
    path = Path(str(source)).expanduser() if source else None
    if path is None or not path.is_dir():
        return DEFAULT_SHARD_BYTES if source else 0
    files = [f for f in path.iterdir() if f.suffix in (".bin", ".safetensors")]
    return max((f.stat().st_size for f in files), default=0)


# ------------------------------------------------------------------------------------------ table + CLI


def table(estimates: list[Estimate], dtype: str) -> str:
    """One column per estimate: weights by component, media, KV cache, peak stage, GPU peak, host RAM at load."""
    heads = [f"{_quant_name(e.quantization, dtype)}, {_media_name(e)}" for e in estimates]
    rows: list[tuple[str, list[str]]] = [(f"weights: {k}", [_gib(e.weights[k]) for e in estimates]) for k in COMPONENTS]
    rows += [
        ("weights: total", [_gib(e.weights_total) for e in estimates]),
        (
            "media tokens (+ text, new)",
            [f"{e.tokens['media']} (+{e.tokens['text']}, {e.tokens['generated']})" for e in estimates],
        ),
        ("media inputs", [_gib(e.media) for e in estimates]),
        ("KV cache (at the last token)", [_gib(e.kv_cache) for e in estimates]),
        ("largest stage (with its KV)", [f"{e.peak_stage} {_gib(max(e.activations.values()))}" for e in estimates]),
        ("GPU peak", [_gib(e.gpu_peak) for e in estimates]),
        ("host RAM at load (at most)", [_gib(e.host_at_load) for e in estimates]),
    ]
    width = max(len(r[0]) for r in rows)
    cols = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    lines = [" | ".join([" " * width, *(h.rjust(c) for h, c in zip(heads, cols))])]
    lines.append("-+-".join(["-" * width, *("-" * c for c in cols)]))
    lines += [" | ".join([name.ljust(width), *(v.rjust(c) for v, c in zip(vals, cols))]) for name, vals in rows]
    return "\n".join(lines)


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _media_name(e: Estimate) -> str:
    if not e.image:
        return _duration(e.seconds)
    return f"image + {_duration(e.seconds)} audio" if e.seconds > 0 else "image"


def _quant_name(quantization: str, dtype: str) -> str:
    return {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}[dtype] if quantization == "none" else quantization


def cmd_estimate(args: argparse.Namespace) -> int:
    cfg = ModelConfig.from_name(args.model, args.set)
    configs = [cfg.replace(f"llm.quantization={q}") for q in args.quantization] if args.quantization else [cfg]
    params = parameter_counts(cfg)
    estimates = [
        estimate(
            c,
            s,
            args.beams,
            batch=args.batch,
            text_tokens=args.prompt_tokens,
            new_tokens=args.new_tokens,
            device=args.device,
            params=params,
            image=args.image,
        )
        for c in configs
        for s in args.seconds
    ]
    if args.json:
        print(json.dumps([dataclasses.asdict(e) | {"gpu_peak": e.gpu_peak} for e in estimates], indent=1))
        return 0
    counts = ", ".join(f"{k} {v / 1e9:.3g} B" for k, v in params.counts.items())
    print(
        f"{cfg.name} ({cfg.dtype}, llm.attention={cfg.llm.attention}): "
        f"{sum(params.counts.values()) / 1e9:.2f} B parameters: {counts}"
    )
    print(f"batch {args.batch}, beams {estimates[0].tokens['rows'] // args.batch}, device {args.device}")
    print(table(estimates, cfg.dtype))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="GPU memory and host RAM a model needs (nothing is downloaded or loaded)")
    p.add_argument("--model", default="video-salmonn-13b", help="preset name or model YAML (default video-salmonn-13b)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--seconds", type=float, nargs="+", default=[30.0], help="media duration(s) (video with audio)")
    p.add_argument(
        "--image",
        action="store_true",
        help="an image (with media.image_spotlight: its sub-images) and --seconds of audio (0: none) instead",
    )
    p.add_argument("--beams", type=int, help="beams (default: the config's generation.num_beams)")
    p.add_argument("--batch", type=int, default=1, help="clips answered together")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt text tokens, template included (default 64)")
    p.add_argument("--new-tokens", type=int, help="generated tokens (default: generation.max_new_tokens)")
    p.add_argument(
        "--quantization", nargs="+", choices=["none", "int8", "nf4"], help="one column each (default: the config's)"
    )
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the model lives in host RAM")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    p.set_defaults(func=cmd_estimate)
