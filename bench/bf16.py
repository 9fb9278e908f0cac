"""Benchmark: `dtype: bfloat16` against float32 on this CPU, the connector and the tiny end-to-end answer.

    python bench/bf16.py [--clips 1] [--repeats 3] [--tokens 20] [--clip PATH]

connector  our connector at the released dimensions (bench/connector.py's inputs), the same random weights cast to
           bfloat16 vs kept in float32; relative L2 error of the bf16 LLM embeddings against the fp32 ones
answer     the `tiny` preset (`Pipeline.from_pretrained("tiny", ["dtype=bfloat16"])` vs float32): the demo clip's
           frames and audio loaded once, then prompt + media encoding + greedy generation of `--tokens` tokens;
           relative L2 error of the prompt's logits (teacher-forced forward) and whether the greedy ids are the same

Each pair runs alternately (A B A B ...), after one warm-up each; medians. bf16 matrix products are fast on a CPU
only with AVX-512-BF16 or AMX (/proc/cpuinfo flags avx512_bf16, amx_bf16); without them PyTorch converts to fp32
and bf16 is usually slower: the report says which this CPU has. `--json` prints the result as one JSON object
(what `bench/all.py` reads), with this process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import add_json_flag, cpu_flags, describe, emit, peak_rss_mb, result, row
from connector import DB, DV, DW, E, Q, features, interleaved

from videosalmonn.config import ConnectorConfig, GenerationConfig
from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.pipeline import Pipeline
from videosalmonn.types import Request

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "media" / "4405327307.mp4"
CPU = torch.device("cpu")


def rel_l2(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.float() - ref.float()).norm() / ref.float().norm()).item()


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
    (w16, c16), (w32, c32) = times["bf16"], times["fp32"]
    compared = "connector, real dims, 30-s clips: bfloat16 vs float32 (ours both)"
    return row(compared, w16 / args.clips, w32 / args.clips, "s/clip", cpu_ratio=c32 / c16, rel_error=err)


def answer_row(args) -> dict:
    pipes = {d: Pipeline.from_pretrained("tiny", [f"dtype={d}"], device="cpu") for d in ("bfloat16", "float32")}
    request = Request("What happens in the video?", str(args.clip))
    clip = pipes["float32"].load(request)
    gen = GenerationConfig(max_new_tokens=args.tokens, num_beams=1)
    answers, logits = {}, {}
    with torch.no_grad():
        for d, pipe in pipes.items():
            batch, _ = pipe.prepare([request], [clip])
            logits[d] = pipe.model(batch.to(CPU, getattr(torch, d))).logits
            answers[d] = pipe.answer_batch([request], gen, clips=[clip])[0].token_ids
        times = interleaved(
            {d: (lambda p=p: p.answer_batch([request], gen, clips=[clip])) for d, p in pipes.items()}, args.repeats, CPU
        )
    same = answers["bfloat16"] == answers["float32"]
    agree = next((i for i, (a, b) in enumerate(zip(*answers.values())) if a != b), min(map(len, answers.values())))
    compared = f"tiny answer, {args.clip.name}, greedy {args.tokens} tokens: bfloat16 vs float32"
    return row(
        compared,
        times["bfloat16"][0],
        times["float32"][0],
        "s",
        cpu_ratio=times["float32"][1] / times["bfloat16"][1],
        rel_error=rel_l2(logits["bfloat16"], logits["float32"]),
        same_ids=same,
        first_ids_equal=agree,
    )


def measure(args) -> dict:
    flags = cpu_flags()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    note = (
        "this CPU has " + " and ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags)
        if native
        else "this CPU lacks AVX-512-BF16 and AMX: bf16 matrix products are emulated, expect no speed-up"
    )
    rows = [connector_row(args), answer_row(args)]
    return result("bf16", rows, peak_rss_mb(), native_bf16=native, note=note, repeats=args.repeats)


def report(r: dict) -> None:
    print(f"bfloat16 vs float32, {torch.get_num_threads()} threads, {r['repeats']} interleaved runs each, medians")
    for x in r["rows"]:
        ids = f", greedy ids identical: {x['same_ids']} (first {x['first_ids_equal']})" if "same_ids" in x else ""
        print(
            f"{x['compared']}\n  bf16 {x['ours']:.3f} {x['unit']}, fp32 {x['baseline']:.3f} {x['unit']}: "
            f"{x['ratio']:.2f}x wall, {x['cpu_ratio']:.2f}x CPU; relative L2 error vs fp32 {x['rel_error']:.2e}{ids}"
        )
    print(f"{r['note']}; peak RSS {r['peak_rss_mb']:.0f} MB; {describe(r['machine'])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1, help="30-s clips per connector batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=20, help="greedy new tokens at most")
    ap.add_argument("--clip", type=Path, default=DEMO)
    add_json_flag(ap)
    args = ap.parse_args()
    emit(args, measure(args), report)


if __name__ == "__main__":
    main()
