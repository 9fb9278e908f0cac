"""Training checkpoints: everything needed to continue a run exactly, written atomically.

    <output_dir>/checkpoints/
        step-000040/
            trainable.safetensors   connector + LoRA only (our format: also `weights.delta` for inference/export)
            optimizer.pt            AdamW state (tensors only: read back with weights_only=True)
            state.json              step, data position (samples_seen), learning rate, world size, the trained
                                    weights' sha256 on every process (they must agree under DDP), and the
                                    sha256 of every other file of the checkpoint (checked on resume: verify.py)
            rng-<rank>.pt           Python / NumPy / torch (CPU, CUDA) RNG states of each process
            accelerate/             FSDP and DeepSpeed only: their sharded model + optimizer states
        latest                      name of the newest complete checkpoint (a step-XXXXXX name, nothing else);
                                    every command taking a checkpoint accepts it (`resolve_checkpoint`), and
                                    `weights.delta` too (`pipeline.trained_weights_file`)

A checkpoint is written into `.step-000040.tmp/` and renamed when complete (a rename is atomic), so a run killed
at any moment leaves only complete checkpoints; `latest` is itself replaced atomically. The learning-rate schedule
is a pure function of the step, so the step *is* the scheduler state. A save that fails (a full disk) removes its
half-written directory and ends with a one-line error; the previous checkpoints stay as they were.
"""

from __future__ import annotations

import errno
import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass, field, fields
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
from videosalmonn.pipeline import CHECKPOINT_NAME, LATEST, TRAINABLE_FILE, read_latest
from videosalmonn.weights import load_pickle

CHECKPOINTS = "checkpoints"
STATE = "state.json"
NAME = CHECKPOINT_NAME  # what `latest` may hold: a checkpoint of this run (step-XXXXXX), never a path
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
    files_sha256: dict[str, str] = field(default_factory=dict)  # every other file of the checkpoint, by path


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def latest_checkpoint(output_dir: str | Path, must_exist: bool = True) -> Path | None:
    """The checkpoint `latest` names (None without a marker, or with `must_exist` if that directory is gone).
    The marker must hold a `step-XXXXXX` name: anything else (`../x`, an absolute path) is a one-line error."""
    marker = checkpoint_dir(output_dir) / LATEST
    if not marker.is_file():
        return None
    path = read_latest(marker)
    return path if path.is_dir() or not must_exist else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint as a user names it -> its `step-XXXXXX/` directory: the directory itself, its
    trainable.safetensors, the run's `checkpoints/latest`, its `checkpoints/` or the run's output_dir (their
    latest); a one-line CheckpointError otherwise."""
    path = Path(path)
    if path.name == TRAINABLE_FILE and path.is_file():
        return path.parent
    if path.is_dir() and not (path / STATE).is_file() and not (path / TRAINABLE_FILE).is_file():
        marker = next((m for m in (path / LATEST, path / CHECKPOINTS / LATEST) if m.is_file()), None)
        if marker is None:
            raise CheckpointError(f"{path}: not a training checkpoint (step-XXXXXX/) and has no {LATEST} marker")
        path = marker
    if path.name == LATEST and path.is_file():
        step = read_latest(path)
        if not step.is_dir():
            raise CheckpointError(f"{path} names {step.name}, which does not exist")
        return step
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_sha256(directory: Path) -> dict[str, str]:
    """sha256 of every file under a checkpoint directory except state.json, by relative path."""
    return {
        p.relative_to(directory).as_posix(): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.relative_to(directory).as_posix() != STATE
    }


def read_state(path: Path) -> TrainState:
    """A checkpoint's state.json, with a one-line error when it is missing, truncated or not ours."""
    file = path / STATE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (not a complete training checkpoint)")
    try:
        raw = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: damaged or truncated ({type(e).__name__}: {e})") from None
    known = {f.name for f in fields(TrainState)}
    if not isinstance(raw, dict) or not {"step", "samples_seen"} <= raw.keys() or not raw.keys() <= known:
        raise CheckpointError(f"{file}: not the state of a training checkpoint")
    state = TrainState(**raw)
    state.trainable_sha256 = tuple(state.trainable_sha256)
    return state


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
    """Write `step-XXXXXX/` atomically (all processes call this), then keep only the newest `keep` checkpoints.
    A failed write (full disk, permissions) removes the partial directory and raises a one-line CheckpointError."""
    root = checkpoint_dir(output_dir)
    name = f"step-{state.step:06d}"
    tmp, final = root / f".{name}.tmp", root / name
    try:
        return _save(accelerator, root, name, tmp, final, state, model, optimizer, keep)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(_write_failure(root / name, e)) from None


def _write_failure(path: Path, e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        return (
            f"{path}: no space left on device while saving the checkpoint{where}, {free / 2**20:.0f} MiB free; "
            "the earlier checkpoints are intact: free space (or lower checkpoint.keep) and continue with --resume"
        )
    return f"{path}: cannot write the checkpoint{where}: {e.strerror or e}"


def _save(accelerator, root, name, tmp, final, state, model, optimizer, keep) -> Path:
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
    if accelerator.is_main_process and not sharded:
        save_trainable(unwrapped, tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    accelerator.wait_for_everyone()  # every process's files are written: hash them all
    if accelerator.is_main_process:
        state.files_sha256 = files_sha256(tmp)
        (tmp / STATE).write_text(json.dumps(asdict(state), indent=1))
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
    """Restore weights, optimizer, data position and this process's RNG from a checkpoint directory (check its
    files first: verify.check_checkpoint); the loaded weights must have the sha256 recorded at save time."""
    state = read_state(path)
    if accelerator.distributed_type in SHARDED:
        accelerator.load_state(str(path / "accelerate"))
    else:
        unwrapped = accelerator.unwrap_model(model)
        load_trainable(unwrapped, path / "trainable.safetensors")
        if state.trainable_sha256 and trainable_sha256(unwrapped) != state.trainable_sha256[0]:
            raise CheckpointError(
                f"{path / 'trainable.safetensors'}: the weights' sha256 differs from the one recorded in {STATE} "
                "(the file is damaged); resume from an earlier checkpoint with --resume-from"
            )
        optimizer.load_state_dict(load_pickle(path / "optimizer.pt"))
    rng = path / f"rng-{accelerator.process_index}.pt"
    if rng.is_file():
        _set_rng_state(load_pickle(rng))
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
