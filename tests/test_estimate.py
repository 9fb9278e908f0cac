"""`videosalmonn estimate`: parameter counts against the models themselves, int8 bytes against an int8 model, the KV
cache against the one generate builds, and the peaks against ones measured in a child process (VmHWM)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from videosalmonn import estimate as est
from videosalmonn.checkpoint import load_model
from videosalmonn.config import ModelConfig
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.model import VideoSalmonn

TINY = ModelConfig.from_name("tiny")


def test_parameter_counts_are_the_models():
    counts = est.parameter_counts(TINY).counts
    model = VideoSalmonn.from_config(TINY)  # built for real
    for component in est.COMPONENTS:
        own = sum(p.numel() for n, p in model.named_parameters() if est._component(n) == component)
        assert counts[component] == own > 0, component
    big = est.parameter_counts(ModelConfig.from_name("video-salmonn-13b"))
    assert big.counts["llm"] == 13_015_864_320  # Vicuna-13B / Llama-2-13B
    assert big.counts["lora"] == 40 * 4 * 2 * 32 * 5120
    assert big.llm_quantised == 40 * (4 * 5120 * 5120 + 3 * 5120 * 13824)
    assert 15.0e9 < sum(big.counts.values()) < 15.1e9


def test_int8_weights_are_what_the_int8_model_stores():
    model = load_model(TINY.replace("llm.quantization=int8"), "cpu")
    stored = {n: t for n, t in model.llm.named_parameters() if ".lora_" not in n}
    stored |= {n: t for n, t in model.llm.named_buffers() if n.endswith("weight_scale")}
    weights = est.weight_bytes(est.parameter_counts(TINY), "int8", 4)
    assert weights["llm"] == sum(t.numel() * t.element_size() for t in stored.values())
    assert weights["vision"] == 4 * sum(p.numel() for p in model.encoder.vision.parameters())


@pytest.mark.parametrize("beams", [1, 3])
def test_kv_cache_is_the_cache_generate_builds(beams):
    from transformers import GenerationConfig

    e = est.estimate(TINY, 2.0, beams, text_tokens=7, new_tokens=5, device="cpu")
    prompt = e.tokens["text"] + e.tokens["media"]
    lm = LanguageModel.build(TINY.llm).eval()
    hf = GenerationConfig(
        max_new_tokens=5, min_new_tokens=5, num_beams=beams, do_sample=False, eos_token_id=2, pad_token_id=0
    )
    hf.return_dict_in_generate = True
    out = lm.model.generate(inputs_embeds=torch.randn(1, prompt, lm.width), generation_config=hf)
    kv = out.cache if hasattr(out, "cache") else out.past_key_values  # `cache` from transformers 5.24
    cache = sum(t.numel() * t.element_size() for layer in kv.layers for t in (layer.keys, layer.values))
    assert kv.layers[0].keys.shape[0] == beams
    assert cache * (prompt + 5) == e.kv_cache * (prompt + 5 - 1)  # the last token generated is never fed back


CHILD = """
import json, sys
from pathlib import Path
import torch
from videosalmonn.config import GenerationConfig
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.types import Coverage, MediaClip

def hwm():
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(x.split()[1]) * 1024 for x in lines if x.startswith("VmHWM:"))

overrides, seconds, beams = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
h0 = hwm()
pipe = Pipeline.from_pretrained("tiny", overrides, device="cpu")
h1 = hwm()
g, frames, s = torch.Generator().manual_seed(0), int(seconds * 2), pipe.cfg.media.image_size
clip = MediaClip(torch.randn(frames, 3, s, s, generator=g), False, torch.randn(int(seconds * 16000), generator=g) / 10,
                 Coverage(frames=frames, audio_present=True))
h2 = hwm()
gen = GenerationConfig(max_new_tokens=16, num_beams=beams, repetition_penalty=1.0)
answer = pipe.answer_batch([Request("Describe the video")], gen, [clip])[0]
print(json.dumps({"load": h1 - h0, "answer": hwm() - h2, "media_tokens": answer.media_tokens}))
"""
# A tiny model made big enough to measure (small frames; a wide, many-headed LLM), in a fresh process
MEASURED = ["media.image_size=28", "llm.width=512", "llm.depth=8", "llm.mlp_width=1024"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, seconds, beams, stage",
    [
        (["encoders.beats.num_heads=32"], 150, 1, "beats"),  # 5 chunks of 30 s, one per BEATs call
        (["media.limits=official", "llm.num_heads=256", "llm.num_kv_heads=256"], 60, 2, "llm prefill"),
    ],
)
def test_peaks_match_the_ones_measured(overrides, seconds, beams, stage):
    """Measured (fp32, CPU): BEATs-bound (32 heads, one 30-s chunk a call) 1170 MB vs 1111 MB estimated,
    prefill-bound (2 beams) 776 vs 922 MB."""
    cfg = TINY.replace(*MEASURED, *overrides)
    e = est.estimate(cfg, seconds, beams, text_tokens=20, new_tokens=16, device="cpu")
    run = [sys.executable, "-c", CHILD, json.dumps(MEASURED + overrides), str(seconds), str(beams)]
    out = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert measured["media_tokens"] == e.tokens["media"]
    assert e.peak_stage == stage
    answer = e.media + max(e.activations.values())
    assert 0.7 < measured["answer"] / answer < 1.3, (measured, answer)
    assert 0.7 < measured["load"] / e.weights_total < 1.5, (measured, e.weights_total)  # + HF/peft objects


def test_estimate_command_prints_the_table(capsys):
    parser = argparse.ArgumentParser()
    est.register(parser.add_subparsers())
    args = parser.parse_args(
        ["estimate", "--model", "tiny", "--seconds", "30", "300", "--quantization", "none", "int8"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "fp32, 30 s" in out and "int8, 5 min" in out and "GPU peak" in out and "host RAM at load" in out
