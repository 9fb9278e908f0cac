"""The official delta checkpoint (`pytorch_model_4_5001.pt`, spec §7): key map to our module names, both ways.

The delta is a flat state dict of every trainable tensor of the official `OpenLLAMAPEFTModel`, aliased modules
saved once under their first name (`video_Qformer`, `video_query_tokens`, `llama_proj`, `ln_video`,
`video_frame_position_embedding`), LoRA under peft-0.5 names. The map is explicit; `low_Qformer.*` is built and
saved by the official code but never used when the Q-Former is shared (`ext_same_qformer: True`): it is reported
as known-unused, not loaded.

    official                                                   ours
    speech_pre_qformer_proj / beats_pre_qformer_proj           connector.sync.whisper_proj / beats_proj
    ln_video / video_frame_position_embedding                  connector.norm / connector.position
    low_query_tokens, video_query_tokens                       connector.queries.{0 (0.5 s), 1 (5 s)}
    video_Qformer.bert.embeddings.LayerNorm                    connector.qformers.0.query_norm
    video_Qformer.bert.encoder.layer.L.<part>                  connector.qformers.0.layers.L.<part'>
    llama_proj                                                 connector.proj
    llama_model.base_model.model.<...>.lora_{A,B}.default      llm.model.base_model.model.<...>.lora_{A,B}.default
"""

from __future__ import annotations

import re

from torch import Tensor

from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError

# official Q-Former layer part -> ours
_LAYER_PARTS = {
    "attention.self.query": "self_attn.q",
    "attention.self.key": "self_attn.k",
    "attention.self.value": "self_attn.v",
    "attention.output.dense": "self_attn.out",
    "attention.output.LayerNorm": "self_attn.norm",
    "crossattention.self.query": "cross_attn.q",
    "crossattention.self.key": "cross_attn.k",
    "crossattention.self.value": "cross_attn.v",
    "crossattention.output.dense": "cross_attn.out",
    "crossattention.output.LayerNorm": "cross_attn.norm",
    "encoder_causal_attention.self.query": "causal.q",
    "encoder_causal_attention.self.key": "causal.k",
    "encoder_causal_attention.self.value": "causal.v",
    "encoder_causal_attention.output.dense": "causal.out",
    "encoder_causal_attention.output.LayerNorm": "causal.norm",
    "intermediate_query.dense": "ffn.fc1",
    "output_query.dense": "ffn.fc2",
    "output_query.LayerNorm": "ffn.norm",
}
_FIXED = {
    "speech_pre_qformer_proj": "connector.sync.whisper_proj",
    "beats_pre_qformer_proj": "connector.sync.beats_proj",
    "ln_video": "connector.norm",
    "video_frame_position_embedding": "connector.position",
    "llama_proj": "connector.proj",
}
_QFORMER = re.compile(
    r"^(video|low)_Qformer\.bert\.(?:embeddings\.LayerNorm|encoder\.layer\.(\d+)\.(.+))\.(weight|bias)$"
)
_LORA = re.compile(r"^llama_model\.base_model\.model\.(.+\.lora_[AB])\.default\.weight$")
# buffers a ZeRO-3 consolidated save may add (spec §7.2): never weights
_BUFFERS = re.compile(r"(position_ids|rotary_emb\.inv_freq)$")


def official_to_ours(key: str, cfg: ModelConfig) -> str | None:
    """Our parameter name for an official delta key; None for known-unused keys. Raises on unknown keys."""
    levels = cfg.connector.levels
    if len(levels) != 2:
        raise CheckpointError(f"the official delta has 2 resolution levels, the config has {len(levels)}")
    head, _, tail = key.partition(".")
    if head in _FIXED and tail in ("weight", "bias"):
        return f"{_FIXED[head]}.{tail}"
    if key == "low_query_tokens":
        return "connector.queries.0"
    if key == "video_query_tokens":
        return "connector.queries.1"
    if m := _QFORMER.match(key):
        which, layer, part, kind = m.groups()
        if cfg.connector.share_qformer:
            if which == "low":
                return None  # trained-but-unused low_Qformer
            index = 0
        else:
            index = 0 if which == "low" else 1
        if layer is None:
            return f"connector.qformers.{index}.query_norm.{kind}"
        if part not in _LAYER_PARTS:
            raise CheckpointError(f"official delta: unknown Q-Former key {key}")
        return f"connector.qformers.{index}.layers.{layer}.{_LAYER_PARTS[part]}.{kind}"
    if m := _LORA.match(key):
        return f"llm.model.base_model.model.{m.group(1)}.default.weight"
    if _BUFFERS.search(key):
        return None
    raise CheckpointError(f"official delta: unexpected key {key}")


def ours_to_official(name: str, cfg: ModelConfig) -> str:
    """Inverse map, for exporting our trained weights in the official delta format."""
    for official, ours in _FIXED.items():
        if name.startswith(ours + "."):
            return official + name[len(ours) :]
    if name == "connector.queries.0":
        return "low_query_tokens"
    if name == "connector.queries.1":
        return "video_query_tokens"
    if m := re.match(r"^connector\.qformers\.(\d+)\.(.+)\.(weight|bias)$", name):
        index, part, kind = m.groups()
        which = "video" if cfg.connector.share_qformer or index == "1" else "low"
        if part == "query_norm":
            return f"{which}_Qformer.bert.embeddings.LayerNorm.{kind}"
        layer, _, sub = part.partition(".")[2].partition(".")
        official_part = {v: k for k, v in _LAYER_PARTS.items()}[sub]
        return f"{which}_Qformer.bert.encoder.layer.{layer}.{official_part}.{kind}"
    if m := re.match(r"^llm\.model\.base_model\.model\.(.+\.lora_[AB])\.default\.weight$", name):
        return f"llama_model.base_model.model.{m.group(1)}.default.weight"
    raise CheckpointError(f"{name} has no official delta name")


def convert_official_delta(delta: dict[str, Tensor], cfg: ModelConfig) -> tuple[dict[str, Tensor], list[str]]:
    """Official delta -> (our state dict, known-unused official keys)."""
    ours, unused = {}, []
    for key, value in delta.items():
        name = official_to_ours(key, cfg)
        if name is None:
            unused.append(key)
        else:
            ours[name] = value
    return ours, unused
