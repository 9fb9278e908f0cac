"""How close is close enough to the official numbers: one yardstick per kind of stage, the same on every CPU.

* Most stages: max absolute error <= 1e-4 in fp32 (`TOLERANCE`).
* Log-power features (the BEATs Kaldi log-fbank): an absolute error in the log domain is not a fixed amount of
  float32 noise. A mel bin far below its frame's loudest bin (the lowest bins after pre-emphasis, near the Kaldi
  floor) is the difference of large FFT terms, so its *relative* error grows as its power shrinks; the log turns
  that into an absolute error that depends on how the CPU's FFT kernels round (measured on one input: 1.1e-4 on
  an AVX-512 Xeon, 5.7e-5 with AVX2 forced). What does not depend on the kernels is the error in the power
  domain measured against the frame's own peak power, the scale FFT rounding is proportional to:
  `max |P - P_golden| / max_bins P_golden`, per frame. Measured: <= 1e-5 on AVX-512 and AVX2; a wrong window,
  filter bank or pre-emphasis gives >= 1e-2.
"""

from __future__ import annotations

from torch import Tensor

from videosalmonn.media.timeline import BEATS_FBANK_MEAN, BEATS_FBANK_STD

TOLERANCE = 1e-4  # absolute, fp32, every stage except log-power features
POWER_TOLERANCE = 1e-4  # log-power features: error as a fraction of the frame's peak power
PIXEL_TOLERANCE = 1  # uint8 frames of another FFmpeg build (golden README §6)


def max_abs_error(ours: Tensor, golden: Tensor) -> float:
    """Max |ours - golden| in float64 (0 for empty tensors); shapes must match."""
    if ours.shape != golden.shape:
        raise ValueError(f"shape {tuple(ours.shape)} vs golden {tuple(golden.shape)}")
    return (ours.double() - golden.double()).abs().max().item() if ours.numel() else 0.0


def log_power_error(ours: Tensor, golden: Tensor, scale: float = 1.0, offset: float = 0.0) -> float:
    """(..., F, M) log-power features -> max over frames of max_m |P - P_golden| / max_m P_golden.

    The features are `(ln P - offset) / scale` (BEATs: offset = fbank mean, scale = 2 std); M is the bin axis.
    """
    if ours.shape != golden.shape:
        raise ValueError(f"shape {tuple(ours.shape)} vs golden {tuple(golden.shape)}")
    if not ours.numel():
        return 0.0
    p_ours = (ours.double() * scale + offset).exp()
    p_golden = (golden.double() * scale + offset).exp()
    peak = p_golden.amax(dim=-1, keepdim=True)  # (..., F, 1)
    return ((p_ours - p_golden).abs() / peak).max().item()


def beats_fbank_error(ours: Tensor, golden: Tensor) -> float:
    """`log_power_error` of normalised BEATs fbanks (`media.features.beats_fbank`), (..., F, 128)."""
    return log_power_error(ours, golden, scale=2 * BEATS_FBANK_STD, offset=BEATS_FBANK_MEAN)
