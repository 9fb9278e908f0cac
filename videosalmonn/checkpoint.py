"""Building a model with its weights, and saving/loading the trained part.

    load_model(cfg)      encoders (official LAVIS/BEATs files or HF) + LLM (HF) + delta (official .pt or ours)
    save_trainable(...)  our format: the trainable tensors only (connector + LoRA), safetensors, atomic write
    load_trainable(...)  the inverse, with a coverage check against the model's trainable set
    load_towers(...)     towers trained here (`weights.towers`, or the `encoder.*` keys of our delta): `mini`
    save_pretrained(...) a directory a model loads from (`--model DIR`, `Pipeline.from_pretrained`, a hub id once
                         uploaded): model.yaml + model.safetensors (connector + LoRA + the towers trained here), the
                         frozen parts named by their hub ids or paths, never copied

Every load checks coverage: a missing or unexpected key is an error naming the file; keys known to be unused
(`low_Qformer.*` of the official delta) are reported, not hidden.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
import yaml
from accelerate import init_empty_weights
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from videosalmonn.config import MODEL_FILE, ModelConfig, to_dict
from videosalmonn.encoders.audio_visual import AVEncoder
from videosalmonn.errors import CheckpointError, ConfigError
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.model import DTYPES, VideoSalmonn, build_connector, trainable_names
from videosalmonn.official.delta import convert_official_delta, ours_to_official
from videosalmonn.parts import is_part
from videosalmonn.rng import seeded
from videosalmonn.weights import PICKLE_SUFFIXES, RELEASED, few, load_checked, read_tensors, resolve_file

log = logging.getLogger(__name__)


def load_model(cfg: ModelConfig, device: torch.device | str | None = None, for_inference: bool = False) -> VideoSalmonn:
    """The model of `cfg` with every weight the config names; parts without weights are seeded random.

    Parts with weights are built empty (meta) and filled straight on `device` in the config's dtype, the LLM
    shard by shard: nothing about to be loaded is randomly initialised first, and host memory holds at most one
    checkpoint file (plus the model, on a CPU target). `for_inference`: refuse a config whose
    `weights.delta_required` is set but `weights.delta` is not.
    """
    check_weights(cfg, for_inference)
    if cfg.llm.device_map is not None and not for_inference:
        raise ConfigError("llm.device_map places the LLM for inference (infer, serve, eval); training loads it whole")
    if not cfg.weights.llm:  # a random model (check_weights: every pretrained part or none)
        model = VideoSalmonn.from_config(cfg)
        if cfg.weights.towers:
            load_towers(model.encoder, cfg, cfg.weights.towers)
        if cfg.weights.delta:
            load_delta(model, cfg.weights.delta)
        return model.cast(device).eval()
    place = {"device": torch.device(device or "cpu"), "dtype": DTYPES[cfg.dtype]}
    # towers listed in weights.random_towers keep their seeded random init: the encoder is then built for real
    empty = contextlib.nullcontext() if cfg.weights.random_towers else init_empty_weights()
    with empty, seeded(cfg.seed):  # seeded: the global RNG is left as it was
        encoder = AVEncoder(cfg.encoders, cfg.media.image_size)
    load_encoder_weights(encoder, cfg, **place)
    if cfg.weights.towers:
        load_towers(encoder, cfg, cfg.weights.towers)
    llm = LanguageModel.build(cfg.llm, cfg.weights.llm, **place)
    connector = None
    if cfg.weights.delta:  # to be loaded: built empty; else trained from its seeded random init
        with init_empty_weights(), seeded(cfg.seed + 2):
            connector = build_connector(cfg, llm.width)
    model = VideoSalmonn.from_config(cfg, llm=llm, encoder=encoder, connector=connector)
    if cfg.weights.delta:
        load_delta(model, cfg.weights.delta, **place)
    check_loaded(model)
    return model.cast(device).eval()


def check_loaded(model: VideoSalmonn) -> None:
    """Every tensor of a model built empty was loaded (a loader that forgot a key fails here, not in forward); the
    LLM's weights offloaded to disk (`llm.device_map`) wait there by design."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    empty = [n for n, t in tensors if t.is_meta and not model.llm.is_offloaded(t)]
    if empty:
        raise CheckpointError(f"{len(empty)} tensor(s) were built empty and never loaded: {few(empty)}")


def check_weights(cfg: ModelConfig, for_inference: bool = False) -> None:
    """Every pretrained part or none (`weights.random_towers` excepted); for inference, the trained delta when the
    config requires one."""
    w = cfg.weights
    if for_inference and w.delta_required and not w.delta:
        raise CheckpointError(
            f"weights.delta not set: {cfg.name} needs the trained connector + LoRA to answer "
            f"(e.g. --set weights.delta={RELEASED['delta']}, or the local file)"
        )
    parts = {
        "weights.instructblip": w.instructblip,
        "weights.whisper": w.whisper,
        "weights.beats": w.beats,
        "weights.llm": w.llm,
    }
    for tower in w.random_towers:  # deliberately random (e.g. `mini`): neither given nor required
        if parts.pop(f"weights.{tower}"):
            raise CheckpointError(f"weights.{tower} is set and listed in weights.random_towers: choose one")
    given = [k for k, v in parts.items() if v]
    if given and len(given) < len(parts):
        missing = ", ".join(k for k, v in parts.items() if not v)
        raise CheckpointError(f"{missing} not set: give every pretrained part or none (random tiny model)")


def load_encoder_weights(encoder: AVEncoder, cfg: ModelConfig, **place) -> None:
    """Frozen towers from their own files: EVA + InstructBLIP (LAVIS or HF), Whisper (HF), BEATs (official .pt).

    `place`: `device=`, `dtype=` for an encoder built empty (see `weights.load_checked`)."""
    from videosalmonn.encoders.beats import load_beats_weights
    from videosalmonn.encoders.vision import load_vision_weights
    from videosalmonn.encoders.whisper import load_whisper_weights

    w = cfg.weights
    if w.instructblip:
        load_vision_weights(encoder.vision, instructblip=w.instructblip, eva_vit=w.eva_vit, **place)
    if w.whisper:
        load_whisper_weights(encoder.whisper, w.whisper, **place)
    if w.beats:
        load_beats_weights(encoder.beats, w.beats, **place)


def load_delta(model: VideoSalmonn, path: str | Path, **place) -> list[str]:
    """Load the trained connector + LoRA from the official delta (.pt) or our safetensors; returns unused keys.

    `path`: a local file or a hub file `owner/repo/path/in/repo` (`weights.resolve_file`).
    `place`: `device=`, `dtype=` for a connector built empty."""
    path = resolve_file(path)
    check_sha256(path, model.cfg.weights.delta_sha256)
    if path.suffix in PICKLE_SUFFIXES:
        state, unused = convert_official_delta(read_tensors(path), model.cfg)
        if unused:
            log.info(
                "%s: %d keys known to be unused by the official model (e.g. %s) were not loaded",
                path,
                len(unused),
                unused[0],
            )
    else:
        state, unused = read_tensors(path), []
        towers = {k: state.pop(k) for k in [k for k in state if k.startswith(ENCODER_PREFIX)]}
        if towers:
            load_towers(model.encoder, model.cfg, path, towers)
    load_checked(model, state, source=str(path), expected=trainable_names(model), **place)
    return unused


def check_sha256(path: Path, expected: str | None) -> None:
    """A file whose content must be exactly the one a config names (None: not checked)."""
    if expected is None:
        return
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != expected:
        raise CheckpointError(
            f"{path}: sha256 {h.hexdigest()[:16]}... is not the {expected[:16]}... the config names "
            "(a changed or damaged file; reinstall the package, or set weights.delta_sha256=null for your own)"
        )


ENCODER_PREFIX = "encoder."
TOWER_MODULES = {"instructblip": "vision", "whisper": "whisper", "beats": "beats"}  # weights name -> AVEncoder


def load_towers(encoder: AVEncoder, cfg: ModelConfig, path: str | Path, state: dict[str, Tensor] | None = None):
    """Towers trained here (`encoder.<vision|whisper|beats>.*`) over their seeded init; only towers listed in
    `weights.random_towers` may be given, and a tower given is given whole."""
    state = read_tensors(path) if state is None else state
    listed = {TOWER_MODULES[t] for t in cfg.weights.random_towers}
    given = {k.removeprefix(ENCODER_PREFIX).split(".", 1)[0] for k in state}
    if not given <= listed:
        raise CheckpointError(
            f"{path}: holds encoder tower(s) {', '.join(sorted(given - listed))} that weights.random_towers does "
            "not list (only towers trained here are read from this file)"
        )
    own = encoder.state_dict()
    expected = [k for k in own if k.split(".", 1)[0] in given]
    state = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items()}
    load_checked(encoder, state, source=str(path), expected=expected)


def trainable_state(model: VideoSalmonn) -> dict[str, Tensor]:
    params = dict(model.named_parameters())
    return {k: params[k].detach().contiguous() for k in trainable_names(model)}


def save_trainable(model: VideoSalmonn, path: str | Path) -> None:
    """Trainable tensors (connector + LoRA) to safetensors, with the model config as metadata; atomic."""
    state = {k: v.cpu() for k, v in trainable_state(model).items()}
    meta = {"format": "videosalmonn-trainable", "config": json.dumps(to_dict(model.cfg))}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def export_official_delta(model: VideoSalmonn, path: str | Path) -> None:
    """Trainable tensors under the official names (`torch.save` of a flat state dict, spec §7.1)."""
    state = {ours_to_official(k, model.cfg): v.cpu() for k, v in trainable_state(model).items()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


SAVED_WEIGHTS = "model.safetensors"  # the trained tensors of a `save_pretrained` directory
FROZEN_SOURCES = ("eva_vit", "instructblip", "qformer_tokenizer", "whisper", "beats", "llm", "tokenizer")


def save_pretrained(model: VideoSalmonn, out_dir: str | Path) -> Path:
    """Write `out_dir/{model.yaml, model.safetensors}`: what `ModelConfig.from_name(out_dir)` (`--model`,
    `Pipeline.from_pretrained`) loads back as this model, here or, once uploaded, by hub id.

    model.safetensors holds the trainable tensors (connector + LoRA) and the towers trained here (those the
    config's `weights.towers` or delta gave), in `save_trainable`'s format; model.yaml is the model config with
    `weights.delta: model.safetensors` (relative: the directory can move). The frozen parts stay references: hub
    ids and `parts:` names as written, local paths made absolute (`local_sources` lists them: they do not travel
    to another machine). Seeded-random parts (tiny) are rebuilt from the config's seed.
    """
    out = Path(out_dir)
    towers = trained_towers(model.cfg)
    if towers and model.encoder is None:
        raise CheckpointError(
            f"the encoder was split off: its towers trained here ({', '.join(sorted(towers))}) cannot be saved"
        )
    state = trainable_state(model)
    if towers:
        own = model.encoder.state_dict()
        state |= {f"{ENCODER_PREFIX}{k}": v for k, v in own.items() if k.split(".", 1)[0] in towers}
    cfg = to_dict(model.cfg)
    w = cfg["weights"]
    w.update({k: reference(w[k]) for k in FROZEN_SOURCES if w[k]})
    w.update(delta=SAVED_WEIGHTS, delta_sha256=None, towers=None)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": "videosalmonn-trainable", "config": json.dumps(cfg)}
    atomic_write(out / SAVED_WEIGHTS, lambda tmp: save_file(state, tmp, metadata=meta))
    header = (
        "# Written by `save_pretrained` (`videosalmonn export --hf`): the trained tensors are in model.safetensors;\n"
        "# the frozen parts are named by hub id or path. `--model THIS_DIR` (or its hub id) loads it.\n"
    )
    atomic_write(out / MODEL_FILE, lambda tmp: Path(tmp).write_text(header + yaml.safe_dump(cfg, sort_keys=False)))
    return out


def trained_towers(cfg: ModelConfig) -> set[str]:
    """The encoder towers (`vision`, `whisper`, `beats`) trained here: those whose `encoder.*` keys the config's
    `weights.towers` file or safetensors delta hold (only their key names are read)."""
    towers = set()
    for source, prefix in ((cfg.weights.towers, ""), (cfg.weights.delta, ENCODER_PREFIX)):
        if not source or Path(str(source)).suffix != ".safetensors":
            continue
        with safe_open(str(resolve_file(source)), framework="pt") as f:
            keys = [k for k in f.keys() if k.startswith(prefix)]
        towers |= {k.removeprefix(ENCODER_PREFIX).split(".", 1)[0] for k in keys}
    return towers


def local_sources(cfg: ModelConfig) -> list[str]:
    """The `weights.*` of `cfg` naming local files or directories (`parts:` excepted): another machine lacks them."""
    w = to_dict(cfg.weights)
    return [f"weights.{k}={w[k]}" for k in FROZEN_SOURCES if w[k] and _is_local(w[k])]


def _is_local(source: str) -> bool:
    return not is_part(source) and Path(os.path.expanduser(source)).exists()


def reference(source: str | None) -> str | None:
    """A frozen part's source as a saved config names it: a local path made absolute, anything else as written."""
    return str(Path(os.path.expanduser(source)).resolve()) if source and _is_local(source) else source


def load_trainable(model: VideoSalmonn, path: str | Path) -> None:
    load_checked(model, read_tensors(path), source=str(path), expected=trainable_names(model))


def atomic_write(path: str | Path, write) -> None:
    """Call `write(tmp_path)` then rename over `path`: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
