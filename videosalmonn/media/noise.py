"""Additive white Gaussian noise at a given signal-to-noise ratio (paper App. F: LRS2 with 0 dB Gaussian noise).

    SNR_dB = 10 log10(P_signal / P_noise),  P = mean(x^2)  ->  P_noise = P_signal / 10^(SNR_dB / 10)

The noise is drawn from a seeded generator and scaled to exactly that power (not just in expectation), so the
measured SNR of the output is the target, to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def power(x: Tensor) -> float:
    """Mean power mean(x^2), in float64."""
    return float(x.double().pow(2).mean()) if x.numel() else 0.0


def snr_db(signal: Tensor, noisy: Tensor) -> float:
    """Measured SNR (dB) of `noisy` = `signal` + noise."""
    return 10 * torch.log10(torch.tensor(power(signal) / power(noisy.double() - signal.double()))).item()


def add_noise(signal: Tensor, snr: float, seed: int) -> Tensor:
    """`signal` (N,) + Gaussian noise of power P_signal / 10^(snr / 10), drawn from a generator seeded with `seed`;
    same dtype. A silent signal (power 0) is returned unchanged (no power to be relative to)."""
    p_signal = power(signal)
    if p_signal == 0.0:
        return signal.clone()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(signal.shape, generator=g, dtype=torch.float64)
    noise *= (p_signal / 10 ** (snr / 10) / power(noise)) ** 0.5
    return (signal.double() + noise).to(signal.dtype)
