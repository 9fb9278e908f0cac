"""Fitting smaller machines: the weight-only int8 LLM (runs on CPU), nf4 refused without bitsandbytes, SDPA
attention equal to eager. Measured on the tiny model (fp32, CPU): int8 logits within 2.2 % of the largest |logit|
with 97.6 % of the argmaxes unchanged; SDPA within 3e-5 of eager."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_real_layouts import tiny_llama

from videosalmonn.checkpoint import load_model
from videosalmonn.config import GenerationConfig, ModelConfig
from videosalmonn.errors import CheckpointError, ConfigError
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.llm.quantization import Int8Linear, backend, quantize_int8, quantized_linear_names
from videosalmonn.model import trainable_names
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.types import Coverage, MediaClip

TINY = ModelConfig.from_name("tiny", ["llm.lora.dropout=0.0"])
GREEDY = GenerationConfig(max_new_tokens=6, num_beams=1, repetition_penalty=1.0)


def clip(frames: int, seconds: float, seed: int) -> MediaClip:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(frames, 3, 224, 224, generator=g) if frames else None
    w = torch.randn(int(seconds * 16000), generator=g) * 0.1 if seconds else None
    return MediaClip(f, False, w, Coverage(frames=frames, audio_present=bool(seconds)))


REQUESTS = [Request("Describe the video", answer="A man sings."), Request("What do you hear in it?", answer="Music.")]
CLIPS = [clip(4, 2.0, 1), clip(0, 3.0, 2)]  # different lengths: the batch is padded


@pytest.fixture(scope="module")
def tokenizers():
    p = Pipeline.from_pretrained("tiny", device="cpu")
    return p.tokenizer, p.instruction_tokenizer


@pytest.fixture(scope="module")
def fp32(tokenizers):
    return run([], tokenizers)


def run(overrides: list[str], tokenizers, side: str = "left"):
    """(logits (B, L, V), attention mask (B, L) bool, greedy answers, model) of the tiny model with `overrides`."""
    model = load_model(TINY.replace(*overrides), "cpu").eval()
    pipe = Pipeline(model, *tokenizers)
    batch, _ = pipe.prepare(REQUESTS, CLIPS, side=side)
    with torch.no_grad():
        logits = model(batch).logits
    answers = [a.token_ids for a in pipe.answer_batch([Request(r.prompt) for r in REQUESTS], GREEDY, CLIPS)]
    return logits, batch.prompt.attention_mask.bool(), answers, model


# ------------------------------------------------------------------------------------------------ int8


@pytest.mark.parametrize("rows, dtype", [(1, torch.float32), (7, torch.float32), (7, torch.bfloat16)])
def test_int8_linear_is_within_its_rounding_bound(rows, dtype):
    """|W - q s| <= s/2 per weight, so each output is off by at most (s/2) * sum|x| (+ the dtype's rounding)."""
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(96, 40, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(40, 96, generator=g) * torch.rand(40, 1, generator=g))
        linear.weight[3] = 0.0  # an all-zero row
    q = Int8Linear.from_linear(linear)
    assert q.weight.dtype == torch.int8 and not q.weight.requires_grad and q.weight_scale.shape == (40,)
    x = torch.randn(rows, 96, generator=g)
    with torch.no_grad():
        ref = linear(x)
        out = q(x.to(dtype)).float()
    bound = q.weight_scale[None] / 2 * x.abs().sum(-1, keepdim=True)  # (rows, 40)
    slack = 1e-5 if dtype == torch.float32 else 1e-2 * ref.abs().max()
    assert ((out - ref).abs() <= bound + slack).all()
    assert torch.equal(out[:, 3], linear.bias[3].expand(rows).to(dtype).float())
    w, s = quantize_int8(linear.weight)
    assert ((w.float() * s[:, None] - linear.weight).abs() <= s[:, None] / 2 + 1e-7).all()


@pytest.mark.slow
def test_int8_tiny_model_is_close_to_fp32(tokenizers, fp32):
    ref, mask, _, _ = fp32
    out, _, answers, model = run(["llm.quantization=int8"], tokenizers)
    int8 = [m for m in model.llm.modules() if isinstance(m, Int8Linear)]  # under LoRA too (q, k, v, o)
    assert len(int8) == TINY.llm.depth * 7 and all(m.weight.dtype == torch.int8 for m in int8)
    err = (out - ref)[mask].abs().max() / ref[mask].abs().max()
    agree = (out.argmax(-1) == ref.argmax(-1))[mask].float().mean()
    assert err < 0.05 and agree > 0.9, (err, agree)  # measured: 0.022, 0.976
    assert all(len(a) > 0 for a in answers)


@pytest.mark.slow
def test_lora_trains_on_top_of_int8(tokenizers):
    model = load_model(TINY.replace("llm.quantization=int8"), "cpu").train()
    batch, _ = Pipeline(model, *tokenizers).prepare(REQUESTS, CLIPS, side="right")
    loss = model(batch).loss
    loss.backward()
    lora = [n for n in trainable_names(model) if ".lora_" in n]
    assert lora and all(dict(model.named_parameters())[n].grad is not None for n in lora)
    assert all(p.grad is None for n, p in model.named_parameters() if p.dtype == torch.int8)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    opt.step()
    assert model(batch).loss < loss
    with pytest.raises(CheckpointError, match="quantised .*llm.quantization=none"):
        model.llm.merge_lora()


def test_int8_checkpoint_loads_quantised_as_it_arrives(tmp_path):
    """The shard-by-shard int8 load equals quantising the fp32 model afterwards, bit for bit."""
    tiny_llama().save_pretrained(str(tmp_path / "llm"))
    cfg = dataclasses.replace(TINY.llm, lora=None)
    plain = LanguageModel.build(cfg, str(tmp_path / "llm"))
    int8 = LanguageModel.build(dataclasses.replace(cfg, quantization="int8"), str(tmp_path / "llm"))
    assert int8.quantized == "int8"
    for name in quantized_linear_names(plain.model):
        q, s = quantize_int8(plain.model.get_submodule(name).weight)
        layer = int8.model.get_submodule(name)
        assert torch.equal(layer.weight, q) and torch.equal(layer.weight_scale, s), name
    assert torch.equal(int8.model.lm_head.weight, plain.model.lm_head.weight)  # not quantised


def test_nf4_without_bitsandbytes_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr("videosalmonn.llm.quantization.bitsandbytes_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^llm.quantization=nf4 needs bitsandbytes on a CUDA device \(the device"):
        load_model(TINY.replace("llm.quantization=nf4"), "cpu")
    with pytest.raises(ConfigError, match=r"bitsandbytes is not installed\); use llm.quantization=int8"):
        backend("nf4", "cuda")
    assert backend("int8", "cuda") == "int8" and backend("int8", "cpu") == "int8" and backend("none", "cpu") == "none"
    monkeypatch.setattr("videosalmonn.llm.quantization.bitsandbytes_available", lambda: True)
    assert backend("nf4", "cuda:1") == "bnb-nf4" and backend("int8", "cpu") == "int8"


# ------------------------------------------------------------------------------------------------ SDPA


@pytest.mark.slow
def test_sdpa_equals_eager_on_the_tiny_model(tokenizers, fp32):
    ref, mask, answers_ref, _ = fp32
    out, _, answers, model = run(["llm.attention=sdpa"], tokenizers)
    assert model.llm.model.config._attn_implementation == "sdpa"
    assert (~mask).any()  # left padding: padded positions are in the batch, compared only where valid
    assert (out - ref)[mask].abs().max() < 1e-4
    assert answers == answers_ref
