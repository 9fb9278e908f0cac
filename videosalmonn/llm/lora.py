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


def materialize_empty_adapters(model: nn.Module) -> None:
    """LoRA adapters that peft left on meta (their base layer waits on disk, `llm.device_map`): real, on the CPU,
    initialised as peft initialises them (a delta loaded afterwards overwrites them)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name in list(module.lora_A):
            adapters = (module.lora_A[name], module.lora_B[name])
            if any(p.is_meta for a in adapters for p in a.parameters()):
                for a in adapters:
                    a.to_empty(device="cpu")
                module.reset_lora_parameters(name, True)
