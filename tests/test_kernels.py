"""bfloat16 attention on a CPU without AVX-512 (AMD machines here, or ATEN_CPU_CAPABILITY=avx2): torch's fused CPU
kernel raises there, so the connector's causal block and an sdpa LLM must take the math kernel."""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import torch
from videosalmonn.kernels import cpu_has_avx512
from videosalmonn.connector.qformer import Attention
assert not cpu_has_avx512(), torch.backends.cpu.get_cpu_capability()
torch.manual_seed(0)
att = Attention(128, 128, 4, 1e-12, 0.0).eval()  # head dim 32: the fused kernel (dim 16 is not)
x = torch.randn(2, 64, 128)
allowed = torch.ones(64, 64).tril().bool()
with torch.no_grad():
    ref = att.attend_projected(x, att.q(x), att.k(x), att.v(x), allowed)
    b = att.to(torch.bfloat16)
    xb = x.bfloat16()
    out = b.attend_projected(xb, b.q(xb), b.k(xb), b.v(xb), allowed)
err = ((out.float() - ref).norm() / ref.norm()).item()
assert err < 2e-2, err
print("ok", err)
"""


@pytest.mark.slow
def test_bfloat16_causal_block_runs_on_an_avx2_cpu():
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_the_math_kernel_only_where_the_fused_one_fails():
    import torch

    from videosalmonn.kernels import attention_kernels, cpu_has_avx512

    cpu = torch.device("cpu")
    assert type(attention_kernels(cpu, torch.float32)).__name__ == "nullcontext"
    assert type(attention_kernels(torch.device("cuda"), torch.bfloat16)).__name__ == "nullcontext"
    restricted = type(attention_kernels(cpu, torch.bfloat16)).__name__ != "nullcontext"
    assert restricted == (not cpu_has_avx512())
