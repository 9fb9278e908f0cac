"""The released-model preset builds with the official shapes (on the meta device: no memory, no weights)."""

import torch

from videosalmonn.config import ModelConfig
from videosalmonn.model import VideoSalmonn, trainable_names
from videosalmonn.official.delta import ours_to_official

# official delta keys and shapes (spec §7.2)
OFFICIAL_SHAPES = {
    "video_query_tokens": (1, 30, 768), "low_query_tokens": (1, 3, 768),
    "speech_pre_qformer_proj.weight": (768, 1280), "beats_pre_qformer_proj.weight": (768, 768),
    "ln_video.weight": (2304,), "video_frame_position_embedding.weight": (4096, 2304),
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
    assert lora == 40 * 4 * 2 * 32 * 5120 and round(100 * lora / base, 2) == 0.40     # "0.4 %" of the LLM
    assert len(official) == 405 and not any(k.startswith("low_Qformer") for k in official)
    eva = sum(p.numel() for n, p in params.items() if n.startswith("encoder.vision.vision_model"))
    assert 0.95e9 < eva < 1.05e9                                                        # EVA-ViT-g, 39 blocks
