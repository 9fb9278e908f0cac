"""Training checkpoints: everything needed to continue a run exactly, written atomically.

    <output_dir>/checkpoints/
        step-000040/
            trainable.safetensors   connector + LoRA only (our format: also `weights.delta` for inference/export)
            optimizer.pt            AdamW state (tensors only: read back with weights_only=True)
            state.json              step, data position (samples_seen), learning rate, world size, the trained
                                    weights' sha256 on every process (they must agree under DDP)
            rng-<rank>.pt           Python / NumPy / torch (CPU, CUDA) RNG states of each process
            accelerate/             FSDP and DeepSpeed only: their sharded model + optimizer states
        latest                      name of the newest complete checkpoint

A checkpoint is written into `.step-000040.tmp/` and renamed when complete (a rename is atomic), so a run killed
at any moment leaves only complete checkpoints; `latest` is itself replaced atomically. The learning-rate schedule
is a pure function of the step, so the step *is* the scheduler state.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from safetensors.torch import save_file

from videosalmonn.checkpoint import atomic_write, load_trainable, save_trainable, trainable_state
from videosalmonn.config import to_dict
from videosalmonn.errors import CheckpointError
from videosalmonn.model import VideoSalmonn

CHECKPOINTS = "checkpoints"
LATEST = "latest"
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    samples_seen: int = 0  # stream position of the next micro-batch (see data.py)
    lr: float = 0.0  # learning rate of the last step
    loss: float | None = None  # mean loss of the last step
    world_size: int = 1
    total_steps: int = 0  # the run's `steps` (the schedule's length) when the checkpoint was written
    trainable_sha256: tuple[str, ...] = ()  # per process, at save time


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = checkpoint_dir(output_dir)
    marker = root / LATEST
    if not marker.is_file():
        return None
    path = root / marker.read_text().strip()
    return path if path.is_dir() else None


def trainable_sha256(model: VideoSalmonn) -> str:
    """sha256 of the trained tensors' bytes: equal on every process iff their weights are identical."""
    h = hashlib.sha256()
    for name, t in trainable_state(model).items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    accelerator: Accelerator, output_dir: str | Path, state: TrainState, model, optimizer, keep: int
) -> Path:
    """Write `step-XXXXXX/` atomically (all processes call this), then keep only the newest `keep` checkpoints."""
    root = checkpoint_dir(output_dir)
    name = f"step-{state.step:06d}"
    tmp, final = root / f".{name}.tmp", root / name
    unwrapped: VideoSalmonn = accelerator.unwrap_model(model)
    sharded = accelerator.distributed_type in SHARDED
    if not sharded:
        hashes = (
            gather_object([trainable_sha256(unwrapped)])
            if accelerator.num_processes > 1
            else [trainable_sha256(unwrapped)]
        )
        if len(set(hashes)) != 1:
            raise CheckpointError(
                f"step {state.step}: the trained weights differ between processes ({hashes}); "
                "the processes are not training together (see README: Training on CPU)"
            )
        state.trainable_sha256 = tuple(hashes)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    if sharded:
        accelerator.save_state(str(tmp / "accelerate"))
        full = accelerator.get_state_dict(model)  # a collective: gathered on the main process
        if accelerator.is_main_process:
            names = [k for k, p in unwrapped.named_parameters() if p.requires_grad]
            _save_tensors({k: full[k] for k in names}, unwrapped, tmp / "trainable.safetensors")
    if accelerator.is_main_process:
        if not sharded:
            save_trainable(unwrapped, tmp / "trainable.safetensors")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write(root / LATEST, lambda t: Path(t).write_text(name))
        _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def _save_tensors(state: dict[str, torch.Tensor], model: VideoSalmonn, path: Path) -> None:
    """Gathered trainable tensors in `save_trainable`'s format (same metadata)."""
    meta = {"format": "videosalmonn-trainable", "config": json.dumps(to_dict(model.cfg))}
    atomic_write(
        path, lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp, metadata=meta)
    )


def load_checkpoint(accelerator: Accelerator, path: Path, model, optimizer) -> TrainState:
    """Restore weights, optimizer, data position and this process's RNG from a checkpoint directory."""
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{path}: not a training checkpoint (state.json missing)")
    state = TrainState(**json.loads((path / "state.json").read_text()))
    state.trainable_sha256 = tuple(state.trainable_sha256)
    if accelerator.distributed_type in SHARDED:
        accelerator.load_state(str(path / "accelerate"))
    else:
        load_trainable(accelerator.unwrap_model(model), path / "trainable.safetensors")
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    rng = path / f"rng-{accelerator.process_index}.pt"
    if rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=True))
    elif accelerator.is_main_process:
        print(
            f"note: {path} has no RNG state for process {accelerator.process_index} "
            f"(saved with {state.world_size} processes): dropout continues from a fresh seed"
        )
    return state


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _prune(root: Path, keep: int) -> None:
    if keep == 0:
        return
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def clean_partial(output_dir: str | Path) -> None:
    """Remove half-written checkpoints left by a killed run (main process, before training)."""
    for tmp in checkpoint_dir(output_dir).glob(".step-*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
