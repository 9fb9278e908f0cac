"""What stops a run with one line instead of a traceback or a silently broken model: a non-finite loss (or a
bounded number of skipped steps, `optim.max_nonfinite_steps`) and a full disk.

    bad = step_is_nonfinite(accelerator, loss_was_nonfinite, grad_norm)   same answer on every process
    budget.record(step, loss) -> message | raises NonFiniteLossError
    with disk_full_is_an_error(output_dir): ...                           ENOSPC/EDQUOT -> DiskFullError
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from accelerate import Accelerator

from videosalmonn.errors import DISK_FULL, DiskFullError, VideoSalmonnError


class NonFiniteLossError(VideoSalmonnError):
    """A step's loss (or gradient) was NaN/inf more often than `optim.max_nonfinite_steps` allows."""


def step_is_nonfinite(accelerator: Accelerator, loss_was_nonfinite: bool, grad_norm) -> bool:
    """Whether this optimizer step must not update the weights: a non-finite loss on any process, or a non-finite
    gradient norm (except under fp16 loss scaling, whose scaler skips overflowing steps itself)."""
    flag = torch.tensor([1.0 if loss_was_nonfinite else 0.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, reduction="sum")
    bad = bool(flag.item() > 0)
    if grad_norm is not None and accelerator.scaler is None:
        bad = bad or not math.isfinite(float(grad_norm))
    return bad


class NonFiniteBudget:
    def __init__(self, allowed: int):
        self.allowed = allowed
        self.skipped = 0

    def record(self, step: int, loss: float, last_checkpoint: Path | None) -> str:
        """A skipped step: the note to print, or NonFiniteLossError once more than `allowed` were skipped."""
        self.skipped += 1
        if self.skipped > self.allowed:
            where = f"the last checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
            raise NonFiniteLossError(
                f"step {step}: the loss is {loss} (non-finite); training stopped before this step changed the weights "
                f"({where}). Lower optim.lr, check the data, or allow skipping such steps with "
                f"optim.max_nonfinite_steps=N (now {self.allowed})"
            )
        return (
            f"step {step}: non-finite loss ({loss}): step skipped, weights unchanged "
            f"({self.skipped} of optim.max_nonfinite_steps={self.allowed})"
        )


@contextlib.contextmanager
def disk_full_is_an_error(output_dir: str | Path):
    """A full disk anywhere in the run (metrics, config, checkpoints) ends it with one line."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise DiskFullError(e.filename or output_dir, "free space and continue the run with --resume") from None
