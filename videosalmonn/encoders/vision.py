"""Visual encoder: EVA-ViT-g/14 -> ln_vision -> InstructBLIP Q-Former, 32 instruction-aware tokens per frame.

Paper §3.1 and spec §2 ("InstructBLIP instruction"); official `videosalmonn:model/openllama.py::encode_video`:

    frames (N, 3, 224, 224)
      └─ EVA-ViT-g (pre-LN blocks, qkv bias [q, 0, v], GELU(erf), LN eps 1e-6, NO final norm) ─► (N, 257, We)
           └─ ln_vision (LayerNorm eps 1e-5) ─► (N, 257, We)
                └─ Q-Former( [32 query tokens | instruction tokens], cross-attention every 2nd layer )
                     ─► last_hidden_state[:, :32] ─► (N, 32, D)

The towers are transformers' `InstructBlipVisionModel` (EVA; its `post_layernorm` plays the role of LAVIS
`ln_vision`, whose eps is 1e-5 rather than the blocks' 1e-6) and `InstructBlipQFormerModel`, both in eager
attention and built from our config dataclasses. Attribute names follow Hugging Face's `InstructBlipModel`
(`vision_model`, `qformer`, `query_tokens`), so an HF checkpoint loads with the identity key map and the LAVIS
files go through the explicit map `lavis_eva_to_hf` / `lavis_instructblip_to_hf` below.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import (
    InstructBlipQFormerConfig,
    InstructBlipQFormerModel,
    InstructBlipVisionConfig,
    InstructBlipVisionModel,
)

from videosalmonn.config import EVAConfig, ImageQFormerConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.weights import (
    PICKLE_SUFFIXES,
    few,
    load_checked,
    read_hf_config,
    read_pickled_tensors,
    read_state_dict,
)

log = logging.getLogger(__name__)

LN_VISION_EPS = 1e-5  # LAVIS `ln_vision = nn.LayerNorm(width)`: torch's default eps, not EVA's 1e-6
QFORMER_DROPOUT = 0.1  # bert-base-uncased config (active only in train mode, as in the official model)
INIT_STD = 0.02  # LAVIS `init_Qformer`: query tokens ~ N(0, 0.02); also used for random towers
HF_INSTRUCTBLIP_PREFIXES = ("vision_model.", "qformer.", "query_tokens")  # what load_hf_instructblip reads


def vision_config(eva: EVAConfig, image_size: int) -> InstructBlipVisionConfig:
    if image_size % eva.patch_size:
        raise ValueError(f"image size {image_size} is not a multiple of the EVA patch size {eva.patch_size}")
    return InstructBlipVisionConfig(
        hidden_size=eva.width,
        intermediate_size=eva.mlp_width,
        num_hidden_layers=eva.depth,
        num_attention_heads=eva.num_heads,
        image_size=image_size,
        patch_size=eva.patch_size,
        hidden_act="gelu",
        layer_norm_eps=eva.eps,
        attention_dropout=0.0,
        qkv_bias=True,
        initializer_range=INIT_STD,
    )


def qformer_config(qf: ImageQFormerConfig, encoder_width: int) -> InstructBlipQFormerConfig:
    return InstructBlipQFormerConfig(
        vocab_size=qf.vocab_size,
        hidden_size=qf.width,
        num_hidden_layers=qf.depth,
        num_attention_heads=qf.num_heads,
        intermediate_size=qf.mlp_width,
        hidden_act="gelu",
        hidden_dropout_prob=QFORMER_DROPOUT,
        attention_probs_dropout_prob=QFORMER_DROPOUT,
        max_position_embeddings=qf.max_positions,
        layer_norm_eps=qf.eps,
        pad_token_id=0,
        cross_attention_frequency=qf.cross_attention_every,
        encoder_hidden_size=encoder_width,
        initializer_range=INIT_STD,
    )


class VisualEncoder(nn.Module):
    """EVA-ViT-g + ln_vision + InstructBLIP Q-Former (frozen in video-SALMONN).

    Example:
        >>> enc = VisualEncoder(EVAConfig(width=48, depth=2, num_heads=4, mlp_width=209),
        ...                     ImageQFormerConfig(width=64, depth=4, num_heads=4, mlp_width=128, vocab_size=550))
        >>> enc(torch.randn(2, 3, 224, 224), ids, mask).shape        # ids, mask: (2, L) from InstructionTokenizer
        torch.Size([2, 32, 64])
    """

    def __init__(self, eva: EVAConfig, qformer: ImageQFormerConfig, image_size: int = 224):
        super().__init__()
        self.eva_config, self.qformer_config, self.image_size = eva, qformer, image_size
        self.vision_model = InstructBlipVisionModel._from_config(
            vision_config(eva, image_size), attn_implementation="eager"
        )
        # HF builds post_layernorm with the blocks' eps; LAVIS ln_vision uses 1e-5.
        self.vision_model.post_layernorm = nn.LayerNorm(eva.width, eps=LN_VISION_EPS)
        self.qformer = InstructBlipQFormerModel._from_config(
            qformer_config(qformer, eva.width), attn_implementation="eager"
        )
        self.query_tokens = nn.Parameter(torch.randn(1, qformer.num_queries, qformer.width) * INIT_STD)

    @property
    def ln_vision(self) -> nn.LayerNorm:
        return self.vision_model.post_layernorm

    def eva_features(self, frames: Tensor) -> Tensor:
        """frames (N, 3, S, S) CLIP-normalised -> EVA output before ln_vision (N, 1 + (S/P)^2, We)."""
        n, c, h, w = frames.shape
        if (c, h, w) != (3, self.image_size, self.image_size):
            raise ValueError(f"frames must be (N, 3, {self.image_size}, {self.image_size}), got {tuple(frames.shape)}")
        x = self.vision_model.embeddings(frames)  # (N, 257, We): [CLS] + patches + pos
        return self.vision_model.encoder(inputs_embeds=x).last_hidden_state

    def query(
        self, image_embeds: Tensor, instruction_ids: Tensor | None = None, instruction_mask: Tensor | None = None
    ) -> Tensor:
        """Q-Former over ln_vision outputs (N, 257, We) and the instruction (N, L) -> query outputs (N, Q, D)."""
        n, q = image_embeds.shape[0], self.query_tokens.shape[1]
        queries = self.query_tokens.expand(n, -1, -1)  # (N, Q, D)
        if instruction_ids is None:
            out = self.qformer(input_ids=None, query_embeds=queries, encoder_hidden_states=image_embeds)
            return out.last_hidden_state
        self._check_instruction(n, instruction_ids, instruction_mask)
        mask = torch.cat([instruction_mask.new_ones(n, q), instruction_mask], dim=1)  # (N, Q + L)
        out = self.qformer(
            input_ids=instruction_ids, attention_mask=mask, query_embeds=queries, encoder_hidden_states=image_embeds
        )
        return out.last_hidden_state[:, :q]  # (N, Q + L, D) -> (N, Q, D)

    def forward(
        self, frames: Tensor, instruction_ids: Tensor | None = None, instruction_mask: Tensor | None = None
    ) -> Tensor:
        """frames (N, 3, S, S), instruction (N, L) ids + mask (None: queries only) -> (N, Q, D)."""
        image_embeds = self.ln_vision(self.eva_features(frames))  # (N, 257, We)
        return self.query(image_embeds, instruction_ids, instruction_mask)

    def _check_instruction(self, n: int, ids: Tensor, mask: Tensor | None):
        if mask is None or ids.shape != mask.shape or ids.dim() != 2 or ids.shape[0] != n:
            raise ValueError(
                f"instruction ids {tuple(ids.shape)} and mask "
                f"{None if mask is None else tuple(mask.shape)} must both be ({n}, L)"
            )
        if ids.shape[1] > self.qformer_config.max_positions:
            raise ValueError(
                f"instruction of {ids.shape[1]} tokens is longer than the Q-Former's "
                f"{self.qformer_config.max_positions} positions"
            )


# ----------------------------------------------------------------------------------------------- loading


def load_vision_weights(
    encoder: VisualEncoder,
    instructblip: str | Path,
    eva_vit: str | Path | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> list[str]:
    """Load an HF InstructBLIP id/dir/safetensors file, or the two LAVIS `.pth` files (into an encoder built empty:
    straight onto `device` in `dtype`).

    Returns the checkpoint keys known to be unused (`"<file>: <key>"` for LAVIS files).
    """
    path = Path(str(instructblip)).expanduser()
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        if eva_vit is None:
            raise CheckpointError(
                f"{instructblip}: a LAVIS InstructBLIP file holds no EVA-ViT weights; "
                "give weights.eva_vit (eva_vit_g.pth) too"
            )
        return load_lavis(encoder, eva_vit, instructblip, device=device, dtype=dtype)
    if eva_vit is not None:
        raise CheckpointError(
            f"{instructblip}: a Hugging Face InstructBLIP model holds EVA-ViT already; "
            f"do not also give weights.eva_vit ({eva_vit})"
        )
    return load_hf_instructblip(encoder, instructblip, device=device, dtype=dtype)


def load_lavis(encoder: VisualEncoder, eva_vit: str | Path, instructblip: str | Path, **place) -> list[str]:
    """LAVIS `eva_vit_g.pth` (flat state dict) + `instruct_blip_vicuna13b_trimmed.pth` (`{'model': sd}`)."""
    eva_sd, eva_unused = lavis_eva_to_hf(read_pickled_tensors(eva_vit), encoder.eva_config.depth, eva_vit)
    ib_sd, ib_unused = lavis_instructblip_to_hf(read_pickled_tensors(instructblip, wrapped_in="model"), instructblip)
    sd = {**eva_sd, **ib_sd}
    source = f"{eva_vit} + {instructblip}"
    check_dims(sd, encoder, source)
    load_checked(encoder, sd, source=source, **place)
    unused = [f"{eva_vit}: {k}" for k in eva_unused] + [f"{instructblip}: {k}" for k in ib_unused]
    log.info("visual encoder: loaded %s; %d known-unused key(s): %s", source, len(unused), ", ".join(unused))
    return unused


def load_hf_instructblip(encoder: VisualEncoder, source: str | Path, **place) -> list[str]:
    """`vision_model.*`, `qformer.*`, `query_tokens` of an HF InstructBLIP model; the LLM is never read."""
    vision, qformer, query = HF_INSTRUCTBLIP_PREFIXES
    sd = {f"{vision}{k}": v for k, v in read_state_dict(source, vision).items()}
    sd.update({f"{qformer}{k}": v for k, v in read_state_dict(source, qformer).items()})
    sd[query] = _one(read_state_dict(source, query), source, query)
    unused = [k for k in sd if k.endswith("embeddings.position_ids")]  # old HF files kept this buffer
    for k in unused:
        _check_arange(sd.pop(k), source, k)
    check_dims(sd, encoder, str(source), read_hf_config(source))
    load_checked(encoder, sd, source=str(source), **place)
    log.info("visual encoder: loaded %s; known-unused: %s", source, ", ".join(unused) or "none")
    return unused


def lavis_eva_to_hf(sd: dict[str, Tensor], depth: int, source: str | Path = "eva_vit") -> tuple[dict, list[str]]:
    """LAVIS EVA-ViT keys -> `vision_model.*`. The file may hold one block more than `depth` (LAVIS drops it).

    cls_token -> embeddings.class_embedding, pos_embed -> embeddings.position_embedding,
    patch_embed.proj -> embeddings.patch_embedding, blocks.i.{norm1, norm2} -> encoder.layers.i.{layer_norm1,
    layer_norm2}, blocks.i.attn.qkv.weight -> self_attn.qkv.weight, [q_bias, 0, v_bias] -> self_attn.qkv.bias,
    blocks.i.attn.proj -> self_attn.projection, blocks.i.mlp.fc{1,2} -> mlp.fc{1,2}.
    """
    n_blocks = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    if n_blocks not in (depth, depth + 1):
        raise CheckpointError(
            f"{source}: holds {n_blocks} EVA blocks, config encoders.eva.depth = {depth} "
            f"(expected {depth} or {depth + 1}: LAVIS drops the last block)"
        )
    fixed = {
        "cls_token": "embeddings.class_embedding",
        "pos_embed": "embeddings.position_embedding",
        "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
        "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    }
    block = {
        "norm1": "layer_norm1",
        "norm2": "layer_norm2",
        "attn.qkv.weight": "self_attn.qkv.weight",
        "attn.proj": "self_attn.projection",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    out, unused, unmapped = {}, [], []
    for key, value in sd.items():
        m = re.match(r"blocks\.(\d+)\.(.+)$", key)
        if key in fixed:
            out[f"vision_model.{fixed[key]}"] = value
        elif key.startswith(("norm.", "fc_norm.", "head.")) or (m and int(m.group(1)) >= depth):
            unused.append(key)  # LAVIS forward_features stops after blocks[depth - 1]
        elif m and m.group(2) in ("attn.q_bias", "attn.v_bias"):
            continue  # merged into qkv.bias below
        elif m and (name := _rename(m.group(2), block)):
            out[f"vision_model.encoder.layers.{m.group(1)}.{name}"] = value
        else:
            unmapped.append(key)
    if unmapped:
        raise CheckpointError(f"{source}: {len(unmapped)} key(s) not in the LAVIS EVA-ViT map: {few(unmapped)}")
    for i in range(min(depth, n_blocks)):
        q, v = sd.get(f"blocks.{i}.attn.q_bias"), sd.get(f"blocks.{i}.attn.v_bias")
        if q is None or v is None:
            raise CheckpointError(f"{source}: blocks.{i}.attn.q_bias / v_bias missing")
        out[f"vision_model.encoder.layers.{i}.self_attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out, sorted(unused)


def lavis_instructblip_to_hf(sd: dict[str, Tensor], source: str | Path = "instructblip") -> tuple[dict, list[str]]:
    """LAVIS InstructBLIP keys -> HF names; `Qformer.cls.*`, `llm_proj.*`, `t5_proj.*` are known-unused.

    query_tokens -> query_tokens, ln_vision -> vision_model.post_layernorm,
    Qformer.bert.embeddings.LayerNorm -> qformer.embeddings.layernorm,
    Qformer.bert.encoder.layer.i.{attention,crossattention}.self -> qformer.encoder.layer.i.{...}.attention,
    every other Qformer.bert.X -> qformer.X; the buffer Qformer.bert.embeddings.position_ids must be arange.
    """
    out, unused, unmapped = {}, [], []
    for key, value in sd.items():
        if key.startswith(("Qformer.cls.", "llm_proj.", "t5_proj.")):
            unused.append(key)
        elif key == "Qformer.bert.embeddings.position_ids":
            _check_arange(value, source, key)
            unused.append(key)  # a buffer, rebuilt by the HF module
        elif key == "query_tokens":
            out[key] = value
        elif key.startswith("ln_vision."):
            out["vision_model.post_layernorm." + key.removeprefix("ln_vision.")] = value
        elif key.startswith("Qformer.bert."):
            name = key.removeprefix("Qformer.bert.").replace("embeddings.LayerNorm.", "embeddings.layernorm.")
            out["qformer." + re.sub(r"\.(attention|crossattention)\.self\.", r".\1.attention.", name)] = value
        else:
            unmapped.append(key)
    if unmapped:
        raise CheckpointError(f"{source}: {len(unmapped)} key(s) not in the LAVIS InstructBLIP map: {few(unmapped)}")
    return out, sorted(unused)


def check_dims(sd: dict[str, Tensor], encoder: VisualEncoder, source: str, hf_config: dict | None = None):
    """Compare the dims visible in an HF-named state dict (and config.json) with our config; one clear error."""
    eva, qf = encoder.eva_config, encoder.qformer_config
    found, expected = {}, {}

    def add(name: str, key: str, dim: int, want: int):
        if key in sd:
            found[name], expected[name] = sd[key].shape[dim], want

    add("encoders.eva.width", "vision_model.embeddings.class_embedding", -1, eva.width)
    add("encoders.eva.patch_size", "vision_model.embeddings.patch_embedding.weight", -1, eva.patch_size)
    add(
        "image positions (1 + (image_size/patch)^2)",
        "vision_model.embeddings.position_embedding",
        1,
        1 + (encoder.image_size // eva.patch_size) ** 2,
    )
    add("encoders.eva.mlp_width", "vision_model.encoder.layers.0.mlp.fc1.weight", 0, eva.mlp_width)
    add("encoders.image_qformer.width", "qformer.embeddings.word_embeddings.weight", 1, qf.width)
    add("encoders.image_qformer.vocab_size", "qformer.embeddings.word_embeddings.weight", 0, qf.vocab_size)
    add("encoders.image_qformer.max_positions", "qformer.embeddings.position_embeddings.weight", 0, qf.max_positions)
    add("encoders.image_qformer.mlp_width", "qformer.encoder.layer.0.intermediate_query.dense.weight", 0, qf.mlp_width)
    add(
        "Q-Former cross-attention width (= encoders.eva.width)",
        "qformer.encoder.layer.0.crossattention.attention.key.weight",
        1,
        eva.width,
    )
    add("encoders.image_qformer.num_queries", "query_tokens", 1, qf.num_queries)
    found["encoders.eva.depth"] = _count(sd, r"vision_model\.encoder\.layers\.(\d+)\.")
    expected["encoders.eva.depth"] = eva.depth
    found["encoders.image_qformer.depth"] = _count(sd, r"qformer\.encoder\.layer\.(\d+)\.")
    expected["encoders.image_qformer.depth"] = qf.depth
    cross_key = r"qformer\.encoder\.layer\.(\d+)\.crossattention"
    cross = sorted({int(m.group(1)) for k in sd if (m := re.match(cross_key, k))})
    found["cross-attention layers (encoders.image_qformer.cross_attention_every)"] = cross
    expected["cross-attention layers (encoders.image_qformer.cross_attention_every)"] = [
        i for i in range(found["encoders.image_qformer.depth"]) if i % qf.cross_attention_every == 0
    ]
    if hf_config:
        for name, section, key, want in (
            ("encoders.eva.num_heads", "vision_config", "num_attention_heads", eva.num_heads),
            ("encoders.image_qformer.num_heads", "qformer_config", "num_attention_heads", qf.num_heads),
        ):
            if key in hf_config.get(section, {}):
                found[name], expected[name] = hf_config[section][key], want
    bad = [
        f"{name}: checkpoint {found[name]}, config {expected[name]}" for name in found if found[name] != expected[name]
    ]
    if bad:
        raise CheckpointError(f"{source}: dims differ from the config: " + "; ".join(bad))


def _check_arange(value: Tensor, source, key: str):
    if not torch.equal(value.flatten(), torch.arange(value.numel(), dtype=value.dtype)):
        raise CheckpointError(f"{source}: {key} is not 0..{value.numel() - 1}")


def _rename(rest: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old) :]
    return None


def _one(sd: dict[str, Tensor], source, name: str) -> Tensor:
    if list(sd) != [""]:
        raise CheckpointError(f"{source}: expected one tensor named {name}, found {sorted(name + k for k in sd)}")
    return sd[""]


def _count(sd: dict, pattern: str) -> int:
    return len({int(m.group(1)) for k in sd if (m := re.match(pattern, k))})
