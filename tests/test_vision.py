"""EVA-ViT-g + ln_vision + InstructBLIP Q-Former, and the instruction tokenizer: golden parity (fp32, official
code on tiny weights), loaders (LAVIS files and Hugging Face layout), random construction, loud errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import GOLDEN, needs_golden
from safetensors.torch import save_file

from videosalmonn.config import EVAConfig, ImageQFormerConfig, ModelConfig
from videosalmonn.encoders.vision import (
    VisualEncoder,
    lavis_eva_to_hf,
    lavis_instructblip_to_hf,
    load_hf_instructblip,
    load_vision_weights,
)
from videosalmonn.errors import CheckpointError
from videosalmonn.prompting.instruction import load_instruction_tokenizer, repeat_per_frame

ATOL = 1e-4
CKPT = GOLDEN / "ckpt" / "pretrained_ckpt"
EVA_FILE = CKPT / "eva_vit_g.pth"
IB_FILE = CKPT / "instruct_blip_vicuna13b_trimmed.pth"
BERT_DIR = GOLDEN / "ckpt" / "hf" / "bert-base-uncased"

# golden.json tiny_configs + the checkpoint shapes (README §3)
GOLDEN_EVA = EVAConfig(patch_size=14, width=48, depth=2, num_heads=4, mlp_width=209, eps=1e-6)
GOLDEN_QF = ImageQFormerConfig(
    width=64,
    depth=4,
    num_heads=4,
    mlp_width=128,
    cross_attention_every=2,
    num_queries=32,
    vocab_size=550,
    max_positions=512,
    eps=1e-12,
)
SMALL_EVA = EVAConfig(patch_size=14, width=16, depth=1, num_heads=2, mlp_width=24)
SMALL_QF = ImageQFormerConfig(
    width=16, depth=2, num_heads=2, mlp_width=24, num_queries=4, vocab_size=191, max_positions=64
)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def instruction(golden_json: dict, case: str) -> str:
    return golden_json["cases"][case]["manifest"][0]["conversation"][0]["value"]


@pytest.fixture(scope="module")
def golden_encoder() -> VisualEncoder:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    enc = VisualEncoder(GOLDEN_EVA, GOLDEN_QF, image_size=224).eval()
    load_vision_weights(enc, IB_FILE, eva_vit=EVA_FILE)
    return enc


@pytest.fixture(scope="module")
def golden_tokenizer():
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return load_instruction_tokenizer(BERT_DIR)


# ------------------------------------------------------------------------------------------ golden parity


@needs_golden
@pytest.mark.parametrize("case", ["av", "video_only", "audioimage"])
def test_instruction_ids_match_golden(case, golden_tokenizer, golden_json, golden_tensors):
    t = golden_tensors(case)
    ids, mask = golden_tokenizer([instruction(golden_json, case)])
    assert ids.dtype == mask.dtype == torch.long
    assert torch.equal(ids, t["instructblip_input_ids"])
    q = GOLDEN_QF.num_queries
    assert torch.equal(torch.cat([torch.ones(1, q, dtype=torch.long), mask], 1), t["instructblip_attention_mask"])
    assert len(golden_tokenizer) == GOLDEN_QF.vocab_size  # vocab.txt + [DEC]


@needs_golden
@torch.no_grad()
def test_eva_matches_golden_video_frames(golden_encoder, golden_tensors):
    t = golden_tensors("av")
    out = golden_encoder.eva_features(t["frames_sel"])  # (4, 257, 48), rows frames_sel_index of eva_out
    err = max_err(out, t["eva_out"][t["frames_sel_index"]])
    assert err <= ATOL, f"EVA (av frames) max abs error {err:.2e}"


@needs_golden
@torch.no_grad()
def test_eva_matches_golden_image(golden_encoder, golden_tensors):
    t = golden_tensors("audioimage")
    err = max_err(golden_encoder.eva_features(t["image"]), t["eva_out"])
    assert err <= ATOL, f"EVA (image) max abs error {err:.2e}"


@needs_golden
@pytest.mark.parametrize("case", ["av", "audioimage"])
@torch.no_grad()
def test_qformer_matches_golden_from_eva_out(case, golden_encoder, golden_tensors):
    """Isolated: golden EVA output -> ln_vision -> Q-Former with the golden instruction ids."""
    t = golden_tensors(case)
    n = t["eva_out"].shape[0]
    ids = t["instructblip_input_ids"].expand(n, -1)
    mask = t["instructblip_attention_mask"][:, GOLDEN_QF.num_queries :].expand(n, -1)
    out = golden_encoder.query(golden_encoder.ln_vision(t["eva_out"]), ids, mask)
    err = max_err(out, t["instructblip_query_out"])
    assert err <= ATOL, f"Q-Former ({case}, from eva_out) max abs error {err:.2e}"


@needs_golden
@torch.no_grad()
def test_visual_encoder_end_to_end_from_image(golden_encoder, golden_tokenizer, golden_json, golden_tensors):
    t = golden_tensors("audioimage")
    ids, mask = golden_tokenizer([instruction(golden_json, "audioimage")])
    err = max_err(golden_encoder(t["image"], ids, mask), t["instructblip_query_out"])
    assert err <= ATOL, f"visual encoder (image end to end) max abs error {err:.2e}"


@needs_golden
@torch.no_grad()
def test_visual_encoder_end_to_end_from_video_frames(golden_encoder, golden_tokenizer, golden_json, golden_tensors):
    t = golden_tensors("av")
    ids, mask = golden_tokenizer([instruction(golden_json, "av")])
    ids, mask = repeat_per_frame(ids, mask, t["frames_sel"].shape[0])
    err = max_err(golden_encoder(t["frames_sel"], ids, mask), t["instructblip_query_out"][t["frames_sel_index"]])
    assert err <= ATOL, f"visual encoder (video frames end to end) max abs error {err:.2e}"


# ---------------------------------------------------------------------------------------------- loaders


@needs_golden
def test_lavis_known_unused_keys_are_reported():
    enc = VisualEncoder(GOLDEN_EVA, GOLDEN_QF)
    unused = load_vision_weights(enc, IB_FILE, eva_vit=EVA_FILE)
    eva_unused = [u for u in unused if u.startswith(str(EVA_FILE))]
    assert len(eva_unused) == 13 and all(".blocks.2." in "." + u.split(": ")[1] for u in eva_unused)
    assert f"{IB_FILE}: Qformer.bert.embeddings.position_ids" in unused
    assert len(unused) == 14


def test_lavis_key_maps_are_explicit():
    sd = {
        "cls_token": torch.zeros(1, 1, 4),
        "blocks.0.attn.q_bias": torch.ones(4),
        "blocks.0.attn.v_bias": 2 * torch.ones(4),
        "blocks.0.attn.proj.weight": torch.zeros(4, 4),
        "blocks.0.norm1.weight": torch.zeros(4),
        "blocks.1.norm1.weight": torch.zeros(4),
    }
    out, unused = lavis_eva_to_hf(sd, depth=1)
    assert unused == ["blocks.1.norm1.weight"]
    assert set(out) == {
        "vision_model.embeddings.class_embedding",
        "vision_model.encoder.layers.0.self_attn.qkv.bias",
        "vision_model.encoder.layers.0.self_attn.projection.weight",
        "vision_model.encoder.layers.0.layer_norm1.weight",
    }
    assert out["vision_model.encoder.layers.0.self_attn.qkv.bias"].tolist() == [1.0] * 4 + [0.0] * 4 + [2.0] * 4
    with pytest.raises(CheckpointError, match="not in the LAVIS EVA-ViT map"):
        lavis_eva_to_hf({**sd, "blocks.0.attn.relative_position_bias_table": torch.zeros(1)}, depth=1)

    ib = {
        "query_tokens": torch.zeros(1),
        "ln_vision.weight": torch.zeros(1),
        "llm_proj.weight": torch.zeros(1),
        "Qformer.cls.predictions.bias": torch.zeros(1),
        "Qformer.bert.embeddings.LayerNorm.bias": torch.zeros(1),
        "Qformer.bert.encoder.layer.0.crossattention.self.key.weight": torch.zeros(1),
        "Qformer.bert.encoder.layer.0.attention.output.dense.weight": torch.zeros(1),
    }
    out, unused = lavis_instructblip_to_hf(ib)
    assert unused == ["Qformer.cls.predictions.bias", "llm_proj.weight"]
    assert set(out) == {
        "query_tokens",
        "vision_model.post_layernorm.weight",
        "qformer.embeddings.layernorm.bias",
        "qformer.encoder.layer.0.crossattention.attention.key.weight",
        "qformer.encoder.layer.0.attention.output.dense.weight",
    }
    with pytest.raises(CheckpointError, match="not in the LAVIS InstructBLIP map"):
        lavis_instructblip_to_hf({**ib, "visual_encoder.norm.weight": torch.zeros(1)})


@needs_golden
def test_lavis_missing_file_names_the_path(tmp_path):
    enc = VisualEncoder(GOLDEN_EVA, GOLDEN_QF)
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match=str(missing)):
        load_vision_weights(enc, IB_FILE, eva_vit=missing)
    with pytest.raises(CheckpointError, match="eva_vit"):
        load_vision_weights(enc, IB_FILE)  # LAVIS InstructBLIP alone holds no EVA


@needs_golden
def test_lavis_wrong_dims_is_a_checkpoint_error():
    wrong = VisualEncoder(EVAConfig(width=32, depth=2, num_heads=4, mlp_width=209), GOLDEN_QF)
    with pytest.raises(CheckpointError, match=r"eva_vit_g\.pth.*encoders\.eva\.width: checkpoint 48, config 32"):
        load_vision_weights(wrong, IB_FILE, eva_vit=EVA_FILE)
    wrong_vocab = VisualEncoder(
        GOLDEN_EVA, ImageQFormerConfig(width=64, depth=4, num_heads=4, mlp_width=128, vocab_size=549)
    )
    with pytest.raises(CheckpointError, match="vocab_size: checkpoint 550, config 549"):
        load_vision_weights(wrong_vocab, IB_FILE, eva_vit=EVA_FILE)
    too_shallow = VisualEncoder(EVAConfig(width=48, depth=1, num_heads=4, mlp_width=209), GOLDEN_QF)
    with pytest.raises(CheckpointError, match="holds 3 EVA blocks"):
        load_vision_weights(too_shallow, IB_FILE, eva_vit=EVA_FILE)


def _save_hf_instructblip(enc: VisualEncoder, root, heads: int):
    """An HF InstructBLIP-style dir: vision_model.*, qformer.*, query_tokens, plus a language model to skip."""
    root.mkdir()
    sd = {k: v.contiguous() for k, v in enc.state_dict().items()}
    sd["language_model.lm_head.weight"] = torch.zeros(3, 3)
    sd["language_projection.weight"] = torch.zeros(3, 3)
    save_file(sd, str(root / "model.safetensors"))
    cfg = {"vision_config": {"num_attention_heads": heads}, "qformer_config": {"num_attention_heads": 2}}
    (root / "config.json").write_text(json.dumps(cfg))


@torch.no_grad()
def test_hf_instructblip_roundtrip_reads_only_vision_and_qformer(tmp_path):
    torch.manual_seed(1)
    src = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    _save_hf_instructblip(src, tmp_path / "ib", heads=SMALL_EVA.num_heads)
    dst = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    assert load_vision_weights(dst, tmp_path / "ib") == []
    frames = torch.randn(2, 3, 224, 224)
    ids, mask = torch.tensor([[2, 7, 8, 3], [2, 9, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    assert torch.equal(src(frames, ids, mask), dst(frames, ids, mask))
    with pytest.raises(CheckpointError, match="WeightsConfig|weights.eva_vit"):
        load_vision_weights(dst, tmp_path / "ib", eva_vit=tmp_path / "x.pth")


@torch.no_grad()
def test_hf_sharded_instructblip_never_opens_the_language_model_shard(tmp_path):
    torch.manual_seed(2)
    src = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    root = tmp_path / "ib"
    root.mkdir()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(root / "model-00001-of-00002.safetensors"))
    (root / "model-00002-of-00002.safetensors").write_bytes(b"not a safetensors file: must never be opened")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in src.state_dict()}
    weight_map["language_model.lm_head.weight"] = "model-00002-of-00002.safetensors"
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    dst = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    load_vision_weights(dst, root)
    frames = torch.randn(1, 3, 224, 224)
    assert torch.equal(src(frames), dst(frames))


def test_hf_instructblip_wrong_dims_and_heads(tmp_path):
    _save_hf_instructblip(VisualEncoder(SMALL_EVA, SMALL_QF), tmp_path / "ib", heads=4)
    with pytest.raises(CheckpointError, match=r"ib: dims differ.*encoders\.eva\.num_heads: checkpoint 4, config 2"):
        load_hf_instructblip(VisualEncoder(SMALL_EVA, SMALL_QF), tmp_path / "ib")
    other = VisualEncoder(
        SMALL_EVA,
        ImageQFormerConfig(
            width=16, depth=3, num_heads=2, mlp_width=24, num_queries=4, vocab_size=191, max_positions=64
        ),
    )
    with pytest.raises(CheckpointError, match="image_qformer.depth: checkpoint 2, config 3"):
        load_hf_instructblip(other, tmp_path / "ib")
    with pytest.raises(CheckpointError, match="no such file"):
        load_hf_instructblip(other, tmp_path / "missing")


# ------------------------------------------------------------------------------------ random construction


def test_random_construction_shapes_and_determinism():
    torch.manual_seed(123)
    a = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    torch.manual_seed(123)
    b = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.vision_model.config._attn_implementation == "eager"
    assert a.qformer.config._attn_implementation == "eager"
    assert a.ln_vision.eps == 1e-5 and a.vision_model.encoder.layers[0].layer_norm1.eps == SMALL_EVA.eps
    frames = torch.randn(3, 3, 224, 224)
    ids, mask = torch.tensor([[2, 5, 3]] * 3), torch.ones(3, 3, dtype=torch.long)
    with torch.no_grad():
        assert a.eva_features(frames).shape == (3, 257, SMALL_EVA.width)
        out = a(frames, ids, mask)
        assert out.shape == (3, SMALL_QF.num_queries, SMALL_QF.width)
        assert torch.equal(out, b(frames, ids, mask))
        assert a(frames).shape == (3, SMALL_QF.num_queries, SMALL_QF.width)  # no instruction: queries only


@torch.no_grad()
def test_padded_instruction_tokens_are_masked():
    torch.manual_seed(3)
    enc = VisualEncoder(SMALL_EVA, SMALL_QF).eval()
    embeds = torch.randn(1, 257, SMALL_EVA.width)
    alone = enc.query(embeds, torch.tensor([[2, 7, 3]]), torch.ones(1, 3, dtype=torch.long))
    padded = enc.query(embeds, torch.tensor([[2, 7, 3, 0, 0]]), torch.tensor([[1, 1, 1, 0, 0]]))
    assert (alone - padded).abs().max().item() < 1e-6
    unmasked = enc.query(embeds, torch.tensor([[2, 7, 3, 0, 0]]), torch.ones(1, 5, dtype=torch.long))
    assert (alone - unmasked).abs().max().item() > 1e-4


def test_tiny_preset_builds_and_matches_its_tokenizer():
    cfg = ModelConfig.from_name("tiny")
    enc = VisualEncoder(cfg.encoders.eva, cfg.encoders.image_qformer, cfg.media.image_size).eval()
    tok = load_instruction_tokenizer(cfg.weights.qformer_tokenizer)
    assert len(tok) == cfg.encoders.image_qformer.vocab_size
    ids, mask = tok(["Describe the video", "What is said?"])
    frames = torch.randn(2, 3, cfg.media.image_size, cfg.media.image_size)
    with torch.no_grad():
        out = enc(frames, ids, mask)
    assert out.shape == (2, cfg.encoders.image_qformer.num_queries, cfg.encoders.image_qformer.width)
    assert torch.isfinite(out).all()


def test_input_checks():
    enc = VisualEncoder(SMALL_EVA, SMALL_QF)
    with pytest.raises(ValueError, match="224"):
        enc(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match=r"\(2, L\)"):
        enc(torch.zeros(2, 3, 224, 224), torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="64 positions"):
        enc(torch.zeros(1, 3, 224, 224), torch.ones(1, 65, dtype=torch.long), torch.ones(1, 65, dtype=torch.long))


# -------------------------------------------------------------------------------------------- tokenizer


def test_instruction_tokenizer_behaviour():
    tok = load_instruction_tokenizer("tiny")
    assert tok.hf.bos_token == "[DEC]" and tok.hf.bos_token_id == len(tok) - 1
    ids, mask = tok(["the video", "the video and the audio"])
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert ids[0, 0].item() == tok.hf.cls_token_id and mask[0].tolist().count(0) > 0  # padded to the longest
    assert mask[1].all()
    short = load_instruction_tokenizer(None, max_length=4)
    ids, _ = short(["the video and the audio"])
    full, _ = tok(["the video and the audio"])
    assert ids[0].tolist() == [full[0, 0].item(), *full[0, -3:].tolist()]  # [CLS] + the END of the text
    with pytest.raises(ValueError):
        tok("a bare string")


def test_instruction_tokenizer_sources(tmp_path):
    tiny = load_instruction_tokenizer("tiny")
    ib = tmp_path / "instructblip"
    shutil.copytree(tiny.hf.name_or_path, ib / "qformer_tokenizer")  # HF InstructBLIP layout
    assert len(load_instruction_tokenizer(ib)) == len(tiny)
    with pytest.raises(CheckpointError, match="no BERT tokenizer"):
        load_instruction_tokenizer(tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        load_instruction_tokenizer(tmp_path / "missing")
