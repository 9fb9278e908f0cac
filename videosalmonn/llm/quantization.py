"""LLM weight quantisation: `llm.quantization: none | int8 | nf4`.

    none   every weight in the model dtype
    int8   bitsandbytes LLM.int8 on a CUDA device where bitsandbytes imports; otherwise `Int8Linear` below
    nf4    bitsandbytes 4-bit NormalFloat on a CUDA device (no fallback: a ConfigError says what it needs)

Only the linear maps of the decoder layers are quantised (q, k, v, o, gate, up, down: 97 % of the 13B LLM);
embeddings, the LM head, norms and LoRA stay in the model dtype, as bitsandbytes does by default.

`Int8Linear` is weight-only int8 with one symmetric scale per output channel:

    W (out, in) ≈ q * s[:, None],   s = max_j |W_ij| / 127,   q = round(W / s) in [-127, 127] (int8)
    y = x Wᵀ + b  =  (x qᵀ) * s + b   (q converted to the activations' dtype per call; no float W is kept)

Its `weight` is the int8 tensor (a frozen Parameter), so peft wraps it with LoRA like any nn.Linear and the key
names of a checkpoint (`...q_proj.weight`) stay the same; `weight_scale` is the (out,) scale buffer.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videosalmonn.errors import ConfigError

QUANTISED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INT8_MAX = 127
NF4_BLOCK = 64  # bitsandbytes' default 4-bit block size (one absmax per block)
# torch's CPU int8-weight matmul (torch 2.13 has it; fast for one row only, so used for decoding steps)
INT8PACK_DTYPES = (torch.float32, torch.bfloat16) if hasattr(torch, "_weight_int8pack_mm") else ()


class Int8Linear(nn.Linear):
    """nn.Linear with an int8 weight and per-output-channel scales (weight-only: activations stay floating)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        nn.Module.__init__(self)  # no float weight is ever allocated or initialised
        self.in_features, self.out_features = in_features, out_features
        q = torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
        self.weight = nn.Parameter(q, requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=dtype or torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantise an nn.Linear (on its device); the float weight is not kept."""
        w = linear.weight
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, device=w.device, dtype=w.dtype)
        out.set_weight(w.detach())
        if linear.bias is not None:
            out.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
        return out

    def set_weight(self, weight: Tensor) -> None:
        """Quantise a float (out, in) weight into this layer, on the weight's device; scales in its dtype."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight {tuple(weight.shape)} vs layer ({self.out_features}, {self.in_features})")
        q, scale = quantize_int8(weight)
        self.weight = nn.Parameter(q, requires_grad=False)
        self.weight_scale = scale.to(weight.dtype)

    def dequantized(self, dtype: torch.dtype) -> Tensor:
        return self.weight.to(dtype) * self.weight_scale.to(dtype)[:, None]  # (out, in)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out). One row on the CPU: torch's int8 kernel; fp32/bf16: (x qᵀ) * s, the scale on
        the outputs (x qᵀ cannot overflow their range); fp16: x (q * s)ᵀ, dequantised first (it could)."""
        rows = x.reshape(-1, self.in_features)  # (N, in)
        if rows.shape[0] == 1 and x.device.type == "cpu" and x.dtype in INT8PACK_DTYPES:
            y = torch._weight_int8pack_mm(rows, self.weight, self.weight_scale.to(x.dtype))
        elif x.dtype == torch.float16:
            y = F.linear(rows, self.dequantized(x.dtype))
        else:
            y = F.linear(rows, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(out, in) float -> (int8 (out, in), float32 scale (out,)), symmetric per row; an all-zero row gets scale 1."""
    w = weight.float().clone() if weight.dtype == torch.float32 else weight.float()  # the one fp32 temporary
    amax = weight.abs().amax(dim=1).float()
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    q = w.div_(scale[:, None]).round_().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def quantized_linear_names(model: nn.Module) -> list[str]:
    """Names of the nn.Linear modules `llm.quantization` applies to (decoder-layer projections)."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in QUANTISED and ".layers." in f".{name}"
    ]


def to_int8(model: nn.Module) -> nn.Module:
    """Replace the decoder-layer linears of an HF causal LM by Int8Linear, in place (meta modules stay empty)."""
    for name in quantized_linear_names(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if linear.weight.is_meta:
            new = Int8Linear(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        else:
            new = Int8Linear.from_linear(linear)
        setattr(parent, child, new)
    return model


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def backend(quantization: str, device: torch.device | str | None) -> str:
    """How `llm.quantization` is done on `device`: `none`, `int8` (ours), `bnb-int8` or `bnb-nf4`.

    Raises ConfigError for nf4 without a CUDA device and bitsandbytes."""
    if quantization == "none":
        return "none"
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda and bitsandbytes_available():
        return f"bnb-{quantization}"
    if quantization == "int8":
        return "int8"
    where = "bitsandbytes is not installed" if cuda else f"the device is {torch.device(device or 'cpu').type}"
    raise ConfigError(
        f"llm.quantization=nf4 needs bitsandbytes on a CUDA device ({where}); use llm.quantization=int8 instead"
    )


def bnb_config(quantization: str, dtype: torch.dtype):
    """The transformers BitsAndBytesConfig of `bnb-int8` / `bnb-nf4` (compute in the model dtype, nf4 with double
    quantisation of the block scales; LM head not quantised)."""
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=["lm_head"],
    )
