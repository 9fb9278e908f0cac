"""Presets: the released model builds with the official shapes (meta device); presets state only what differs."""

from importlib import resources

import pytest
import torch
import yaml

from videosalmonn.config import ModelConfig, from_dict, preset_names, to_dict
from videosalmonn.errors import ConfigError
from videosalmonn.model import VideoSalmonn, trainable_names
from videosalmonn.official.delta import ours_to_official

# official delta keys and shapes (spec §7.2)
OFFICIAL_SHAPES = {
    "video_query_tokens": (1, 30, 768),
    "low_query_tokens": (1, 3, 768),
    "speech_pre_qformer_proj.weight": (768, 1280),
    "beats_pre_qformer_proj.weight": (768, 768),
    "ln_video.weight": (2304,),
    "video_frame_position_embedding.weight": (4096, 2304),
    "video_Qformer.bert.embeddings.LayerNorm.weight": (768,),
    "video_Qformer.bert.encoder.layer.1.attention.self.query.weight": (768, 768),
    "video_Qformer.bert.encoder.layer.0.crossattention.self.key.weight": (768, 2304),
    "video_Qformer.bert.encoder.layer.1.intermediate_query.dense.weight": (3072, 768),
    "video_Qformer.bert.encoder.layer.0.output_query.dense.weight": (768, 3072),
    "video_Qformer.bert.encoder.layer.1.encoder_causal_attention.self.value.weight": (2304, 2304),
    "video_Qformer.bert.encoder.layer.0.encoder_causal_attention.output.LayerNorm.weight": (2304,),
    "llama_proj.weight": (5120, 1536),
    "llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": (32, 5120),
    "llama_model.base_model.model.model.layers.39.self_attn.o_proj.lora_B.default.weight": (5120, 32),
}


def test_video_salmonn_13b_has_the_official_trainable_shapes():
    cfg = ModelConfig.from_name("video-salmonn-13b")
    with torch.device("meta"):
        model = VideoSalmonn.from_config(cfg)
    params = dict(model.named_parameters())
    official = {ours_to_official(n, cfg): tuple(params[n].shape) for n in trainable_names(model)}
    for key, shape in OFFICIAL_SHAPES.items():
        assert official[key] == shape, key
    lora = sum(params[n].numel() for n in trainable_names(model) if ".lora_" in n)
    base = sum(p.numel() for n, p in params.items() if n.startswith("llm.") and ".lora_" not in n)
    assert lora == 40 * 4 * 2 * 32 * 5120 and round(100 * lora / base, 2) == 0.40  # "0.4 %" of the LLM
    assert len(official) == 405 and not any(k.startswith("low_Qformer") for k in official)
    eva = sum(p.numel() for n, p in params.items() if n.startswith("encoder.vision.vision_model"))
    assert 0.95e9 < eva < 1.05e9  # EVA-ViT-g, 39 blocks


# ------------------------------------------------------------------------------------ defaults written once

# The 13B config as loaded before its preset was cut down to what differs from the defaults (every leaf, dotted).
VIDEO_SALMONN_13B = {
    "name": "video-salmonn-13b",
    "dtype": "float16",
    "seed": 0,
    "media.frame_sampling": "official",
    "media.audio_channels": "first",
    "media.limits": "none",
    "media.beats_fp16_waveform": True,
    "media.image_size": 224,
    "media.max_frame_pixels": 8192 * 8192,  # decoded-pixel budget (not a model property; media/budget.py)
    "media.image_spotlight": None,  # an image is one frame over image_slots (spotlight: paper App. I, off)
    "encoders.eva.patch_size": 14,
    "encoders.eva.width": 1408,
    "encoders.eva.depth": 39,
    "encoders.eva.num_heads": 16,
    "encoders.eva.mlp_width": 6144,
    "encoders.eva.eps": 1e-06,
    "encoders.image_qformer.width": 768,
    "encoders.image_qformer.depth": 12,
    "encoders.image_qformer.num_heads": 12,
    "encoders.image_qformer.mlp_width": 3072,
    "encoders.image_qformer.cross_attention_every": 2,
    "encoders.image_qformer.num_queries": 32,
    "encoders.image_qformer.vocab_size": 30523,
    "encoders.image_qformer.max_positions": 512,
    "encoders.image_qformer.eps": 1e-12,
    "encoders.image_qformer.use_instruction": True,
    "encoders.whisper.n_mels": 80,
    "encoders.whisper.width": 1280,
    "encoders.whisper.depth": 32,
    "encoders.whisper.num_heads": 20,
    "encoders.whisper.mlp_width": 5120,
    "encoders.whisper.max_positions": 1500,
    "encoders.beats.patch_dim": 512,
    "encoders.beats.width": 768,
    "encoders.beats.depth": 12,
    "encoders.beats.num_heads": 12,
    "encoders.beats.mlp_width": 3072,
    "encoders.beats.conv_pos": 128,
    "encoders.beats.conv_pos_groups": 16,
    "encoders.beats.num_buckets": 320,
    "encoders.beats.max_distance": 800,
    "encoders.beats.deep_norm": True,
    "encoders.beats.gru_rel_pos": True,
    "encoders.beats.conv_bias": False,
    "connector.levels": [{"frames": 1, "queries": 3}, {"frames": 10, "queries": 30}],
    "connector.share_qformer": True,
    "connector.causal": "future",
    "connector.depth": 2,
    "connector.width": 768,
    "connector.num_heads": 12,
    "connector.mlp_width": 3072,
    "connector.eps": 1e-12,
    "connector.joint_norm_eps": 1e-05,
    "connector.max_positions": 4096,
    "connector.image_slots": 60,
    "llm.vocab_size": 32000,
    "llm.width": 5120,
    "llm.depth": 40,
    "llm.num_heads": 40,
    "llm.num_kv_heads": 40,
    "llm.mlp_width": 13824,
    "llm.max_positions": 4096,
    "llm.rms_eps": 1e-05,
    "llm.rope_theta": 10000.0,
    "llm.prompt_style": "official",
    "llm.max_text_tokens": 512,
    "llm.lora.r": 32,
    "llm.lora.alpha": 32.0,
    "llm.lora.dropout": 0.1,
    "llm.lora.targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "llm.quantization": "none",
    "llm.attention": "eager",
    "llm.device_map": None,  # the whole LLM on the model's device
    "llm.max_memory": None,
    "llm.offload_folder": None,
    "loss.diversity_weight": 0.0,
    "loss.diversity_levels": [-1],
    "loss.lm_weight": 1.0,
    "loss.alignment_weight": 0.0,
    "loss.alignment_tau": 0.02,
    "loss.alignment_blank": 0,
    "generation.max_new_tokens": 512,
    "generation.num_beams": 5,
    "generation.do_sample": False,
    "generation.temperature": 1.0,
    "generation.top_p": 1.0,
    "generation.top_k": 0,
    "generation.repetition_penalty": 1.5,
    "generation.length_penalty": 1.0,
    "generation.seed": None,
    "weights.eva_vit": None,
    "weights.instructblip": "Salesforce/instructblip-vicuna-13b",
    "weights.qformer_tokenizer": None,  # the InstructBLIP model's own qformer_tokenizer/
    "weights.whisper": "openai/whisper-large-v2",
    "weights.beats": None,
    "weights.llm": "lmsys/vicuna-13b-v1.5",
    "weights.tokenizer": None,
    "weights.delta": None,
    "weights.delta_sha256": None,
    "weights.towers": None,
    "weights.random_towers": [],
    "weights.delta_required": True,  # inference without the trained delta is refused
}

# What the 13B preset states: only where the released model differs from the dataclass defaults.
VIDEO_SALMONN_13B_OVERRIDES = [
    "dtype",
    "media.audio_channels",
    "media.beats_fp16_waveform",
    "media.frame_sampling",
    "name",
    "weights.delta_required",
    "weights.instructblip",
    "weights.llm",
    "weights.whisper",
]


def flat(tree: dict, prefix: str = "") -> dict:
    """Nested mappings -> {dotted.key: leaf}; lists and scalars are leaves."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        out.update(flat(value, path) if isinstance(value, dict) else {path: value})
    return out


def preset_data(name: str) -> dict:
    return yaml.safe_load((resources.files("videosalmonn.presets") / f"{name}.yaml").read_text()) or {}


def without(tree: dict, path: str) -> dict:
    """A copy of nested mappings with the dotted key removed."""
    head, _, rest = path.partition(".")
    if not rest:
        return {k: v for k, v in tree.items() if k != head}
    return {**tree, head: without(tree[head], rest)}


def test_video_salmonn_13b_loads_unchanged():
    loaded = flat(to_dict(ModelConfig.from_name("video-salmonn-13b")))
    assert set(loaded) == set(VIDEO_SALMONN_13B)
    assert {k: loaded[k] for k in VIDEO_SALMONN_13B} == VIDEO_SALMONN_13B


def test_video_salmonn_13b_preset_states_only_what_differs():
    assert sorted(flat(preset_data("video-salmonn-13b"))) == VIDEO_SALMONN_13B_OVERRIDES


@pytest.mark.parametrize("name", preset_names())
def test_presets_set_no_key_to_its_default(name):
    """Dropping any key of a preset changes the config it loads (or makes it invalid): no key restates a default."""
    data = preset_data(name)
    config = from_dict(ModelConfig, data)
    restated = []
    for key in flat(data):
        try:
            restated += [key] if from_dict(ModelConfig, without(data, key)) == config else []
        except ConfigError:
            pass  # the key is needed for a valid config: it differs
    assert flat(data) and restated == [], f"preset {name} restates the defaults of {restated}"
