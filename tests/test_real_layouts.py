"""Loading from the layouts real weights come in: hub repos (an emulated hub, first run with an empty cache), HF
InstructBLIP folders with `qformer_tokenizer/` (a 7-shard `InstructBlipForConditionalGeneration` holding the golden
weights, answering as the official-format files), Vicuna-like `.bin` shards + index, damaged LLM checkpoints."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import GOLDEN, needs_golden
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


# ------------------------------------------------------------------------- a 7-shard HF InstructBLIP, golden weights

IB_REPO = "org/instructblip-golden"  # the layout of Salesforce/instructblip-vicuna-13b, tiny
IB_SHARDS = 7
IB_OURS = ("vision_model.", "qformer.", "query_tokens")  # what video-SALMONN reads of it


def lavis_state_dict(golden) -> dict[str, torch.Tensor]:
    """The golden EVA + InstructBLIP files as the state dict of a LAVIS `Blip2VicunaInstruct` model: EVA under
    `visual_encoder.` with the blocks the model has (LAVIS loads eva_vit_g.pth with strict=False: the file's extra
    last block is dropped), the trimmed file's keys (query_tokens, ln_vision, Qformer.bert.*) as they are."""
    from videosalmonn.weights import read_pickled_tensors

    ckpt = golden.ckpt / "pretrained_ckpt"
    depth = golden.config().encoders.eva.depth
    eva = read_pickled_tensors(ckpt / "eva_vit_g.pth")
    sd = {f"visual_encoder.{k}": v for k, v in eva.items() if not k.startswith(f"blocks.{depth}.")}
    sd.update(read_pickled_tensors(ckpt / "instruct_blip_vicuna13b_trimmed.pth", wrapped_in="model"))
    return sd


def transformers_instructblip_keys(lavis: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """LAVIS -> HF InstructBLIP names by the rules of transformers' own converter
    (`src/transformers/models/instructblip/convert_instructblip_original_to_pytorch.py`: `create_rename_keys`,
    the renaming loop of `convert_blip2_checkpoint`, `read_in_q_v_bias`), written out here because the wheel does
    not ship it; independent of our `lavis_instructblip_to_hf`/`lavis_eva_to_hf`."""
    sd = dict(lavis)
    renames = {
        "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
        "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
        "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual_encoder.patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
        "ln_vision.weight": "vision_model.post_layernorm.weight",
        "ln_vision.bias": "vision_model.post_layernorm.bias",
        "Qformer.bert.embeddings.LayerNorm.weight": "qformer.embeddings.layernorm.weight",
        "Qformer.bert.embeddings.LayerNorm.bias": "qformer.embeddings.layernorm.bias",
    }
    block = {
        "norm1": "layer_norm1",
        "norm2": "layer_norm2",
        "attn.qkv": "self_attn.qkv",
        "attn.proj": "self_attn.projection",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for i in range(depth):
        for old, new in block.items():
            for what in ("weight", "bias"):
                renames[f"visual_encoder.blocks.{i}.{old}.{what}"] = f"vision_model.encoder.layers.{i}.{new}.{what}"
    for old, new in renames.items():
        if old in sd:
            sd[new] = sd.pop(old)
    out = {}
    for key, value in sd.items():
        if key.startswith("Qformer.bert"):
            key = key.replace("Qformer.bert", "qformer")
        if "attention.self" in key:
            key = key.replace("self", "attention")
        key = key.replace("llm_proj", "language_projection")
        out[key] = value
    for i in range(depth):
        q = out.pop(f"visual_encoder.blocks.{i}.attn.q_bias")
        v = out.pop(f"visual_encoder.blocks.{i}.attn.v_bias")
        out[f"vision_model.encoder.layers.{i}.self_attn.qkv.bias"] = torch.cat((q, torch.zeros_like(v), v))
    return out


def hf_instructblip_config(golden):
    """An InstructBlipConfig of the golden dims (vision, Q-Former) with a small Vicuna-like LLM (never read)."""
    from transformers import InstructBlipConfig, InstructBlipQFormerConfig, InstructBlipVisionConfig, LlamaConfig

    bert = json.loads((golden.ckpt / "hf" / "bert-base-uncased" / "config.json").read_text())
    cfg = golden.config()
    eva, qf = cfg.encoders.eva, cfg.encoders.image_qformer
    vision = InstructBlipVisionConfig(
        hidden_size=eva.width,
        intermediate_size=eva.mlp_width,
        num_hidden_layers=eva.depth,
        num_attention_heads=eva.num_heads,
        image_size=cfg.media.image_size,
        patch_size=eva.patch_size,
        layer_norm_eps=eva.eps,
        qkv_bias=True,
    )
    qformer = InstructBlipQFormerConfig(
        vocab_size=qf.vocab_size,
        hidden_size=bert["hidden_size"],
        num_hidden_layers=bert["num_hidden_layers"],
        num_attention_heads=bert["num_attention_heads"],
        intermediate_size=bert["intermediate_size"],
        max_position_embeddings=bert["max_position_embeddings"],
        layer_norm_eps=bert["layer_norm_eps"],
        cross_attention_frequency=2,
        encoder_hidden_size=eva.width,
    )
    text = LlamaConfig(
        vocab_size=1000, hidden_size=160, intermediate_size=432, num_hidden_layers=4, num_attention_heads=4
    )
    return InstructBlipConfig(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=qf.num_queries,
    )


@pytest.fixture(scope="module")
def instructblip_repo(tmp_path_factory):
    """A tiny Salesforce/instructblip-vicuna-13b: `InstructBlipForConditionalGeneration` holding the golden EVA +
    Q-Former weights (converted with transformers' key map), saved by its own `save_pretrained` in 7 shards +
    index, its BERT tokenizer with [DEC] in `qformer_tokenizer/`, the LLaMA tokenizer at the root."""
    from transformers import BertTokenizer, InstructBlipForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from videosalmonn.official.golden import GoldenDir

    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    golden = GoldenDir(GOLDEN)
    sd = transformers_instructblip_keys(lavis_state_dict(golden), golden.config().encoders.eva.depth)
    model = InstructBlipForConditionalGeneration(hf_instructblip_config(golden)).eval()
    result = model.load_state_dict(sd, strict=False)
    # transformers 5: position_ids is a non-persistent buffer (rebuilt); the LLM half is not in the LAVIS files
    assert result.unexpected_keys == ["qformer.embeddings.position_ids"], result.unexpected_keys
    assert all(k.startswith(("language_model.", "language_projection.")) for k in result.missing_keys)
    folder = tmp_path_factory.mktemp("remote") / "instructblip"
    hf_logging.disable_progress_bar()
    model.save_pretrained(str(folder), max_shard_size="1300KB")
    hf_logging.enable_progress_bar()
    bert = BertTokenizer.from_pretrained(str(golden.ckpt / "hf" / "bert-base-uncased"), truncation_side="left")
    bert.add_special_tokens({"bos_token": "[DEC]"})  # as transformers' converter saves it
    bert.save_pretrained(str(folder / "qformer_tokenizer"))
    for f in golden.ckpt.glob("vicuna*/*"):
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, folder / f.name)
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    return folder, weight_map


def golden_with_hub_instructblip(golden):
    cfg = golden.config()
    weights = dataclasses.replace(cfg.weights, instructblip=IB_REPO, eva_vit=None, qformer_tokenizer=None)
    return dataclasses.replace(cfg, weights=weights)


@needs_golden
def test_instructblip_repo_is_the_real_layout(instructblip_repo):
    folder, weight_map = instructblip_repo
    shards = sorted(set(weight_map.values()))
    assert shards == [f"model-{i:05d}-of-{IB_SHARDS:05d}.safetensors" for i in range(1, IB_SHARDS + 1)]
    ours = {f for k, f in weight_map.items() if k.startswith(IB_OURS)}
    llm_only = set(shards) - ours
    assert len(ours) == 2 and len(llm_only) == 5  # the fixture must test that LLM shards are left alone
    assert all(
        k.startswith(("language_model.", "language_projection.")) for k, f in weight_map.items() if f in llm_only
    )
    assert (folder / "qformer_tokenizer" / "tokenizer.json").is_file() and (folder / "tokenizer.model").is_file()


@needs_golden
@pytest.mark.slow  # two golden models, three cases, greedy: ~15 s
def test_7_shard_instructblip_by_hub_id_answers_as_the_official_files(hub, instructblip_repo, monkeypatch):
    """First online run (empty cache) with weights.instructblip = a hub id of the real layout: only the vision and
    Q-Former shards are fetched and only their tensors read; the instruction tokenizer is its qformer_tokenizer/;
    encoder and connector outputs and greedy ids are identical to the golden run from the official-format files
    (LAVIS eva_vit_g.pth + instruct_blip_vicuna13b_trimmed.pth). A second run, offline, from the cache: the same."""
    import huggingface_hub

    from videosalmonn import weights
    from videosalmonn.checkpoint import load_model
    from videosalmonn.llm.tokenizer import load_tokenizer
    from videosalmonn.official.golden import GoldenDir
    from videosalmonn.official.parity import case_request, golden_pipeline, golden_runs
    from videosalmonn.pipeline import Pipeline

    folder, weight_map = instructblip_repo
    hub.add(IB_REPO, folder)
    golden = GoldenDir(GOLDEN)
    cfg = golden_with_hub_instructblip(golden)

    read: list[str] = []  # tensors read out of the InstructBLIP repo's files
    real_map = weights.map_safetensors

    def spy(path, *args, **kwargs):
        tensors = real_map(path, *args, **kwargs)
        if "models--" + IB_REPO.replace("/", "--") in str(path):
            read.extend(tensors)
        return tensors

    monkeypatch.setattr(weights, "map_safetensors", spy)

    def hub_pipeline() -> Pipeline:
        return Pipeline(load_model(cfg, "cpu"), load_tokenizer(cfg.weights.llm), instruction_tokenizer_for(cfg))

    ours = hub_pipeline()
    fetched = {f for f in hub.downloaded if f.startswith("model-")}
    assert fetched == {f for k, f in weight_map.items() if k.startswith(IB_OURS)}  # 2 of 7: never the LLM's
    assert sorted(read) == sorted(k for k in weight_map if k.startswith(IB_OURS))
    assert "qformer_tokenizer/tokenizer.json" in hub.downloaded
    assert Path(ours.instruction_tokenizer.hf.name_or_path).parts[-1] == "qformer_tokenizer"

    official = golden_pipeline(golden)
    theirs_sd, ours_sd = official.model.encoder.vision.state_dict(), ours.model.encoder.vision.state_dict()
    assert ours_sd.keys() == theirs_sd.keys() and all(torch.equal(ours_sd[k], theirs_sd[k]) for k in ours_sd)

    def outputs(pipe: Pipeline, case) -> tuple:
        request = case_request(golden, case)
        clip = pipe.load(request)
        batch, _ = pipe.prepare([request], [clip])
        with torch.no_grad():
            features = pipe.model.encoder(batch.media)
            media = pipe.model.connector(features)
            greedy = pipe.answer_batch([request], golden_runs(case, cfg.llm.max_text_tokens)["greedy20"], [clip])
        return batch.media.instruction_ids, features.visual, media.embeds, greedy[0].token_ids

    for case in golden.cases():
        mine, theirs = outputs(ours, case), outputs(official, case)
        for what, a, b in zip(("instruction ids", "visual features", "media tokens"), mine[:3], theirs[:3]):
            assert torch.equal(a, b), (case.name, what)
        assert mine[3] == theirs[3] == case.expected["greedy20"]["ids"][0], case.name

    # second run: offline, huggingface_hub's own functions on the cache the first run filled
    downloaded = len(hub.downloaded)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(huggingface_hub, "snapshot_download", huggingface_hub._snapshot_download.snapshot_download)
        m.setattr(huggingface_hub, "hf_hub_download", huggingface_hub.file_download.hf_hub_download)
        m.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        again = hub_pipeline()
    assert len(hub.downloaded) == downloaded
    again_sd = again.model.encoder.vision.state_dict()
    assert all(torch.equal(again_sd[k], theirs_sd[k]) for k in theirs_sd)
