"""One command for a GPU machine: the official check on CUDA in fp32, then the 13B preset at real dimensions
(random weights) answering about a 30-s clip in fp16, int8 and nf4: peak GPU memory, seconds per stage, tokens/s.

    .venv/bin/python bench/gpu.py [--golden DIR] [--llm-depth 8] [--seconds 30] [--new-tokens 64]
                                  [--quantization none int8 nf4] [--skip-official] [--keep DIR] [--json]

1. Official check on CUDA (fp32, TF32 off): the golden directory's cases through the public path on the GPU
   (`Pipeline.load` / `prepare` / `answer_batch`, stages read by `official/parity.py`'s own hooks and compared by
   its own Report with its tolerances: every generated id of every recorded run, encoder, connector and LLM-input
   stages, the greedy-path logits). Its isolated stages and the training forward are not run here: parity's
   checker feeds CPU tensors to them.
2. Random weights of the 13B preset in the real layouts (`load_memory.write_checkpoints`: HF InstructBLIP and
   Whisper safetensors, the official BEATs .pt, a delta; the LLM as fp16 safetensors shards with `--llm-depth` of
   its 40 layers), and a `--seconds` clip (2-fps lossless video + a WAV) written to a temp dir.
3. For each `--quantization`, in a fresh process: load (`Pipeline.from_pretrained`, cuda), then one question with
   greedy decoding of `--new-tokens`: seconds and peak GPU memory (torch.cuda.max_memory_allocated) of each stage:
   decode (media files -> frames, log-mel, fbank), encoders, connector, prefill (one LLM forward over the prompt),
   generate (prefill + the new tokens); tokens/s = new tokens / (generate - prefill). Each row is compared with
   `videosalmonn estimate` at the same depth.

Extrapolation to the 13B's 40 layers (printed beside the measured depth): weights of one decoder layer (measured
on the loaded model: its tensors' bytes) and its KV cache (2 x 40 heads x 128 x 2 bytes per token) times the
missing layers are added to the peak; LLM seconds (prefill, per-token decoding) scale by 40 / depth, an upper
bound (the embeddings and LM head do not repeat). Needs bitsandbytes for int8 on CUDA (else our weight-only int8)
and for nf4 (else that row says why).

Status: written on a CPU-only machine and never run on a GPU. Without CUDA it prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_json_flag, children_peak_rss_mb, emit, peak_rss_mb, result, row

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("VIDEOSALMONN_SHARED", ROOT.parent / "shared")) / "golden" / "official_v1"
MODEL = "video-salmonn-13b"
FULL_DEPTH = 40  # Vicuna-13B's decoder layers
QUESTION = "Describe the video together with the audio in detail."
NO_CUDA = "bench/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine (nothing measured)"
GIB = 2**30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", default=str(GOLDEN), help="golden directory for the official check")
    parser.add_argument("--skip-official", action="store_true", help="do not run the official check")
    parser.add_argument("--llm-depth", type=int, default=8, help=f"LLM layers written and loaded (of {FULL_DEPTH})")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the clip asked about")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated (greedy)")
    parser.add_argument("--quantization", nargs="+", default=["none", "int8", "nf4"], choices=["none", "int8", "nf4"])
    parser.add_argument("--shard-gb", type=float, default=5.0, help="largest weight shard written")
    parser.add_argument("--keep", help="write weights and clip here and keep them (default: a temporary folder)")
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "QUANTIZATION"), help=argparse.SUPPRESS)
    # the CPU smoke run of tests/test_gpu_bench.py: the whole driver with the tiny preset on the CPU
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=MODEL, help=argparse.SUPPRESS)
    add_json_flag(parser)
    args = parser.parse_args(argv)
    if args.llm_depth < 1 or args.llm_depth > FULL_DEPTH or args.seconds <= 0 or args.new_tokens < 1:
        parser.error(f"--llm-depth must be 1..{FULL_DEPTH}, --seconds and --new-tokens positive")
    return args


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ------------------------------------------------------------------------------------------ 1. official check


def check_official_on(device: str, root: str | Path) -> dict:
    """The golden cases' end-to-end stages with the model on `device` (fp32), judged by parity's own Report."""
    import torch

    from videosalmonn.checkpoint import load_model
    from videosalmonn.llm.tokenizer import load_tokenizer
    from videosalmonn.official import parity
    from videosalmonn.official.golden import GoldenDir
    from videosalmonn.pipeline import Pipeline
    from videosalmonn.prompting.instruction import instruction_tokenizer_for

    class CPUReport(parity.Report):  # stages come off the device; golden tensors are on the CPU
        def float(self, key, ours, golden, *args, **kwargs):
            super().float(key, ours.detach().cpu(), golden.cpu(), *args, **kwargs)

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # golden README §2: the fp32 numbers, not TF32's
        torch.backends.cudnn.allow_tf32 = False
    golden = GoldenDir(root)
    cfg = golden.config()
    pipe = Pipeline(load_model(cfg, device), load_tokenizer(cfg.weights.llm), instruction_tokenizer_for(cfg))
    checker = parity._Checker(golden, pipe)  # its generation stages; isolated ones feed CPU tensors
    checker.report = CPUReport()
    start = time.perf_counter()
    for case in golden.cases():
        request = parity.case_request(golden, case)
        if request.video is not None:
            checker.decoded_frames(case, request.video)
        clip = pipe.load(request)
        batch, _ = pipe.prepare([request], [clip])
        with torch.no_grad():
            checker.generation(case, request, clip, batch)
    report = checker.report
    floats = [v for k, v in report.values.items() if "_ids/" not in k and "_text/" not in k]
    return {
        "device": device,
        "stages": len(report.values),
        "failed": report.failed,
        "max_float_error": max(floats) if floats else None,
        "seconds": time.perf_counter() - start,
        "values": report.values,
    }


# ------------------------------------------------------------------------------------------ 2. inputs


def write_clip(folder: Path, seconds: float, size: tuple[int, int] = (640, 360)) -> tuple[Path, Path]:
    """A `seconds`-long 2-fps lossless video of moving noise and a 16-kHz WAV of a chirp (the request's inputs)."""
    import numpy as np
    from PIL import Image

    from videosalmonn.media.writing import FRAME_RATE, write_frames_video, write_wav

    folder.mkdir(parents=True, exist_ok=True)
    video, audio = folder / "clip.mkv", folder / "clip.wav"
    rng = np.random.default_rng(0)
    frames = int(seconds * FRAME_RATE)
    images = (Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(frames))
    write_frames_video(images, video)
    t = np.arange(int(seconds * 16000)) / 16000
    write_wav(audio, 0.3 * np.sin(2 * np.pi * (200 + 40 * t) * t), 16000)
    return video, audio


def write_tokenizers(root: Path, model: str = MODEL) -> None:
    """Tokenizers where the real repos keep them: the packaged tiny SentencePiece one in `vicuna/` (its ids are
    valid in any larger vocabulary) and a BERT WordPiece vocabulary of the Q-Former's size (less [DEC]) in
    `instructblip/qformer_tokenizer/` (the tiny vocabulary padded with filler words)."""
    from importlib import resources

    from transformers import BertTokenizer, LlamaTokenizer

    from videosalmonn.config import ModelConfig

    packaged = resources.files("videosalmonn.presets") / "tiny"
    LlamaTokenizer.from_pretrained(str(packaged / "llm")).save_pretrained(str(root / "vicuna"))
    words = (packaged / "bert" / "vocab.txt").read_text().splitlines()
    size = ModelConfig.from_name(model).encoders.image_qformer.vocab_size - 1  # the loader adds [DEC]
    vocab = root / "bert-vocab" / "vocab.txt"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(words + [f"w{i}" for i in range(size - len(words))]) + "\n")
    BertTokenizer.from_pretrained(str(vocab.parent)).save_pretrained(str(root / "instructblip" / "qformer_tokenizer"))


def write_inputs(root: Path, args: argparse.Namespace, model: str = MODEL) -> dict:
    """Weights (LLM as safetensors) and the clip under `root`, once (a `--keep` folder is reused)."""
    from load_memory import write_checkpoints

    done = root / "sizes.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    sizes = write_checkpoints(root, args.llm_depth, int(args.shard_gb * 1e9), model=model, llm_format="safetensors")
    write_tokenizers(root, model)
    write_clip(root / "clip", args.seconds)
    info = {"sizes": sizes, "written_s": time.perf_counter() - start}
    done.write_text(json.dumps(info))
    return info


# ------------------------------------------------------------------------------------------ 3. one quantisation


def measure_one(root: Path, quantization: str, depth: int, new_tokens: int, device: str, model: str = MODEL) -> dict:
    """Load the preset from `root`'s weights on `device`, answer one question about the clip: per-stage seconds
    and (CUDA) peak memory, tokens/s, and what one decoder layer weighs (for the extrapolation)."""
    import torch
    from load_memory import weight_overrides

    from videosalmonn.config import GenerationConfig
    from videosalmonn.model import DTYPES
    from videosalmonn.pipeline import Pipeline, Request

    cuda = device.startswith("cuda")
    stages: dict[str, dict] = {}

    @contextlib.contextmanager
    def stage(name: str):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        yield
        if cuda:
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() if cuda else None
        stages[name] = {"seconds": time.perf_counter() - start, "peak_bytes": peak}

    overrides = [*weight_overrides(root), f"llm.depth={depth}", f"llm.quantization={quantization}"]
    with stage("load"):
        pipe = Pipeline.from_pretrained(model, overrides, device=device)
    resident = torch.cuda.memory_allocated() if cuda else None
    cfg, m = pipe.cfg, pipe.model
    request = Request(QUESTION, video=str(root / "clip" / "clip.mkv"), audio=str(root / "clip" / "clip.wav"))
    gen = GenerationConfig(max_new_tokens=new_tokens, num_beams=1, repetition_penalty=1.0)
    with torch.no_grad():
        with stage("decode"):
            clip = pipe.load(request)
            batch, _ = pipe.prepare([request], [clip])
        batch = batch.to(pipe.device, DTYPES[cfg.dtype])
        with stage("encoders"):
            features = m.encoder(batch.media)
        with stage("connector"):
            media = m.connector(features)
        mask = batch.prompt.attention_mask
        with stage("prefill"):
            embeds = m.embed(batch.prompt, media)
            m.llm(embeds, mask, keep=mask.bool() & (mask.cumsum(-1) == mask.sum(-1, keepdim=True)))  # last row only
        with stage("generate"):
            ids = m.llm.generate(embeds, mask, gen, pipe.tokenizer.eos_id, pipe.tokenizer.pad_id)
    generated = int(ids.shape[1])
    decoding = stages["generate"]["seconds"] - stages["prefill"]["seconds"]
    layer = [t for n, t in [*m.llm.named_parameters(), *m.llm.named_buffers()] if ".layers.0." in n]
    return {
        "quantization": quantization,
        "backend": m.llm.quantized,
        "depth": depth,
        "stages": stages,
        "resident_bytes": resident,
        "prompt_tokens": int(mask.sum()),
        "media_tokens": int(media.lengths.sum()),
        "new_tokens": generated,
        "tokens_per_s": generated / decoding if decoding > 0 else None,
        "layer_bytes": sum(t.numel() * t.element_size() for t in layer),
        "kv_bytes_per_token_per_layer": 2 * cfg.llm.num_kv_heads * (cfg.llm.width // cfg.llm.num_heads) * 2,
    }


def extrapolate(run: dict, full_depth: int = FULL_DEPTH) -> dict:
    """The 40-layer figures of a run at `run['depth']` layers (see the module doc: linear in the missing layers)."""
    missing = full_depth - run["depth"]
    tokens = run["prompt_tokens"] + run["new_tokens"]
    extra = missing * (run["layer_bytes"] + run["kv_bytes_per_token_per_layer"] * tokens)
    peak = gpu_peak(run)
    scale = full_depth / run["depth"]
    return {
        "peak_bytes": None if peak is None else peak + extra,
        "prefill_s": run["stages"]["prefill"]["seconds"] * scale,
        "tokens_per_s": run["tokens_per_s"] / scale if run["tokens_per_s"] else None,
    }


def gpu_peak(run: dict) -> int | None:
    """The largest per-stage peak of a run (None off CUDA)."""
    peaks = [s["peak_bytes"] for s in run["stages"].values() if s["peak_bytes"] is not None]
    return max(peaks) if peaks else None


def estimated_peak(model: str, quantization: str, depth: int, seconds: float, new_tokens: int, text: int) -> int:
    """`videosalmonn estimate`'s GPU peak for the same question (greedy)."""
    from videosalmonn.config import ModelConfig
    from videosalmonn.estimate import estimate

    cfg = ModelConfig.from_name(model, [f"llm.depth={depth}", f"llm.quantization={quantization}"])
    return estimate(cfg, seconds, 1, text_tokens=text, new_tokens=new_tokens).gpu_peak


def run_child(root: Path, quantization: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--child", str(root), quantization]
    cmd += ["--llm-depth", str(args.llm_depth), "--new-tokens", str(args.new_tokens), "--seconds", str(args.seconds)]
    cmd += ["--device", args.device, "--model", args.model]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        return {"quantization": quantization, "error": lines[-1] if lines else f"exit code {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ driver


def measure(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    official = None
    if not args.skip_official:
        try:
            official = check_official_on(args.device, args.golden)
        except Exception as e:  # the GPU rows below are still worth having
            official = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / f"{args.model}-depth{args.llm_depth}-{args.seconds:g}s"
        inputs = write_inputs(root, args, args.model)
        runs = [run_child(root, q, args) for q in args.quantization]
    rows = []
    for r in runs:
        if "error" in r:
            continue
        r["at_40_layers"] = extrapolate(r)
        text = r["prompt_tokens"] - r["media_tokens"]
        r["estimated_peak_bytes"] = estimated_peak(
            args.model, r["quantization"], r["depth"], args.seconds, r["new_tokens"], text
        )
        peak = gpu_peak(r)
        if peak is not None:
            what = f"{args.model} ({r['depth']} LLM layers, {r['quantization']}), {args.seconds:g}-s clip: GPU peak"
            rows.append(row(f"{what} vs `videosalmonn estimate`", peak / GIB, r["estimated_peak_bytes"] / GIB, "GiB"))
    import torch

    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    settings = {"llm_depth": args.llm_depth, "seconds": args.seconds, "new_tokens": args.new_tokens}
    settings |= {"model": args.model, "device": args.device}
    host = max(peak_rss_mb(), children_peak_rss_mb())
    return result("gpu", rows, host, gpu=gpu, official=official, runs=runs, inputs=inputs, **settings)


def report(r: dict) -> None:
    print(f"GPU: {r['gpu'] or 'none (' + r['device'] + ')'}")
    o = r["official"]
    if o is None:
        print("official check: skipped")
    elif "error" in o:
        print(f"official check: could not run ({o['error']})")
    else:
        verdict = "OK" if not o["failed"] else f"FAILED ({len(o['failed'])}): " + "; ".join(o["failed"][:3])
        print(
            f"official check on {o['device']} (fp32, end-to-end stages): {o['stages']} stages, "
            f"max float error {o['max_float_error']:.2g}, {o['seconds']:.0f} s: {verdict}"
        )
    print(f"\n{r['model']}, LLM {r['llm_depth']} layers, {r['seconds']:g}-s clip, greedy {r['new_tokens']} tokens")
    names = ["load", "decode", "encoders", "connector", "prefill", "generate"]
    print(f"{'':14s}" + "".join(f"{n:>10s}" for n in names) + f"{'peak':>9s}{'tok/s':>8s}   at 40 layers")
    for x in r["runs"]:
        if "error" in x:
            print(f"{x['quantization']:14s} not measured: {x['error']}")
            continue
        s, full, peak = x["stages"], x["at_40_layers"], gpu_peak(x)
        tps = f"{x['tokens_per_s']:8.1f}" if x["tokens_per_s"] else f"{'-':>8s}"
        full_tps = f"{full['tokens_per_s']:.1f} tok/s" if full["tokens_per_s"] else "-"
        full_peak = "-" if full["peak_bytes"] is None else f"{full['peak_bytes'] / GIB:.1f} G"
        print(
            f"{x['quantization'] + ' (' + x['backend'] + ')':14s}"
            + "".join(f"{s[n]['seconds']:9.2f}s" for n in names)
            + ("      - " if peak is None else f"{peak / GIB:7.2f} G")
            + f"{tps}   {full_peak}, prefill {full['prefill_s']:.2f} s, {full_tps}"
        )
        print(f"{'':14s}estimate at {x['depth']} layers: {x['estimated_peak_bytes'] / GIB:.2f} G")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        sys.path.insert(0, str(ROOT))
        root, quantization = args.child
        run = measure_one(Path(root), quantization, args.llm_depth, args.new_tokens, args.device, args.model)
        print(json.dumps(run))
        return 0
    if args.device.startswith("cuda") and not cuda_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    emit(args, measure(args), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
