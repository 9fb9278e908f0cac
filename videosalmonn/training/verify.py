"""Checkpoints that prove themselves: every file's sha256 is recorded in state.json at save time and checked before
a resume, and `--resume` takes the newest checkpoint that passes (saying which newer ones were skipped and why).

    choose_checkpoint(output_dir) -> Resume(path, state, skipped)     the newest intact checkpoint, or a one-line error
    check_checkpoint(path)        -> TrainState                       raises CheckpointError naming the bad file

Checkpoints written before the hashes were recorded (no `files_sha256`) are checked by reading every file; their
trained weights are still checked against `trainable_sha256` once loaded (checkpointing.load_checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from videosalmonn.errors import CheckpointError
from videosalmonn.training.checkpointing import (
    LATEST,
    NAME,
    STATE,
    TrainState,
    checkpoint_dir,
    file_sha256,
    latest_checkpoint,
    read_state,
)
from videosalmonn.weights import load_pickle


@dataclass
class Resume:
    path: Path
    state: TrainState
    skipped: list[tuple[str, str]]  # (checkpoint name, why) of the newer checkpoints passed over

    def notes(self) -> list[str]:
        notes = [f"note: skipped checkpoint {name}: {why}" for name, why in self.skipped]
        return notes + [f"note: resuming from {self.path.name}, the newest intact checkpoint"] if notes else []


def check_checkpoint(path: Path) -> TrainState:
    """The checkpoint's TrainState once every file is present and intact; else a one-line CheckpointError."""
    state = read_state(path)
    if state.files_sha256:
        for name, digest in state.files_sha256.items():
            file = path / name
            if not file.is_file():
                raise CheckpointError(f"{file}: missing (recorded in {STATE})")
            if file_sha256(file) != digest:
                raise CheckpointError(f"{file}: sha256 differs from the one recorded in {STATE} (the file is damaged)")
        return state
    if not (path / "accelerate").is_dir():  # an older checkpoint: read every file
        for name in ("trainable.safetensors", "optimizer.pt"):
            if not (path / name).is_file():
                raise CheckpointError(f"{path / name}: missing")
        try:
            with safe_open(str(path / "trainable.safetensors"), "pt") as f:
                for key in f.keys():
                    f.get_tensor(key)
        except Exception as e:
            raise CheckpointError(f"{path / 'trainable.safetensors'}: damaged or truncated ({e})") from None
        load_pickle(path / "optimizer.pt")
    for rng in sorted(path.glob("rng-*.pt")):
        load_pickle(rng)
    return state


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def choose_checkpoint(output_dir: str | Path) -> Resume:
    """The newest intact checkpoint: the one `latest` names, else the next older one that passes."""
    root = checkpoint_dir(output_dir)
    marked = latest_checkpoint(output_dir, must_exist=False)
    found = sorted((p for p in root.glob("step-*") if p.is_dir() and NAME.fullmatch(p.name)), key=_step, reverse=True)
    candidates = found if marked is None else [marked] + [p for p in found if _step(p) < _step(marked)]
    if not candidates:
        raise CheckpointError(f"{output_dir}: no checkpoint to resume from")
    skipped = []
    for path in candidates:
        if not path.is_dir():
            skipped.append((path.name, f"{root / LATEST} names it but {path} does not exist"))
            continue
        try:
            return Resume(path, check_checkpoint(path), skipped)
        except CheckpointError as e:
            skipped.append((path.name, str(e)))
    raise CheckpointError(
        f"{output_dir}: no intact checkpoint to resume from: " + "; ".join(f"{n}: {why}" for n, why in skipped)
    )
