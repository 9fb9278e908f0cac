"""The `video-salmonn-llama2` preset (paper App. H): video-SALMONN's layout with a Llama-2-13B chat backbone."""

from __future__ import annotations

import pytest

from videosalmonn.config import ModelConfig, to_dict
from videosalmonn.download import components
from videosalmonn.estimate import estimate, parameter_counts
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.prompting.conversation import encode_conversation
from videosalmonn.prompting.templates import Llama2Style, prompt_style
from videosalmonn.types import Turn

# meta-llama/Llama-2-13b-chat-hf config.json
LLAMA2_13B = {
    "vocab_size": 32000,
    "width": 5120,
    "depth": 40,
    "num_heads": 40,
    "num_kv_heads": 40,
    "mlp_width": 13824,
    "max_positions": 4096,
    "rms_eps": 1e-5,
    "rope_theta": 10000.0,
}
LLAMA2_13B_PARAMETERS = 13_015_864_320  # LlamaForCausalLM 13B: embeddings, 40 layers, norm, untied LM head


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.fixture(scope="module")
def cfg():
    return ModelConfig.from_name("video-salmonn-llama2")


def test_same_layout_as_13b_but_the_llm(cfg):
    assert cfg.name == "video-salmonn-llama2" and cfg.llm.prompt_style == "llama2"
    assert {k: getattr(cfg.llm, k) for k in LLAMA2_13B} == LLAMA2_13B
    assert cfg.weights.llm == "meta-llama/Llama-2-13b-chat-hf"
    ours, vicuna = _flat(to_dict(cfg)), _flat(to_dict(ModelConfig.from_name("video-salmonn-13b")))
    differ = sorted(k for k in ours if ours[k] != vicuna[k])
    assert differ == ["llm.prompt_style", "name", "weights.delta_required", "weights.llm"]


def test_builds_on_meta_with_llama2_13b_parameters(cfg):
    params = parameter_counts(cfg)  # the model built empty, on the meta device
    assert params.counts["llm"] == LLAMA2_13B_PARAMETERS
    assert params.counts["lora"] == 40 * 4 * 2 * 32 * 5120  # q, k, v, o: r 32 as video-salmonn-13b
    assert params.counts == parameter_counts(ModelConfig.from_name("video-salmonn-13b")).counts
    e = estimate(cfg, 30.0, params=params)
    assert e.tokens["media"] == 180 and e.weights["llm"] == 2 * LLAMA2_13B_PARAMETERS  # fp16


def test_renders_prompts_in_the_llama2_layout(cfg):
    style = prompt_style(cfg.llm.prompt_style)
    assert isinstance(style, Llama2Style)
    tok = load_tokenizer(None)  # the packaged tiny SentencePiece tokenizer: Llama-2's own is a gated download
    turns = [
        Turn("system", "Be brief."),
        Turn("user", "What is shown?"),
        Turn("assistant", "A dog."),
        Turn("user", "Why?"),
    ]
    enc = encode_conversation(turns, style, tok, 5, cfg.llm.max_text_tokens)
    pieces = [
        [tok.bos_id],
        tok.encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<Img>"),
        [tok.pad_id] * 5,
        tok.encode("</Img> What is shown? [/INST]"),
        tok.encode("A dog."),
        [tok.eos_id],
        [tok.bos_id],
        tok.encode("[INST] Why? [/INST]"),
    ]
    assert enc.ids == [i for p in pieces for i in p]
    assert sum(enc.media) == 5
    answer = [i for i, label in zip(enc.ids, enc.labels) if label != -100]
    assert answer == tok.encode("A dog.") + [tok.eos_id]  # loss on the answer and its </s> only


def test_download_does_not_fetch_the_vicuna_delta(cfg):
    planned, defaults = components(cfg)
    keys = [key for key, _, _ in planned]
    assert "weights.delta" not in keys and not any("weights.delta" in d for d in defaults)
    assert ("weights.llm", "meta-llama/Llama-2-13b-chat-hf") in [(k, s) for k, s, _ in planned]
