"""Which fused attention kernel this machine can run.

torch's CPU flash-attention kernel packs bfloat16 with AVX-512 instructions only: on an AVX2 CPU (AMD machines, or
`ATEN_CPU_CAPABILITY=avx2`) `F.scaled_dot_product_attention` in bfloat16 raises "pack_vnni2 is only supported when
avx512 is supported". There the math kernel (the same attention, unfused) is used instead.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


@functools.cache
def cpu_has_avx512() -> bool:
    """The vector ISA torch dispatches CPU kernels to (honours ATEN_CPU_CAPABILITY) is AVX-512."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def attention_kernels(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Context for `F.scaled_dot_product_attention` on tensors of `device`/`dtype`: the math kernel where the fused
    CPU kernel cannot run (bfloat16 without AVX-512), otherwise no restriction."""
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_avx512():
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()
