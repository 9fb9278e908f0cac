"""Exporting a trained checkpoint: the official delta format, our HF-style directory, a peft adapter, and a merged
Hugging Face model directory.

    export_official(model, "pytorch_model.pt")
        the official flat state dict of the trainable tensors under the official names (spec §7), loadable by the
        official code's non-strict `load_state_dict` and by our `weights.delta`
    checkpoint.save_pretrained(model, "hf/")  (`--hf`)
        hf/model.yaml + hf/model.safetensors: the trained tensors and references to the frozen parts, which
        `--model hf/` (and, once pushed to the hub, `--model owner/name`) loads
    export_peft(model, "adapter/")
        adapter/adapter_config.json + adapter_model.safetensors: the LoRA as a peft adapter under peft's own key
        names (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), r / lora_alpha / lora_dropout as
        trained; `peft.PeftModel.from_pretrained(base_llm, "adapter/")` gives our LLM's logits (the connector is
        not in it: the adapter is the LLM half of the model)
    export_merged(model, tokenizer, "merged/")
        merged/llm/                  the LLM with LoRA merged into its weights (peft `merge_and_unload`), saved with
                                     `save_pretrained` together with its tokenizer: a plain HF causal LM
        merged/connector.safetensors the connector (the model's only trained part once LoRA is merged)
        merged/model.yaml            the model config for it: `llm.lora: null`, `weights.llm: llm`,
                                     `weights.delta: connector.safetensors` (relative to the export directory,
                                     which can move), the encoders as trained (seeded-random towers listed
                                     in `weights.random_towers`); `--model merged/` loads it

Merging adds B·A·scale into W in the LLM's storage dtype: in fp16/bf16 this rounds differently from the unmerged
forward (spec §6.1), so the merged model is close to, not bit-identical with, the trained one.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from videosalmonn.checkpoint import atomic_write, export_official_delta, load_model, load_trainable, reference
from videosalmonn.config import MODEL_FILE, ModelConfig, WeightsConfig, from_dict, to_dict
from videosalmonn.errors import CheckpointError
from videosalmonn.llm.tokenizer import TextTokenizer
from videosalmonn.model import VideoSalmonn
from videosalmonn.parts import is_part
from videosalmonn.pipeline import LATEST, TRAINABLE_FILE
from videosalmonn.training.checkpointing import resolve_checkpoint
from videosalmonn.weights import resolve

CONNECTOR = "connector.safetensors"
# the towers `weights.random_towers` may list (its Literal)
RANDOM_TOWERS = typing.get_args(typing.get_args(typing.get_type_hints(WeightsConfig)["random_towers"])[0])


def model_from_checkpoint(path: str | Path, device: str = "cpu") -> VideoSalmonn:
    """The model of a training checkpoint (`step-XXXXXX/`, its `trainable.safetensors`, the run's
    `checkpoints/latest` or output_dir: `resolve_checkpoint`) with the trained weights. The model config travels
    in the file's metadata; the frozen parts come from its `weights.*` as in training."""
    path = Path(path)
    file = path if path.is_file() and path.name != LATEST else resolve_checkpoint(path) / TRAINABLE_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: trained weights not found")
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "videosalmonn-trainable":
        raise CheckpointError(f"{file}: not a videosalmonn trainable checkpoint (no model config in its metadata)")
    cfg = from_dict(ModelConfig, json.loads(meta["config"]), where=str(file))
    cfg = dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, delta=None))
    model = load_model(cfg, device)
    load_trainable(model, file)
    return model


def export_official(model: VideoSalmonn, path: str | Path) -> Path:
    export_official_delta(model, path)
    return Path(path)


def export_peft(model: VideoSalmonn, out_dir: str | Path) -> Path:
    """Write the LLM's LoRA adapters as a peft adapter directory (see the module docstring), its
    `base_model_name_or_path` naming the frozen LLM as a saved config does (hub id, absolute path; None: random)."""
    if model.cfg.llm.lora is None:
        raise CheckpointError("the model has no LoRA adapters to export")
    out = Path(out_dir)
    model.llm.model.save_pretrained(str(out), safe_serialization=True)
    adapter_config = out / "adapter_config.json"
    settings = json.loads(adapter_config.read_text())
    llm = model.cfg.weights.llm
    settings["base_model_name_or_path"] = str(resolve(llm)) if llm and is_part(llm) else reference(llm)
    atomic_write(adapter_config, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2, sort_keys=True)))
    return out


def export_merged(model: VideoSalmonn, tokenizer: TextTokenizer, out_dir: str | Path, inplace: bool = False) -> Path:
    """Write `out_dir/{llm/, connector.safetensors, model.yaml}` (see the module docstring).

    The LoRA merge happens on a copy of the LLM unless `inplace` (saves memory; the model's LLM is then merged).
    """
    if model.cfg.llm.lora is None:
        raise CheckpointError("the model has no LoRA adapters to merge")
    out = Path(out_dir)
    llm_dir = out / "llm"
    merged = model.llm.merge_lora(inplace)
    merged.save_pretrained(str(llm_dir), safe_serialization=True)
    tokenizer.hf.save_pretrained(str(llm_dir))
    connector = {f"connector.{k}": p.detach().cpu().contiguous() for k, p in model.connector.named_parameters()}
    meta = {"format": "videosalmonn-trainable"}
    atomic_write(out / CONNECTOR, lambda tmp: save_file(connector, tmp, metadata=meta))
    cfg = to_dict(model.cfg)
    cfg["llm"]["lora"] = None
    cfg["weights"].update(llm=llm_dir.name, tokenizer=llm_dir.name, delta=CONNECTOR)
    w = cfg["weights"]  # towers trained on their seeded random init stay so (check_weights allows those it lists)
    w["random_towers"] = [t for t in RANDOM_TOWERS if t in w["random_towers"] or not w[t]]
    header = (
        "# Written by `videosalmonn export --merged`: the LLM has its LoRA merged; the connector is separate.\n"
        "# Relative weights.* paths are read from this directory: `--model THIS_DIR` (or this file) loads it.\n"
    )
    atomic_write(out / MODEL_FILE, lambda tmp: Path(tmp).write_text(header + yaml.safe_dump(cfg, sort_keys=False)))
    return out
