"""A golden directory (the layout of `../shared/golden/official_v1`): its model config, cases and recorded values.

The config is derived from the directory's own files wherever they hold the facts (HF config.json files, the
BEATs `cfg`, tensor shapes of the LAVIS and delta checkpoints, the official `test_effective.yaml` values in
golden.json), and from golden.json's `tiny_configs` where only the official code's hard-coded values exist
(EVA heads). Media and numerics follow the official path in fp32 with the fp16 casts neutralised, as recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from videosalmonn.config import (
    ConnectorConfig,
    EncodersConfig,
    EVAConfig,
    GenerationConfig,
    ImageQFormerConfig,
    LLMConfig,
    LoRAConfig,
    LossConfig,
    MediaConfig,
    ModelConfig,
    ResolutionLevel,
    WeightsConfig,
    WhisperEncoderConfig,
)
from videosalmonn.encoders.beats import beats_config_from_official
from videosalmonn.errors import CheckpointError
from videosalmonn.weights import load_pickle, read_tensors

MEDIA_PREFIX = "./dummy/"  # how the official manifests name the media folder


@dataclass
class GoldenCase:
    name: str
    data_type: str  # official modality: audiovideoimage / audioimage / audio
    entry: dict  # the manifest entry (image_name, conversation)
    expected: dict  # golden.json cases.<name>
    tensors: dict[str, torch.Tensor]


class GoldenDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta = self.root / "golden.json"
        if not meta.is_file():
            raise CheckpointError(f"{self.root}: not a golden directory (no golden.json)")
        self.meta = json.loads(meta.read_text())
        self.ckpt = self.root / "ckpt"

    def path(self, official_path: str) -> Path:
        """A manifest path (`./dummy/x.mp4`) -> the file in this directory's media/."""
        name = official_path[len(MEDIA_PREFIX) :] if official_path.startswith(MEDIA_PREFIX) else official_path
        return self.root / "media" / name

    def cases(self) -> list[GoldenCase]:
        from safetensors.torch import load_file

        out = []
        for name, expected in self.meta["cases"].items():
            entry = expected["manifest"][0]
            tensors = load_file(str(self.root / "tensors" / f"{name}.safetensors"))
            out.append(GoldenCase(name, expected["modality"], entry, expected, tensors))
        return out

    def dummy_audio(self) -> Path:
        """The audio the official test dataset pairs with every video-only/image-only sample (spec §1.1)."""
        entries = json.loads((self.root / "manifests" / "dummy_audio.json").read_text())
        return self.path(entries[0]["image_name"])

    def weights(self) -> WeightsConfig:
        c = self.ckpt
        return WeightsConfig(
            eva_vit=str(c / "pretrained_ckpt" / "eva_vit_g.pth"),
            instructblip=str(c / "pretrained_ckpt" / "instruct_blip_vicuna13b_trimmed.pth"),
            qformer_tokenizer=str(c / "hf" / "bert-base-uncased"),
            whisper=str(c / "hf" / "openai--whisper-large-v2"),
            beats=str(c / "pretrained_ckpt" / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"),
            llm=str(_only_dir(c, "vicuna")),
            delta=str(c / "MultiResQFormer" / "pytorch_model_4_5001.pt"),
        )

    def diversity_weight(self) -> float:
        """The diversity-loss factor of the recorded teacher-forced forwards (`train_div`; 0 if none)."""
        factors = {c["train_div"]["diversity_loss_factor"] for c in self.meta["cases"].values() if "train_div" in c}
        if len(factors) > 1:
            raise CheckpointError(f"{self.root}: cases disagree on the diversity-loss factor {sorted(factors)}")
        return factors.pop() if factors else 0.0

    def config(self) -> ModelConfig:
        eff = self.meta["effective_config"]
        tiny = self.meta.get("tiny_configs", {})
        w = self.weights()
        bert = json.loads((Path(w.qformer_tokenizer) / "config.json").read_text())
        delta = read_tensors(w.delta)
        encoders = EncodersConfig(
            _eva(read_tensors(w.eva_vit), tiny.get("eva_vit", {})),
            _image_qformer(bert, load_pickle(w.instructblip)["model"], eff),
            _whisper(json.loads((Path(w.whisper) / "config.json").read_text())),
            beats_config_from_official(load_pickle(w.beats)["cfg"]),
        )
        media = MediaConfig(
            frame_sampling="official", audio_channels="first", limits="official", beats_fp16_waveform=False
        )
        return ModelConfig(
            name=f"golden:{self.root.name}",
            media=media,
            encoders=encoders,
            connector=_connector(eff, bert, delta),
            llm=_llm(json.loads((Path(w.llm) / "config.json").read_text()), eff),
            loss=LossConfig(diversity_weight=self.diversity_weight()),
            generation=GenerationConfig(max_new_tokens=eff["max_tgt_len"], num_beams=5, repetition_penalty=1.5),
            weights=w,
            dtype="float32",
        )


def _eva(sd: dict, tiny: dict) -> EVAConfig:
    width = sd["pos_embed"].shape[-1]
    return EVAConfig(
        patch_size=sd["patch_embed.proj.weight"].shape[-1],
        width=width,
        depth=_count(sd, "blocks.") - 1,  # the file holds one block more (spec §7.3)
        num_heads=tiny.get("num_heads", width // 88),  # official: 1408 // 88 = 16
        mlp_width=sd["blocks.0.mlp.fc1.weight"].shape[0],
        eps=tiny.get("norm_layer_eps", 1e-6),
    )


def _image_qformer(bert: dict, iblip: dict, eff: dict) -> ImageQFormerConfig:
    return ImageQFormerConfig(
        width=bert["hidden_size"],
        depth=bert["num_hidden_layers"],
        num_heads=bert["num_attention_heads"],
        mlp_width=bert["intermediate_size"],
        cross_attention_every=2,
        num_queries=iblip["query_tokens"].shape[1],
        vocab_size=iblip["Qformer.bert.embeddings.word_embeddings.weight"].shape[0],
        max_positions=bert["max_position_embeddings"],
        eps=bert["layer_norm_eps"],
        use_instruction=eff["instructblip"] == "true",
    )


def _whisper(whisper: dict) -> WhisperEncoderConfig:
    return WhisperEncoderConfig(
        n_mels=whisper["num_mel_bins"],
        width=whisper["d_model"],
        depth=whisper["encoder_layers"],
        num_heads=whisper["encoder_attention_heads"],
        mlp_width=whisper["encoder_ffn_dim"],
        max_positions=whisper["max_source_positions"],
    )


def _connector(eff: dict, bert: dict, delta: dict) -> ConnectorConfig:
    fine, coarse = eff["low_groupsize"], eff["groupsize"]
    return ConnectorConfig(
        levels=(
            ResolutionLevel(fine, int(eff["num_video_query"] * fine / coarse)),
            ResolutionLevel(coarse, eff["num_video_query"]),
        ),
        share_qformer=bool(eff["ext_same_qformer"]),
        causal="future" if eff["causal_attention"] == "true" else "none",
        depth=_count(delta, "video_Qformer.bert.encoder.layer."),
        width=bert["hidden_size"],
        num_heads=bert["num_attention_heads"],
        mlp_width=bert["intermediate_size"],
        eps=bert["layer_norm_eps"],
        joint_norm_eps=1e-5,
        max_positions=delta["video_frame_position_embedding.weight"].shape[0],
    )


def _llm(llama: dict, eff: dict) -> LLMConfig:
    lora = LoRAConfig(
        r=eff["yu_lora_r"],
        alpha=eff["yu_lora_alpha"],
        dropout=eff["yu_lora_dropout"],
        targets=tuple(eff["lora_target_modules"]),
    )
    return LLMConfig(
        vocab_size=llama["vocab_size"],
        width=llama["hidden_size"],
        depth=llama["num_hidden_layers"],
        num_heads=llama["num_attention_heads"],
        num_kv_heads=llama.get("num_key_value_heads", llama["num_attention_heads"]),
        mlp_width=llama["intermediate_size"],
        max_positions=llama["max_position_embeddings"],
        rms_eps=llama["rms_norm_eps"],
        rope_theta=llama.get("rope_theta", 10000.0),
        prompt_style="official",
        max_text_tokens=eff["max_tgt_len"],
        lora=lora,
    )


def _count(sd: dict, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})


def _only_dir(root: Path, contains: str) -> Path:
    found = [p for p in root.iterdir() if p.is_dir() and contains in p.name]
    if len(found) != 1:
        raise CheckpointError(f"{root}: expected one LLM directory named *{contains}*, found {len(found)}")
    return found[0]
