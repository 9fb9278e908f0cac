"""Pretrain a preset's visual tower (EVA + image Q-Former) on SAVE-mini frames, to be frozen before the main training.

No small pretrained image encoder installs offline (issue 15), so `mini`'s visual tower is trained here, on what the
tasks ask about (colours, shapes, positions, sizes, flashes, backgrounds, the on-screen words; savemini/labels.py):

    scenes.jsonl (train split) ─► frames decoded as inference decodes them (load_clip) + frame_targets(scene, t)
        ─► VisualEncoder (N, Q, D) ─► TowerProbe: linear heads on the flattened queries ─► sum of head losses

The probe is thrown away: only the tower is kept, under the model's own names (`encoder.vision.*`), in
`OUT/towers.safetensors` with its sha256 in `OUT/towers.json` beside the validation scores per head. The run is
resumable: `OUT/state.safetensors` (tower, probe, AdamW moments, step) is written atomically every
`checkpoint_every` steps, and the data of step s is a pure function of (seed, s).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from videosalmonn.checkpoint import atomic_write
from videosalmonn.config import ModelConfig, to_dict
from videosalmonn.encoders.audio_visual import AVEncoder
from videosalmonn.encoders.vision import VisualEncoder
from videosalmonn.errors import CheckpointError, InputError
from videosalmonn.media.clip import load_clip
from videosalmonn.rng import seeded
from videosalmonn.savemini.labels import HEADS, IGNORE, decode_text, frame_targets
from videosalmonn.savemini.scene import Scene, scene_from_dict
from videosalmonn.weights import load_checked

TOWERS_FILE = "towers.safetensors"
STATE_FILE = "state.safetensors"
TOWER_PREFIX = "encoder.vision."


@dataclass(frozen=True)
class TowerRecipe:
    steps: int = 1800
    clips_per_step: int = 8
    frames_per_clip: int = 6
    """At most this many of a video's 2-Hz frames per step (drawn at random); an image is one frame."""
    lr: float = 6e-4
    warmup_steps: int = 60
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200
    val_clips: int = 200


# ------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class VisualClip:
    scene: Scene
    path: Path
    is_image: bool


def visual_clips(world: str | Path, split: str) -> list[VisualClip]:
    """The clips of `split` with pictures (a video or an image file), in scenes.jsonl order."""
    world = Path(world)
    log = world / "scenes.jsonl"
    if not log.is_file():
        raise InputError(f"{world}: not a SAVE-mini world (no scenes.jsonl; see `videosalmonn savemini make`)")
    out = []
    with log.open() as f:
        for line in f:
            record = json.loads(line)
            if not record["id"].startswith(f"{split}-"):
                continue
            files = record["files"]
            for key, is_image in (("video", False), ("image", True)):
                if key in files:
                    out.append(VisualClip(scene_from_dict(record["scene"]), world / files[key], is_image))
    if not out:
        raise InputError(f"{log}: no {split} clip has a video or an image")
    return out


def clip_frames(cfg: ModelConfig, clip: VisualClip) -> tuple[Tensor, list[dict[str, np.ndarray]]]:
    """frames (T, 3, S, S) as the model sees them, and the targets of each."""
    media = (
        load_clip(cfg.media, image=clip.path)
        if clip.is_image
        else load_clip(cfg.media, video=clip.path, video_audio=False)
    )
    times = [0.0] if clip.is_image else media.frame_times
    return media.frames, [frame_targets(clip.scene, t) for t in times]


def step_clips(n: int, step: int, recipe: TowerRecipe) -> list[int]:
    """Clip indices of `step`: consecutive slices of a seeded permutation per epoch."""
    per_epoch = n // recipe.clips_per_step
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([recipe.seed, epoch]).permutation(n)
    return order[k * recipe.clips_per_step : (k + 1) * recipe.clips_per_step].tolist()


class StepBatches(torch.utils.data.IterableDataset):
    """Batches of steps start..end-1: (frames (N, 3, S, S), targets {head: (N, rows)})."""

    def __init__(self, cfg: ModelConfig, clips: list[VisualClip], recipe: TowerRecipe, start: int):
        self.cfg, self.clips, self.recipe, self.start = cfg, clips, recipe, start

    def __iter__(self):
        for step in range(self.start, self.recipe.steps):
            rng = np.random.default_rng([self.recipe.seed, step, 1])
            frames, targets = [], []
            for i in step_clips(len(self.clips), step, self.recipe):
                f, t = clip_frames(self.cfg, self.clips[i])
                keep = np.sort(rng.permutation(len(t))[: self.recipe.frames_per_clip])
                frames.append(f[keep])
                targets += [t[j] for j in keep]
            yield torch.cat(frames), stack_targets(targets)


def stack_targets(targets: list[dict[str, np.ndarray]]) -> dict[str, Tensor]:
    return {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in HEADS}


# ------------------------------------------------------------------------------------------------ probe


class TowerProbe(nn.Module):
    """Linear heads on the flattened query outputs: (N, Q, D) -> {head: (N, rows, classes)}."""

    def __init__(self, queries: int, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.heads = nn.Linear(queries * width, sum(r * c for r, c in HEADS.values()))

    def forward(self, q: Tensor) -> dict[str, Tensor]:
        flat = self.heads(self.norm(q).flatten(1))  # (N, sum rows*classes)
        out, i = {}, 0
        for name, (rows, classes) in HEADS.items():
            out[name] = flat[:, i : i + rows * classes].view(-1, rows, classes)
            i += rows * classes
        return out


def probe_loss(logits: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
    """Mean over heads: BCE for binary heads (a flash only where the colour is present), CE elsewhere."""
    losses = []
    for name, (_, classes) in HEADS.items():
        x, y = logits[name], targets[name]
        if classes == 1:
            weight = targets["present"] if name == "flash" else None
            losses.append(F.binary_cross_entropy_with_logits(x[..., 0], y, weight=weight))
        elif (y != IGNORE).any():
            losses.append(F.cross_entropy(x.flatten(0, 1), y.flatten(), ignore_index=IGNORE))
    return torch.stack(losses).mean()


def probe_scores(logits: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, float]:
    """Accuracy per head (a flash only where present; `word`: the whole text read exactly)."""
    scores = {}
    for name, (_, classes) in HEADS.items():
        x, y = logits[name], targets[name]
        if classes == 1:
            pred = (x[..., 0] > 0).float()
            valid = targets["present"] > 0 if name == "flash" else torch.ones_like(y, dtype=torch.bool)
        else:
            pred, valid = x.argmax(-1), y != IGNORE
        if valid.any():
            scores[name] = (pred[valid] == y[valid]).float().mean().item()
    has_text = targets["text"][:, 0] > 0
    if has_text.any():
        chars = logits["chars"].argmax(-1)[has_text].numpy()
        truth = targets["chars"][has_text].clamp(min=0).numpy()
        scores["word"] = float(np.mean([decode_text(p) == decode_text(t) for p, t in zip(chars, truth)]))
    return scores


# --------------------------------------------------------------------------------------------- training


def build_tower(cfg: ModelConfig) -> VisualEncoder:
    """The visual tower exactly as `load_model` builds it for a preset listing it in `weights.random_towers`."""
    with seeded(cfg.seed):
        return AVEncoder(cfg.encoders, cfg.media.image_size).vision


def learning_rate(step: int, recipe: TowerRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    u = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * u)))


def train_towers(
    world: str | Path, cfg: ModelConfig, out: str | Path, recipe: TowerRecipe = TowerRecipe(), log=print
) -> dict:
    """Train (or resume) the visual tower of `cfg` on the world's train split; returns the towers.json record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    tower = build_tower(cfg)
    probe = TowerProbe(cfg.encoders.image_qformer.num_queries, cfg.encoders.image_qformer.width)
    params = [*tower.parameters(), *probe.parameters()]
    optim = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    start = load_state(out / STATE_FILE, tower, probe, optim, recipe) if (out / STATE_FILE).exists() else 0
    if start:
        log(f"resuming at step {start} of {recipe.steps}")
    clips = visual_clips(world, "train")
    loader = torch.utils.data.DataLoader(
        StepBatches(cfg, clips, recipe, start), batch_size=None, num_workers=1, prefetch_factor=4
    )
    tower.train(), probe.train()
    t0, running = time.time(), []
    for step, (frames, targets) in enumerate(loader, start=start):
        for group in optim.param_groups:
            group["lr"] = learning_rate(step, recipe)
        torch.manual_seed(recipe.seed * 1_000_003 + step)  # the Q-Former's dropout: step s draws the same on resume
        loss = probe_loss(probe(tower(frames)), targets)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        running.append(loss.item())
        if (step + 1) % 20 == 0:
            log(f"step {step + 1}/{recipe.steps} loss {np.mean(running):.4f} ({time.time() - t0:.0f} s)")
            running = []
        if (step + 1) % recipe.checkpoint_every == 0 or step + 1 == recipe.steps:
            save_state(out / STATE_FILE, tower, probe, optim, step + 1)
    scores = evaluate_towers(world, cfg, tower, probe, recipe)
    log("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return save_towers(out, tower, cfg, recipe, scores)


@torch.no_grad()
def evaluate_towers(world, cfg: ModelConfig, tower: VisualEncoder, probe: TowerProbe, recipe: TowerRecipe) -> dict:
    tower.eval(), probe.eval()
    clips = visual_clips(world, "val")[: recipe.val_clips]
    logits, targets = [], []
    for clip in clips:
        frames, t = clip_frames(cfg, clip)
        logits.append(probe(tower(frames)))
        targets += t
    merged = {k: torch.cat([x[k] for x in logits]) for k in HEADS}
    return probe_scores(merged, stack_targets(targets))


def save_towers(out: Path, tower: VisualEncoder, cfg: ModelConfig, recipe: TowerRecipe, scores: dict) -> dict:
    state = {TOWER_PREFIX + k: v.detach().contiguous() for k, v in tower.state_dict().items()}
    meta = {"format": "videosalmonn-towers", "encoders": json.dumps(to_dict(cfg.encoders))}
    atomic_write(out / TOWERS_FILE, lambda tmp: save_file(state, tmp, metadata=meta))
    record = {
        "file": TOWERS_FILE,
        "sha256": hashlib.sha256((out / TOWERS_FILE).read_bytes()).hexdigest(),
        "recipe": asdict(recipe),
        "validation": scores,
    }
    atomic_write(out / "towers.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
    return record


def save_state(path: Path, tower: nn.Module, probe: nn.Module, optim: torch.optim.Optimizer, step: int) -> None:
    state = {f"tower.{k}": v.detach().contiguous() for k, v in tower.state_dict().items()}
    state |= {f"probe.{k}": v.detach().contiguous() for k, v in probe.state_dict().items()}
    for i, p in enumerate(p for g in optim.param_groups for p in g["params"]):
        for k, v in optim.state.get(p, {}).items():
            state[f"optim.{i}.{k}"] = v.detach().reshape(v.shape).contiguous()
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"step": str(step)}))


def load_state(path: Path, tower: nn.Module, probe: nn.Module, optim: torch.optim.Optimizer, recipe) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            step = int(f.metadata()["step"])
        state = load_file(str(path))
    except Exception as e:  # a torn or foreign file: one line naming it, never a traceback
        raise CheckpointError(
            f"{path}: not a readable tower-training state ({type(e).__name__}); delete it to start over"
        ) from None
    load_checked(tower, {k[6:]: v for k, v in state.items() if k.startswith("tower.")}, source=str(path))
    load_checked(probe, {k[6:]: v for k, v in state.items() if k.startswith("probe.")}, source=str(path))
    for i, p in enumerate(p for g in optim.param_groups for p in g["params"]):
        moments = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"optim.{i}.")}
        if moments:
            optim.state[p] = moments
    if step > recipe.steps:
        raise InputError(f"{path}: saved at step {step}, past the recipe's {recipe.steps} steps")
    return step
