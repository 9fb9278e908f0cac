"""LoRA adapters on the LLM through peft (the only peft import of the package).

y = W x + (alpha / r) * B(A(dropout(x)))      W frozen, A and B trained; unmerged, as official (spec §6.1)
"""

from __future__ import annotations

from torch import nn

from videosalmonn.config import LoRAConfig


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> nn.Module:
    """Wrap a HF causal LM in a peft LoRA model (adapter name `default`, peft's key layout)."""
    from peft import LoraConfig, get_peft_model

    peft_cfg = LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets), task_type="CAUSAL_LM"
    )
    return get_peft_model(model, peft_cfg)


def is_lora_parameter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name
