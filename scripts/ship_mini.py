"""Ship a trained `mini` run as the package's default weights: one safetensors file beside the preset.

    .venv/bin/python scripts/ship_mini.py runs/mini [--towers runs/mini-towers/towers.safetensors]

Reads the run's newest checkpoint (connector + LoRA, `trainable.safetensors`) and the visual tower it was trained
with (`weights.towers` of the run's config), stores every floating tensor in float16 (the file must stay under
~30 MB; the frozen tower and the trained parts lose < 1e-3 relative), writes
`videosalmonn/presets/mini.safetensors` atomically with the run's config and provenance as metadata, and puts
`weights.delta`, its sha256 (`weights.delta_sha256`: loading checks it) and `delta_required` into
`videosalmonn/presets/mini.yaml`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from videosalmonn.checkpoint import atomic_write
from videosalmonn.training.checkpointing import resolve_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "videosalmonn" / "presets"
OUT = PRESETS / "mini.safetensors"
MAX_BYTES = 31 * 2**20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="training run directory (holds checkpoints/latest and config.yaml)")
    p.add_argument("--towers", type=Path, help="the visual tower file (default: the run config's weights.towers)")
    args = p.parse_args()
    ckpt = resolve_checkpoint(args.run / "checkpoints" / "latest")
    trained = ckpt / "trainable.safetensors"
    config = (args.run / "config.yaml").read_text()
    towers = args.towers or Path(re.search(r"weights\.towers=(\S+)", config).group(1))
    state = {**load_file(str(towers)), **load_file(str(trained))}
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}
    step = json.loads((ckpt / "state.json").read_text())["step"]
    meta = {
        "format": "videosalmonn-trainable",
        "preset": "mini",
        "run_config": config,
        "step": str(step),
        "towers_sha256": sha256(towers),
        "trainable_sha256": sha256(trained),
    }
    atomic_write(OUT, lambda tmp: save_file(state, tmp, metadata=meta))
    size, digest = OUT.stat().st_size, sha256(OUT)
    if size > MAX_BYTES:
        print(f"{OUT}: {size / 2**20:.1f} MiB is over the {MAX_BYTES / 2**20:.0f} MiB the package may ship")
        return 1
    preset = PRESETS / "mini.yaml"
    text = preset.read_text()
    shipped = (
        "  # trained here (configs/train/mini.yaml; scripts/ship_mini.py): visual tower + connector + LoRA, float16\n"
        f"  delta: {OUT.name}\n  delta_sha256: {digest}\n  delta_required: true"
    )
    text, n = re.subn(r"  # (no trained weights ship yet|trained here)[^\n]*\n(  [#d][^\n]*\n?)+", shipped + "\n", text)
    if n != 1:
        print(f"{preset}: found no weights block to update (the lines after `random_towers:`)")
        return 1
    preset.write_text(text)
    print(f"{OUT}: {size / 2**20:.1f} MiB, {len(state)} tensors, step {step}, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
