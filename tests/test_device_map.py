"""`llm.device_map` (llm/placement.py): the LLM spread over devices by accelerate's big-model loading. On this CPU
machine the map can hold `cpu` and `disk`: `disk` modules are written to the offload folder while loading, left on
meta, and brought in by accelerate's hooks for their forward, which is what `cpu` modules get with a GPU main device.
Logits and greedy ids must equal the plain load's."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import GOLDEN, needs_golden

from videosalmonn.config import LLMConfig, ModelConfig
from videosalmonn.errors import ConfigError
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.llm.placement import parse_device_map, parse_max_memory

TINY = ModelConfig.from_name("tiny").llm
DISK_MAP = {  # layer 1 and the LM head wait on disk, the rest on the CPU
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "disk",
}


@pytest.fixture(scope="module")
def sharded_llm(tmp_path_factory):
    """A tiny LlamaForCausalLM of the tiny preset's dims, saved by save_pretrained in several shards."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = LlamaConfig(
        vocab_size=TINY.vocab_size,
        hidden_size=TINY.width,
        intermediate_size=TINY.mlp_width,
        num_hidden_layers=TINY.depth,
        num_attention_heads=TINY.num_heads,
        num_key_value_heads=TINY.num_kv_heads,
        tie_word_embeddings=False,
    )
    folder = tmp_path_factory.mktemp("llm") / "llm"
    LlamaForCausalLM(hf).save_pretrained(str(folder), max_shard_size="100KB")
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    return str(folder)


def placed(cfg: LLMConfig, source: str, tmp_path, device_map=DISK_MAP, **kw) -> LanguageModel:
    text = device_map if isinstance(device_map, str) else json.dumps(device_map)
    cfg = dataclasses.replace(cfg, device_map=text, offload_folder=str(tmp_path / "offload"), **kw)
    return LanguageModel.build(cfg, source).cast(None, torch.float32)


def same_lora(a: LanguageModel, b: LanguageModel) -> None:
    """Give both the same non-zero LoRA weights (as a delta would), before `cast` dispatches b."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for (name, x), (other, y) in zip(a.model.named_parameters(), b.model.named_parameters()):
            assert name == other
            if ".lora_" in name:
                value = 0.1 * torch.randn(x.shape, generator=g)
                x.copy_(value)
                y.copy_(value)


def logits_and_ids(lm: LanguageModel) -> tuple[torch.Tensor, torch.Tensor]:
    from videosalmonn.config import GenerationConfig

    ids = torch.randint(3, TINY.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        embeds = lm.embed(ids)
        logits = lm(embeds, mask)
        greedy = GenerationConfig(max_new_tokens=6, num_beams=1, repetition_penalty=1.0)
        out = lm.generate(embeds, mask, greedy, eos_id=2, pad_id=0)
    return logits, out


def test_disk_offload_gives_the_plain_logits_and_ids(sharded_llm, tmp_path):
    cfg = dataclasses.replace(TINY, lora=None)
    plain = LanguageModel.build(cfg, sharded_llm).cast(None, torch.float32)
    lm = LanguageModel.build(
        dataclasses.replace(cfg, device_map=json.dumps(DISK_MAP), offload_folder=str(tmp_path)), sharded_llm
    )
    on_disk = sorted(f.name.removesuffix(".safetensors") for f in tmp_path.glob("*.safetensors"))
    expected = sorted(k for k in plain.model.state_dict() if k.startswith(("model.layers.1.", "lm_head.")))
    assert on_disk == expected  # written while loading, never held in memory
    assert all(p.is_meta for n, p in lm.model.named_parameters() if n.startswith("model.layers.1."))
    lm.cast(None, torch.float32)
    assert lm.model.hf_device_map == DISK_MAP
    (a, ids_a), (b, ids_b) = logits_and_ids(plain), logits_and_ids(lm)
    assert torch.equal(a, b) and torch.equal(ids_a, ids_b)


def test_disk_offload_with_lora_gives_the_plain_logits(sharded_llm, tmp_path):
    """peft wraps the placed model: the adapters of the disk layer (left on meta by peft) are made real, loaded
    like a delta, then brought in with their layer by the hooks."""
    plain = LanguageModel.build(TINY, sharded_llm)
    lm = LanguageModel.build(
        dataclasses.replace(TINY, device_map=json.dumps(DISK_MAP), offload_folder=str(tmp_path)), sharded_llm
    )
    lora = [p for n, p in lm.model.named_parameters() if ".lora_" in n and ".layers.1." in n]
    assert lora and not any(p.is_meta for p in lora)
    same_lora(plain, lm)
    plain.cast(None, torch.float32).eval()  # eval: LoRA dropout off
    lm.cast(None, torch.float32).eval()
    (a, ids_a), (b, ids_b) = logits_and_ids(plain), logits_and_ids(lm)
    assert torch.equal(a, b) and torch.equal(ids_a, ids_b)
    without = LanguageModel.build(TINY, sharded_llm).cast(None, torch.float32).eval()  # B = 0: no LoRA effect
    assert not torch.equal(a, logits_and_ids(without)[0])


def test_auto_map_within_max_memory_spills_to_disk(sharded_llm, tmp_path):
    cfg = dataclasses.replace(TINY, lora=None)
    plain = LanguageModel.build(cfg, sharded_llm).cast(None, torch.float32)
    lm = placed(cfg, sharded_llm, tmp_path, device_map="auto", max_memory="cpu=500KB")
    where = set(lm.model.hf_device_map.values())
    assert where == {"cpu", "disk"}, lm.model.hf_device_map
    assert torch.equal(logits_and_ids(plain)[0], logits_and_ids(lm)[0])
    whole = placed(cfg, sharded_llm, tmp_path / "none", device_map="sequential")  # room for all: one device
    assert set(whole.model.hf_device_map.values()) == {"cpu"} and not any(p.is_meta for p in whole.parameters())


@needs_golden
@pytest.mark.slow  # two golden models: ~10 s
def test_golden_model_with_its_llm_half_on_disk_answers_as_the_official_files(tmp_path):
    """The whole model (official files, the delta's LoRA on the disk layer): greedy ids of the official run."""
    from videosalmonn.checkpoint import load_model
    from videosalmonn.llm.tokenizer import load_tokenizer
    from videosalmonn.official.golden import GoldenDir
    from videosalmonn.official.parity import case_request, golden_pipeline, golden_runs
    from videosalmonn.pipeline import Pipeline
    from videosalmonn.prompting.instruction import instruction_tokenizer_for

    golden = GoldenDir(GOLDEN)
    cfg = golden.config()
    llm = dataclasses.replace(cfg.llm, device_map=json.dumps(DISK_MAP), offload_folder=str(tmp_path))
    cfg = dataclasses.replace(cfg, llm=llm)
    ours = Pipeline(
        load_model(cfg, "cpu", for_inference=True), load_tokenizer(cfg.weights.llm), instruction_tokenizer_for(cfg)
    )
    assert any(p.is_meta for p in ours.model.llm.parameters())  # dispatched: the disk layer waits there
    official = golden_pipeline(golden)
    case = next(c for c in golden.cases() if c.name == "audioimage")
    request = case_request(golden, case)
    clip = ours.load(request)
    for run, gen in golden_runs(case, cfg.llm.max_text_tokens).items():
        if run == "beam_default":
            continue
        mine = ours.answer_batch([request], gen, [clip])[0].token_ids
        assert mine == official.answer_batch([request], gen, [clip])[0].token_ids == case.expected[run]["ids"][0]
    with pytest.raises(ConfigError, match="llm.device_map places the LLM for inference"):
        load_model(cfg, "cpu")


# ------------------------------------------------------------------------------------------ one-line errors


def test_device_map_and_max_memory_syntax():
    assert parse_device_map("auto") == "auto"
    assert parse_device_map('{"model": 0, "lm_head": "cpu"}') == {"model": 0, "lm_head": "cpu"}
    assert parse_device_map("model.layers=1, model=cuda:0,lm_head=disk") == {
        "model.layers": 1,
        "model": "cuda:0",
        "lm_head": "disk",
    }
    cfg = ModelConfig.from_name("tiny", ["llm.device_map=model=0,lm_head=cpu", "llm.max_memory=0=14GiB,cpu=48GiB"])
    assert parse_device_map(cfg.llm.device_map) == {"model": 0, "lm_head": "cpu"}  # --set reads both as strings
    assert parse_max_memory(cfg.llm.max_memory) == {0: "14GiB", "cpu": "48GiB"}
    for bad in ("everywhere", '{"model": "gpu"}', "[0]", '{"model": true}', "model=gpu", "model"):
        with pytest.raises(ConfigError, match=r"llm.device_map: .* is not one of auto, balanced.* MODULE=DEVICE"):
            parse_device_map(bad)
    assert parse_max_memory("0=18GiB, 1=22GiB,cpu=48GiB") == {0: "18GiB", 1: "22GiB", "cpu": "48GiB"}
    assert parse_max_memory('{"0": "10GB", "cpu": 1000}') == {0: "10GB", "cpu": 1000}
    for bad in ("18GiB", "gpu=1GiB", "0=lots", ""):
        with pytest.raises(ConfigError, match=r"llm.max_memory: "):
            parse_max_memory(bad)


def test_device_map_errors_are_one_line(sharded_llm, tmp_path):
    with pytest.raises(ConfigError, match=r"llm.device_map: .*model.layers.1"):
        LanguageModel.build(
            dataclasses.replace(TINY, device_map='{"model.embed_tokens": "cpu", "model.layers.0": "cpu"}'), sharded_llm
        )
    with pytest.raises(ConfigError, match=r"puts 1 module\(s\) on disk \(lm_head, ...\): set llm.offload_folder"):
        LanguageModel.build(
            dataclasses.replace(TINY, device_map=json.dumps({"model": "cpu", "lm_head": "disk"})), sharded_llm
        )
    with pytest.raises(ConfigError, match="set weights.llm"):
        LanguageModel.build(dataclasses.replace(TINY, device_map="auto"))
    with pytest.raises(ConfigError, match="llm.device_map with llm.quantization=int8 is not supported"):
        ModelConfig.from_name("tiny", ["llm.device_map=auto", "llm.quantization=int8"])
