"""Benchmark: `dtype: bfloat16` against float32 on this CPU, stage by stage, training, and the answers it changes.

    python bench/bf16.py [--rows NAME ...] [--repeats 3] [--clip PATH] [--encoder-layers 2] [--frames 4]
                         [--llm-layers 2] [--llm-prompt 200] [--llm-tokens 4] [--train-preset tiny|mini|auto]
                         [--train-steps 3] [--golden DIR]

Every row runs the same weights twice, cast to bfloat16 and kept in float32, on the same inputs (rounded to bf16 on
the bf16 side, as `Batch.to` does), and reports the time ratio and the relative L2 error of the bf16 output
against the fp32 one. Random weights throughout, seeded; towers and LLM at the `video-salmonn-13b` preset's real
dimensions, with fewer layers where one full forward would take minutes here (the rows say how many):

connector  our connector at the released dimensions (bench/connector.py's inputs): the LLM embeddings
vision     EVA-ViT-g (1408 wide, 16 heads, MLP 6144, 257 tokens per 224² frame; `--encoder-layers` of its 39
           blocks) + ln_vision + the image Q-Former (all 12 layers, 32 queries, a 16-token instruction of random
           ids) on `--frames` frames of the clip: the (frames, 32, 768) query outputs
whisper    the Whisper-large-v2 encoder (1280 wide, 20 heads, MLP 5120; `--encoder-layers` of its 32) on one 30-s
           log-mel chunk of the clip's audio (repeated to 30 s): the (1, 1500, 1280) features
beats      BEATs (768 wide, 12 heads, conv. positions, `--encoder-layers` of its 12) on the same chunk's fbank
llm        a LLaMA of Vicuna-13B's width (5120, 40 heads, MLP 13824, vocab 32000, LoRA r 32; `--llm-layers` of its
           40): prefill of `--llm-prompt` tokens (about one 30-s clip's 180 media tokens and a question; the
           last position's logits, as generation needs), and prefill + `--llm-tokens` greedy tokens (no EOS)
train      `--train-steps` optimizer steps of configs/train/tiny-smoke.yaml with `mixed_precision: bf16` vs `no`
           (model dtype float32: autocast), features cached by a 1-step warm-up run, the whole runs interleaved:
           median step time without each run's first step; the error is the relative difference of the first step's loss
           (same weights, same batch). `--train-preset mini` trains the mini preset instead (its real SmolLM2 and
           Whisper parts must be in the parts cache; auto: mini if they are, else tiny) - much slower here
answer     the `tiny` preset (`Pipeline.from_pretrained("tiny", ["dtype=bfloat16"])` vs float32): the clip's frames
           and audio loaded once, then prompt + media encoding + greedy generation of `--tokens` tokens;
           relative L2 error of the prompt's logits (teacher-forced forward) and whether the greedy ids are the same
golden     the golden tiny model of ../shared/golden/official_v1 (the official code's model) loaded in bfloat16 vs
           the float32 parity path (unchanged), each golden case: its greedy-20 ids, how many of the first 20
           agree, whether the fp32 ids are the recorded official ones, and the prompt logits' error

Each pair runs alternately (A B A B ...), after one warm-up each; medians. bf16 matrix products are fast on a CPU
only with AVX-512-BF16 or AMX (/proc/cpuinfo flags avx512_bf16, amx_bf16), through oneDNN; without them (or with
oneDNN held below them, ONEDNN_MAX_CPU_ISA=AVX2) they are emulated and many times slower than fp32. The report
says which this CPU has and what a small matrix-product probe measured (`bf16_support`). `--json` prints the
result as one JSON object (what `bench/all.py` reads), with this process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import add_json_flag, cpu_flags, describe, emit, peak_rss_mb, result, row
from connector import DB, DV, DW, E, Q, features, interleaved

from videosalmonn.checkpoint import load_model
from videosalmonn.config import ConnectorConfig, GenerationConfig, MediaConfig, ModelConfig
from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.encoders.beats import BEATs
from videosalmonn.encoders.vision import VisualEncoder
from videosalmonn.encoders.whisper import WhisperAudioEncoder
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.media.clip import load_clip
from videosalmonn.media.features import audio_features
from videosalmonn.media.timeline import WHISPER_CHUNK_SAMPLES
from videosalmonn.official.golden import GoldenDir
from videosalmonn.official.parity import case_request, golden_pipeline, golden_runs
from videosalmonn.parts import PARTS, cache
from videosalmonn.parts.sources import SOURCES
from videosalmonn.pipeline import Pipeline
from videosalmonn.prompting.instruction import instruction_tokenizer_for
from videosalmonn.training.config import load_train_config
from videosalmonn.training.feedback import read_metrics
from videosalmonn.training.loop import train
from videosalmonn.types import Request

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "media" / "4405327307.mp4"
GOLDEN = ROOT.parent / "shared" / "golden" / "official_v1"
TRAIN_CONFIG = ROOT / "configs" / "train" / "tiny-smoke.yaml"
CPU = torch.device("cpu")
REAL = "video-salmonn-13b"  # the preset whose dimensions the tower and LLM rows use
INSTRUCTION_TOKENS = 16
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}  # row keys -> config dtypes
ROWS = ("connector", "vision", "whisper", "beats", "llm", "train", "answer", "golden")


def rel_l2(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.float() - ref.float()).norm() / ref.float().norm()).item()


def bf16_row(compared: str, times: dict, unit: str, per: int = 1, **extra) -> dict:
    """A row from `interleaved` times keyed bf16 / fp32: ours = bf16, baseline = fp32."""
    (w16, c16), (w32, c32) = times["bf16"], times["fp32"]
    return row(compared, w16 / per, w32 / per, unit, cpu_ratio=c32 / c16, **extra)


def first_equal(a: list[int], b: list[int]) -> int:
    """How many leading ids two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def to_bf16(inputs: tuple) -> tuple:
    return tuple(x.to(torch.bfloat16) if x.is_floating_point() else x for x in inputs)


def bf16_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module with its parameters rounded to bfloat16, made without a second float32 copy."""
    memo = {id(p): torch.nn.Parameter(p.detach().bfloat16(), p.requires_grad) for p in module.parameters()}
    return copy.deepcopy(module, memo)


def pair(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The module in float32 and a copy of the same weights in bfloat16."""
    fp32 = module.eval()
    return {"bf16": bf16_copy(fp32).to(torch.bfloat16), "fp32": fp32}


def run_pair(compared: str, modules: dict, inputs: tuple, args) -> dict:
    """Time the bf16 and fp32 modules on the inputs (bf16 ones rounded) and compare their outputs."""
    feeds = {"bf16": to_bf16(inputs), "fp32": inputs}
    with torch.no_grad():
        out = {k: m(*feeds[k]) for k, m in modules.items()}
        times = interleaved({k: (lambda m=m, k=k: m(*feeds[k])) for k, m in modules.items()}, args.repeats, CPU)
    return bf16_row(compared, times, "s", rel_error=rel_l2(out["bf16"], out["fp32"]))


# ----------------------------------------------------------------------------------------------- the CPU


def matmul_probe(n: int = 512, k: int = 1024, repeats: int = 5) -> float:
    """Median time of an (n, k) @ (k, k) product in bf16 over the same in fp32 (< 1: bf16 is faster); an emulated
    bf16 product (100x slower, the warm-up says so) is not repeated."""
    a, b = torch.randn(n, k), torch.randn(k, k)

    def timed(x, y) -> float:
        tick = time.perf_counter()
        x @ y
        return time.perf_counter() - tick

    timed(a, b)
    fp32 = statistics.median(timed(a, b) for _ in range(repeats))
    x, y = a.bfloat16(), b.bfloat16()
    first = timed(x, y)  # warm-up (oneDNN builds its kernels on the first call)
    if first > 10 * fp32:
        return first / fp32
    return statistics.median(timed(x, y) for _ in range(repeats)) / fp32


def bf16_support() -> dict:
    """Whether bf16 matrix products run natively here: the CPU's flags and a probe (oneDNN can be held below them
    by ONEDNN_MAX_CPU_ISA; ATEN_CPU_CAPABILITY and MKL_ENABLE_INSTRUCTIONS do not change its bf16 products)."""
    flags = cpu_flags()
    hardware = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    probe = matmul_probe()
    native = bool(hardware) and probe < 1
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    measured = f"a bf16 matrix product took {probe:.2f}x the fp32 time"
    if native:
        note = f"this CPU has {' and '.join(hardware)}: bf16 matrix products run natively ({measured})"
    elif hardware:
        held = f" (ONEDNN_MAX_CPU_ISA={isa})" if isa else ""
        note = (
            f"this CPU has {' and '.join(hardware)} but oneDNN does not use them{held}: bf16 is emulated ({measured})"
        )
    else:
        note = f"this CPU lacks AVX-512-BF16 and AMX: bf16 is emulated, expect it slower than fp32 ({measured})"
    return {
        "native_bf16": native,
        "note": note,
        "probe_ratio": probe,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": isa,
    }


# ----------------------------------------------------------------------------------------------- stages


def connector_row(args) -> dict:
    torch.manual_seed(0)
    fp32 = MultiResolutionConnector(ConnectorConfig(), DV, Q, DW, DB, E).eval()
    bf16 = MultiResolutionConnector(ConnectorConfig(), DV, Q, DW, DB, E).eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16.to(torch.bfloat16)
    f32 = features(args.clips, CPU, torch.float32)
    f16 = features(args.clips, CPU, torch.bfloat16)
    for name in ("visual", "whisper", "beats", "modality_mask"):  # the same inputs, rounded to bf16
        getattr(f16, name).copy_(getattr(f32, name))
    with torch.no_grad():
        err = rel_l2(bf16(f16).embeds, fp32(f32).embeds)
        times = interleaved({"bf16": lambda: bf16(f16), "fp32": lambda: fp32(f32)}, args.repeats, CPU)
    compared = "connector, real dims, 30-s clips: bfloat16 vs float32 (ours both)"
    return bf16_row(compared, times, "s/clip", per=args.clips, rel_error=err)


def clip_inputs(args) -> dict[str, torch.Tensor]:
    """`--frames` frames of the clip (repeated if it has fewer) and one 30-s chunk of its audio (repeated to 30 s):
    CLIP-normalised (F, 3, 224, 224), Whisper log-mel (1, 80, 3000), BEATs fbank (1, 2998, 128)."""
    clip = load_clip(MediaConfig(), video=str(args.clip))
    frames = clip.frames[torch.arange(args.frames) % len(clip.frames)]
    samples = clip.waveform.repeat(-(-WHISPER_CHUNK_SAMPLES // clip.waveform.numel()))[:WHISPER_CHUNK_SAMPLES]
    audio = audio_features(samples, chunk_padding=False)
    return {"frames": frames, "mel": audio.mel[:1], "fbank": audio.fbank[0][None]}


def encoder_rows(args, names: list[str]) -> list[dict]:
    enc = ModelConfig.from_name(REAL).encoders
    n = args.encoder_layers
    x = clip_inputs(args)
    rows = []
    if "vision" in names:
        qf = enc.image_qformer
        torch.manual_seed(0)
        tower = VisualEncoder(dataclasses.replace(enc.eva, depth=min(n, enc.eva.depth)), qf)
        ids = torch.randint(qf.vocab_size, (args.frames, INSTRUCTION_TOKENS))
        compared = (
            f"vision tower, 13B dims, EVA-ViT-g {min(n, enc.eva.depth)}/{enc.eva.depth} blocks + image Q-Former "
            f"{qf.depth}/{qf.depth}, {args.frames} frames of {args.clip.name}: bfloat16 vs float32"
        )
        rows.append(run_pair(compared, pair(tower), (x["frames"], ids, torch.ones_like(ids)), args))
        del tower
    if "whisper" in names:
        torch.manual_seed(0)
        tower = WhisperAudioEncoder(dataclasses.replace(enc.whisper, depth=min(n, enc.whisper.depth)))
        compared = (
            f"Whisper-large-v2 encoder, {min(n, enc.whisper.depth)}/{enc.whisper.depth} layers, one 30-s chunk: "
            "bfloat16 vs float32"
        )
        rows.append(run_pair(compared, pair(tower), (x["mel"],), args))
        del tower
    if "beats" in names:
        torch.manual_seed(0)
        tower = BEATs(dataclasses.replace(enc.beats, depth=min(n, enc.beats.depth)))
        compared = f"BEATs, {min(n, enc.beats.depth)}/{enc.beats.depth} layers, one 30-s chunk: bfloat16 vs float32"
        rows.append(run_pair(compared, pair(tower), (x["fbank"],), args))
        del tower
    gc.collect()
    return rows


def llm_rows(args) -> list[dict]:
    full = ModelConfig.from_name(REAL).llm
    cfg = dataclasses.replace(full, depth=min(args.llm_layers, full.depth))
    torch.manual_seed(0)
    fp32 = LanguageModel.build(cfg).eval()
    lms = {"bf16": bf16_copy(fp32).cast(CPU, torch.bfloat16), "fp32": fp32}  # cast: RoPE stays fp32
    ids = torch.randint(3, cfg.vocab_size, (1, args.llm_prompt))
    mask = torch.ones_like(ids)
    last = torch.zeros_like(ids, dtype=torch.bool)
    last[:, -1] = True
    # EOS past the vocabulary: never generated, so both sides decode exactly --llm-tokens tokens
    gen = GenerationConfig(max_new_tokens=args.llm_tokens, num_beams=1, repetition_penalty=1.0)
    with torch.no_grad():
        embeds = {k: lm.embed(ids) for k, lm in lms.items()}
        logits = {k: lm(embeds[k], mask, keep=last) for k, lm in lms.items()}
        answers = {k: lm.generate(embeds[k], mask, gen, cfg.vocab_size, 0)[0].tolist() for k, lm in lms.items()}
        prefill = interleaved(
            {k: (lambda lm=lm, k=k: lm(embeds[k], mask, keep=last)) for k, lm in lms.items()}, args.repeats, CPU
        )
        decode = interleaved(
            {k: (lambda lm=lm, k=k: lm.generate(embeds[k], mask, gen, cfg.vocab_size, 0)) for k, lm in lms.items()},
            args.repeats,
            CPU,
        )
    err = rel_l2(logits["bf16"], logits["fp32"])
    shape = f"LLaMA, Vicuna-13B width, {cfg.depth}/{full.depth} layers, random weights"
    return [
        bf16_row(f"LLM prefill of {args.llm_prompt} tokens, {shape}: bfloat16 vs float32", prefill, "s", rel_error=err),
        bf16_row(
            f"LLM prefill {args.llm_prompt} + greedy {args.llm_tokens} tokens, {shape}: bfloat16 vs float32",
            decode,
            "s",
            rel_error=err,
            same_ids=answers["bf16"] == answers["fp32"],
            first_ids_equal=first_equal(answers["bf16"], answers["fp32"]),
        ),
    ]


# ----------------------------------------------------------------------------------------------- training


def parts_cached(preset: str) -> bool:
    """Every `parts:` weight of the preset is converted in the parts cache already (nothing would be built)."""
    w = ModelConfig.from_name(preset).weights
    refs = [v for v in dataclasses.asdict(w).values() if isinstance(v, str) and v.startswith("parts:")]
    for ref in refs:
        name = ref.removeprefix("parts:")
        part, source = PARTS[name], SOURCES[name]
        key = {"part": name, "converter": part.version, "sources": {f.path: f.sha256 for f in source.files}}
        if cache.read_marker(cache.entry_dir(cache.cache_root(), name, key), key) is None:
            return False
    return True


def train_row(args) -> dict:
    preset = args.train_preset
    if preset == "auto":
        preset = "mini" if parts_cached("mini") else "tiny"
    steps = args.train_steps
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            f"model.preset={preset}",
            "optim.warmup_steps=0",
            "log.progress=false",
            "data.num_workers=0",
            f"data.feature_cache={tmp}/features",
            "data.build_cache=true",
        ]

        def run(precision: str, name: str, n: int) -> list[dict]:
            over = [f"steps={n}", f"checkpoint.every={n}", f"log.every={n}", f"output_dir={tmp}/{name}"]
            cfg = load_train_config(TRAIN_CONFIG, common + over + [f"mixed_precision='{precision}'"])
            train(cfg)
            return read_metrics(cfg.output_dir)

        run("no", "warm-up", 1)  # builds the feature cache, warms the imports and parts
        metrics: dict[str, list[list[dict]]] = {"bf16": [], "no": []}
        for r in range(args.repeats):
            for precision in ("bf16", "no"):
                metrics[precision].append(run(precision, f"{precision}-{r}", steps))
    times = {p: statistics.median(m["step_time_s"] for ms in runs for m in ms[1:] or ms) for p, runs in metrics.items()}
    first = {p: runs[0][0]["loss"] for p, runs in metrics.items()}
    last = {p: runs[0][-1]["loss"] for p, runs in metrics.items()}
    compared = f"training step, {TRAIN_CONFIG.stem} with the {preset} preset, {steps} steps: mixed_precision bf16 vs no"
    return row(
        compared,
        times["bf16"],
        times["no"],
        "s/step",
        rel_error=abs(first["bf16"] - first["no"]) / abs(first["no"]),
        preset=preset,
        loss_first={"bf16": first["bf16"], "fp32": first["no"]},
        loss_last={"bf16": last["bf16"], "fp32": last["no"]},
        step_times={p: [[m["step_time_s"] for m in ms] for ms in runs] for p, runs in metrics.items()},
    )


# ----------------------------------------------------------------------------------------------- answers


def answer_row(args) -> dict:
    pipes = {k: Pipeline.from_pretrained("tiny", [f"dtype={d}"], device="cpu") for k, d in DTYPES.items()}
    request = Request("What happens in the video?", str(args.clip))
    clip = pipes["fp32"].load(request)
    gen = GenerationConfig(max_new_tokens=args.tokens, num_beams=1)
    answers, logits = {}, {}
    with torch.no_grad():
        for k, pipe in pipes.items():
            batch, _ = pipe.prepare([request], [clip])
            logits[k] = pipe.model(batch.to(CPU, getattr(torch, DTYPES[k]))).logits
            answers[k] = pipe.answer_batch([request], gen, clips=[clip])[0].token_ids
        times = interleaved(
            {k: (lambda p=p: p.answer_batch([request], gen, clips=[clip])) for k, p in pipes.items()}, args.repeats, CPU
        )
    compared = f"tiny answer, {args.clip.name}, greedy {args.tokens} tokens: bfloat16 vs float32"
    return bf16_row(
        compared,
        times,
        "s",
        rel_error=rel_l2(logits["bf16"], logits["fp32"]),
        same_ids=answers["bf16"] == answers["fp32"],
        first_ids_equal=first_equal(answers["bf16"], answers["fp32"]),
    )


def golden_rows(args) -> list[dict]:
    """The golden model in bf16 against the fp32 parity pipeline (unchanged), greedy 20 of each golden case."""
    golden = GoldenDir(args.golden)
    cfg = golden.config()
    bf16_cfg = dataclasses.replace(cfg, dtype="bfloat16")
    pipes = {
        "bf16": Pipeline(load_model(bf16_cfg, "cpu"), load_tokenizer(cfg.weights.llm), instruction_tokenizer_for(cfg)),
        "fp32": golden_pipeline(golden),
    }
    return [golden_case_row(golden, case, pipes, args) for case in golden.cases()]


def golden_case_row(golden: GoldenDir, case, pipes: dict[str, Pipeline], args) -> dict:
    gen = golden_runs(case, pipes["fp32"].cfg.llm.max_text_tokens)["greedy20"]
    request = case_request(golden, case)
    clip = pipes["fp32"].load(request)
    ids, logits = {}, {}
    with torch.no_grad():
        for k, pipe in pipes.items():
            batch, _ = pipe.prepare([request], [clip])
            logits[k] = pipe.model(batch.to(CPU, getattr(torch, DTYPES[k]))).logits
            ids[k] = pipe.answer_batch([request], gen, [clip])[0].token_ids
        times = interleaved(
            {k: (lambda p=p: p.answer_batch([request], gen, [clip])) for k, p in pipes.items()}, args.repeats, CPU
        )
    eos = pipes["fp32"].tokenizer.eos_id  # the official ids end with EOS when it came before the limit
    official = ids["fp32"] + ([eos] if len(ids["fp32"]) < gen.max_new_tokens else [])
    compared = f"golden tiny model ({golden.root.name}), case {case.name}, greedy {gen.max_new_tokens}: bf16 vs fp32"
    return bf16_row(
        compared,
        times,
        "s",
        rel_error=rel_l2(logits["bf16"], logits["fp32"]),
        same_ids=ids["bf16"] == ids["fp32"],
        first_ids_equal=first_equal(ids["bf16"], ids["fp32"]),
        fp32_is_official=official == case.expected["greedy20"]["ids"][0],
        ids=ids,
    )


# ----------------------------------------------------------------------------------------------- the report


def measure(args) -> dict:
    support = bf16_support()
    wanted = args.rows or list(ROWS)
    rows = []
    if "connector" in wanted:
        rows.append(connector_row(args))
    towers = [name for name in ("vision", "whisper", "beats") if name in wanted]
    if towers:
        rows += encoder_rows(args, towers)
    if "llm" in wanted:
        rows += llm_rows(args)
        gc.collect()
    if "train" in wanted:
        rows.append(train_row(args))
    if "answer" in wanted:
        rows.append(answer_row(args))
    if "golden" in wanted:
        rows += golden_rows(args)
    return result("bf16", rows, peak_rss_mb(), repeats=args.repeats, threads=torch.get_num_threads(), **support)


def report(r: dict) -> None:
    print(f"bfloat16 vs float32, {r['threads']} threads, {r['repeats']} interleaved runs each, medians")
    for x in r["rows"]:
        ids = f", greedy ids identical: {x['same_ids']} (first {x['first_ids_equal']})" if "same_ids" in x else ""
        if "fp32_is_official" in x:
            ids += f", fp32 ids = the official ones: {x['fp32_is_official']}"
        if "loss_first" in x:
            ids += f", first-step loss bf16 {x['loss_first']['bf16']:.6f} vs fp32 {x['loss_first']['fp32']:.6f}"
        cpu = f", {x['cpu_ratio']:.2f}x CPU" if "cpu_ratio" in x else ""
        print(
            f"{x['compared']}\n  bf16 {x['ours']:.3f} {x['unit']}, fp32 {x['baseline']:.3f} {x['unit']}: "
            f"{x['ratio']:.2f}x wall{cpu}; relative error vs fp32 {x['rel_error']:.2e}{ids}"
        )
    print(f"{r['note']}; peak RSS {r['peak_rss_mb']:.0f} MB; {describe(r['machine'])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=ROWS, help="run only these rows (default: all)")
    ap.add_argument("--clips", type=int, default=1, help="30-s clips per connector batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=20, help="greedy new tokens at most (tiny answer)")
    ap.add_argument("--clip", type=Path, default=DEMO)
    ap.add_argument("--encoder-layers", type=int, default=2, help="blocks of EVA-ViT-g, Whisper and BEATs each")
    ap.add_argument("--frames", type=int, default=4, help="frames through the vision tower")
    ap.add_argument("--llm-layers", type=int, default=2, help="decoder layers of the 13B-wide LLaMA")
    ap.add_argument("--llm-prompt", type=int, default=200, help="prompt tokens of the LLM rows")
    ap.add_argument("--llm-tokens", type=int, default=4, help="greedy tokens after the LLM prefill")
    ap.add_argument("--train-preset", choices=["tiny", "mini", "auto"], default="tiny", help="auto: mini if cached")
    ap.add_argument("--train-steps", type=int, default=3, help="steps per training run (the first not timed)")
    ap.add_argument("--golden", type=Path, default=GOLDEN, help="golden directory")
    add_json_flag(ap)
    args = ap.parse_args()
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
