"""Loading from the layouts real weights come in: hub repos (an emulated hub, first run with an empty cache), HF
InstructBLIP folders with `qformer_tokenizer/`, Vicuna-like `.bin` shards + index, damaged LLM checkpoints."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from videosalmonn.checkpoint import check_weights, load_model
from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.prompting.instruction import instruction_tokenizer_for, load_instruction_tokenizer
from videosalmonn.weights import resolve_model

TINY = ModelConfig.from_name("tiny")
TINY_BERT = Path(__file__).resolve().parents[1] / "videosalmonn" / "presets" / "tiny" / "bert"


class Hub:
    """An emulated Hugging Face hub: `add(repo_id, folder)`; downloads copy into a real cache layout."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.repos: dict[str, Path] = {}
        self.downloaded: list[str] = []

    def add(self, repo_id: str, folder: Path) -> None:
        self.repos[repo_id] = folder

    def snapshot_dir(self, repo_id: str) -> Path:
        repo = self.cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("0" * 40)
        (repo / "snapshots" / ("0" * 40)).mkdir(parents=True, exist_ok=True)
        return repo / "snapshots" / ("0" * 40)

    def snapshot_download(self, repo_id: str, allow_patterns=None, **_) -> str:
        if repo_id not in self.repos:
            raise FileNotFoundError(f"404: {repo_id}")
        snap = self.snapshot_dir(repo_id)
        for f in sorted(p for p in self.repos[repo_id].rglob("*") if p.is_file()):
            rel = f.relative_to(self.repos[repo_id]).as_posix()
            if allow_patterns is None or any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                if not (snap / rel).exists():
                    shutil.copy(f, snap / rel)
                    self.downloaded.append(rel)
        return str(snap)

    def hf_hub_download(self, repo_id: str, filename: str, subfolder: str | None = None, **_) -> str:
        from huggingface_hub.errors import EntryNotFoundError

        filename = f"{subfolder}/{filename}" if subfolder else filename
        if repo_id not in self.repos or not (self.repos[repo_id] / filename).is_file():
            raise EntryNotFoundError(f"404: {repo_id}/{filename}")
        return str(Path(self.snapshot_download(repo_id, [filename])) / filename)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Hub:
    import huggingface_hub
    import huggingface_hub.constants

    hub = Hub(tmp_path / "hf-cache")  # empty: a first run
    monkeypatch.setenv("HF_HUB_CACHE", str(hub.cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub.cache))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    return hub


def save_bert(folder: Path, extra_words: int = 0) -> int:
    """A tiny BERT vocabulary saved by `BertTokenizer.save_pretrained`; returns its size without [DEC]."""
    from transformers import BertTokenizer

    src = folder.parent / f".{folder.name}-vocab"
    src.mkdir(parents=True)
    words = (TINY_BERT / "vocab.txt").read_text().splitlines() + [f"extra{i}" for i in range(extra_words)]
    (src / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer.from_pretrained(str(src))
    tok.save_pretrained(str(folder))
    return len(tok)


def instructblip_folder(root: Path, with_qformer_tokenizer: bool = True) -> Path:
    """The layout of an HF InstructBLIP repo: config, the LLaMA tokenizer at the root, the BERT one in a subfolder."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "instructblip"}))
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    shutil.copy(TINY_BERT.parent / "llm" / "tokenizer.model", root / "tokenizer.model")
    if with_qformer_tokenizer:
        save_bert(root / "qformer_tokenizer")
    return root


def with_weights(cfg: ModelConfig, **weights) -> ModelConfig:
    return cfg.replace(*(f"weights.{k}={v}" for k, v in weights.items()))


# ------------------------------------------------------------------------- defect 1: instruction tokenizer


def test_hub_bert_tokenizer_is_its_real_vocabulary(hub, tmp_path):
    """`bert-base-uncased` by hub id (a legacy id without org) gives its vocabulary, not a 5-token tokenizer."""
    size = save_bert(tmp_path / "remote-bert")
    hub.add("bert-base-uncased", tmp_path / "remote-bert")
    tok = load_instruction_tokenizer("bert-base-uncased")
    assert len(tok) == size + 1  # + [DEC]
    ids, _ = tok(["the video"])
    assert tok.hf.unk_token_id not in ids[0].tolist()


def test_instructblip_folder_gives_its_qformer_tokenizer(tmp_path):
    ib = instructblip_folder(tmp_path / "instructblip")
    size = save_bert(tmp_path / "other-bert", extra_words=3)  # a different vocab: must not be the one used
    cfg = with_weights(TINY, instructblip=ib)
    tok = instruction_tokenizer_for(cfg)
    assert len(tok) == cfg.encoders.image_qformer.vocab_size != size + 1
    assert Path(tok.hf.name_or_path) == ib / "qformer_tokenizer"
    ids, _ = tok(["Describe the video"])
    assert tok.hf.unk_token_id not in ids[0].tolist()


def test_instructblip_hub_id_without_qformer_tokenizer_falls_back_to_bert_uncased(hub, tmp_path):
    hub.add("org/instructblip", instructblip_folder(tmp_path / "remote-ib", with_qformer_tokenizer=False))
    save_bert(tmp_path / "remote-bert")
    hub.add("bert-base-uncased", tmp_path / "remote-bert")
    tok = instruction_tokenizer_for(with_weights(TINY, instructblip="org/instructblip"))
    assert len(tok) == TINY.encoders.image_qformer.vocab_size
    assert "models--bert-base-uncased" in tok.hf.name_or_path


def test_instructblip_hub_id_gives_its_qformer_tokenizer(hub, tmp_path):
    hub.add("org/instructblip", instructblip_folder(tmp_path / "remote-ib"))
    tok = instruction_tokenizer_for(with_weights(TINY, instructblip="org/instructblip"))
    assert len(tok) == TINY.encoders.image_qformer.vocab_size
    assert "qformer_tokenizer/vocab.txt" in hub.downloaded or "qformer_tokenizer/tokenizer.json" in hub.downloaded


def test_tokenizer_of_the_wrong_size_is_refused(hub, tmp_path):
    size = save_bert(tmp_path / "bert", extra_words=2)
    with pytest.raises(CheckpointError, match=rf"bert: the instruction tokenizer has {size + 1} tokens.* 191"):
        instruction_tokenizer_for(with_weights(TINY, qformer_tokenizer=tmp_path / "bert"))
    with pytest.raises(CheckpointError, match="30523"):  # the 13B Q-Former's rows
        load_instruction_tokenizer(tmp_path / "bert", vocab_size=30523)
    # an InstructBLIP whose qformer_tokenizer/ does not fit, and no bert-base-uncased reachable: both named
    ib = tmp_path / "ib"
    ib.mkdir()
    shutil.copytree(tmp_path / "bert", ib / "qformer_tokenizer")
    with pytest.raises(CheckpointError, match=r"qformer_tokenizer: the instruction tokenizer has .*bert-base-uncased"):
        instruction_tokenizer_for(with_weights(TINY, instructblip=ib))


def test_13b_preset_takes_the_tokenizer_of_its_instructblip():
    cfg = ModelConfig.from_name("video-salmonn-13b")
    assert cfg.weights.qformer_tokenizer is None and cfg.weights.instructblip
    assert cfg.encoders.image_qformer.vocab_size == 30522 + 1  # bert-base-uncased + [DEC]


# ------------------------------------------------------------------------- defect 2: sharded LLM by hub id


def tiny_llama(cfg=TINY.llm):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.width,
        intermediate_size=cfg.mlp_width,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(hf_cfg)


def save_bin_shards(model, folder: Path) -> list[str]:
    """`save_pretrained(max_shard_size=...)`, then the shards as `.bin` + `pytorch_model.bin.index.json` (Vicuna's
    layout; transformers 5 writes safetensors only). Returns the shard names."""
    tmp = folder.parent / f".{folder.name}-st"
    model.save_pretrained(str(tmp), max_shard_size="200KB")
    index = json.loads((tmp / "model.safetensors.index.json").read_text())
    folder.mkdir(parents=True)
    names = {}
    for shard in sorted(set(index["weight_map"].values())):
        names[shard] = shard.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        torch.save(load_file(str(tmp / shard)), folder / names[shard])
    weight_map = {k: names[v] for k, v in index["weight_map"].items()}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for f in ("config.json", "generation_config.json"):
        shutil.copy(tmp / f, folder / f)
    shutil.rmtree(tmp)
    return sorted(names.values())


def test_sharded_llm_loads_by_hub_id_on_a_first_run(hub, tmp_path):
    model = tiny_llama()
    shards = save_bin_shards(model, tmp_path / "remote-vicuna")
    assert len(shards) > 1
    hub.add("org/tiny-vicuna", tmp_path / "remote-vicuna")
    llm = LanguageModel.build(dataclasses.replace(TINY.llm, lora=None), "org/tiny-vicuna")
    assert set(shards) <= set(hub.downloaded)
    own = llm.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())
    assert resolve_model("org/tiny-vicuna") == hub.snapshot_dir("org/tiny-vicuna")  # second run: cached


def test_local_llm_dir_missing_a_shard_names_it(tmp_path):
    shards = save_bin_shards(tiny_llama(), tmp_path / "vicuna")
    (tmp_path / "vicuna" / shards[1]).unlink()
    with pytest.raises(CheckpointError, match=rf"pytorch_model.bin.index.json: names 1 missing .*{shards[1]}"):
        resolve_model(tmp_path / "vicuna")


# ------------------------------------------------------------------------- defect 3: LLM key coverage


def damaged_llama(folder: Path, edit) -> Path:
    tiny_llama().save_pretrained(str(folder))
    sd = load_file(str(folder / "model.safetensors"))
    edit(sd)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_llm_missing_a_key_is_refused(tmp_path):
    folder = damaged_llama(tmp_path / "llm", lambda sd: sd.pop("model.norm.weight"))
    with pytest.raises(CheckpointError, match=r"llm \(LLM\): checkpoint does not match.*1 missing \(model.norm.weight"):
        LanguageModel.build(TINY.llm, str(folder))


def test_llm_renamed_key_is_refused(tmp_path):
    def rename(sd):
        sd["model.layers.0.mlp.down_projection.weight"] = sd.pop("model.layers.0.mlp.down_proj.weight")

    folder = damaged_llama(tmp_path / "llm", rename)
    with pytest.raises(
        CheckpointError, match=r"1 missing \(model.layers.0.mlp.down_proj.weight\); 1 unexpected \(.*down_projection"
    ):
        LanguageModel.build(TINY.llm, str(folder))


def test_llm_rope_inv_freq_in_the_checkpoint_is_ignored(tmp_path):
    def add_inv_freq(sd):  # older checkpoints (Vicuna v1.5) store the RoPE frequencies
        sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)

    folder = damaged_llama(tmp_path / "llm", add_inv_freq)
    LanguageModel.build(TINY.llm, str(folder))


# ------------------------------------------------------------------------- a preset that needs its delta


def test_13b_inference_without_a_delta_is_refused_before_loading_anything(hub):
    from videosalmonn.pipeline import Pipeline

    with pytest.raises(CheckpointError, match=r"weights.delta not set: video-salmonn-13b needs the trained"):
        Pipeline.from_pretrained("video-salmonn-13b", device="cpu")
    with pytest.raises(CheckpointError, match="weights.delta not set"):
        load_model(ModelConfig.from_name("video-salmonn-13b"), "cpu", for_inference=True)
    assert hub.downloaded == []
    check_weights(ModelConfig.from_name("video-salmonn-13b", ["weights.beats=b.pt"]))  # training makes it
    assert not TINY.weights.delta_required
    check_weights(TINY, for_inference=True)
