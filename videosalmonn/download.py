"""`videosalmonn download --model M [--set ...]`: every weight file a config names, fetched into the HF cache.

    videosalmonn download --model video-salmonn-13b

One line per component on stdout: the config key, what it names, where that came from (hub, local, part), where
it is now, and its size on disk:

    weights.llm: lmsys/vicuna-13b-v1.5 (hub) -> .../models--lmsys--vicuna-13b-v1.5/snapshots/<sha>: 6 files, 24.24 GiB

What is fetched is what loading reads, found by the same functions (`videosalmonn.weights`): the LLM with every
shard its index names; the tokenizers' files; of an HF InstructBLIP its config, `qformer_tokenizer/` and only the
shards holding the vision model, Q-Former and query tokens (never its LLM); of Whisper its config and the weight
file holding the encoder; the delta, BEATs, towers and LAVIS files as single files (local, or a hub file
`owner/repo/path/in/repo`). A config that needs the released delta or BEATs but leaves them unset (the
`video-salmonn-13b` preset) gets them from `weights.RELEASED`, and the last line says which `--set` uses them.

A component that cannot be fetched (offline and not in the cache, no such repo or file, the hub unreachable) is one
`error:` line on stderr naming it; the others are still fetched, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError, VideoSalmonnError

# `videosalmonn.weights` (torch, safetensors) is imported where used: `videosalmonn download --help` loads neither

EXIT_INCOMPLETE = 1
TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab*", "merges.txt")
CONFIG_FILES = ("config.json", "generation_config.json")


@dataclass(frozen=True)
class Fetched:
    """One component in place: `files` (local, or in the HF cache) under `location`."""

    key: str  # the config key, e.g. `weights.llm`
    source: str  # what it names
    origin: str  # hub, local, part
    location: Path
    files: tuple[Path, ...]

    @property
    def size(self) -> int:
        """Bytes on disk (a cache blob linked twice counts once)."""
        return sum(p.stat().st_size for p in {f.resolve() for f in self.files})

    def line(self) -> str:
        count = f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        return f"{self.key}: {self.source} ({self.origin}) -> {self.location}: {count}, {size_text(self.size)}"


# A component: (config key, what it names, fetch: source -> (location, files)).
Component = tuple[str, str, Callable[[str], tuple[Path, list[Path]]]]


def components(cfg: ModelConfig) -> tuple[list[Component], list[str]]:
    """What loading `cfg` reads, in loading order, and the `--set` lines for released files the config left unset."""
    from videosalmonn.weights import RELEASED

    w, out, defaults = cfg.weights, [], []
    if w.llm:
        out.append(("weights.llm", w.llm, _llm))
        out.append(("weights.tokenizer", w.tokenizer or w.llm, _tokenizer))
    if w.instructblip:
        out.append(("weights.instructblip", w.instructblip, _instructblip))
    if w.eva_vit:
        out.append(("weights.eva_vit", w.eva_vit, _file))
    if w.qformer_tokenizer or w.instructblip:
        out.append(("weights.qformer_tokenizer", w.qformer_tokenizer or "", lambda _: _instruction_tokenizer(cfg)))
    if w.whisper:
        out.append(("weights.whisper", w.whisper, _whisper))
    pretrained = bool(w.llm or w.instructblip or w.whisper)
    for key, given, needed in (
        ("beats", w.beats, pretrained and "beats" not in w.random_towers),
        ("delta", w.delta, w.delta_required),
    ):
        if given or needed:
            source = given or str(RELEASED[key])
            out.append((f"weights.{key}", source, _file))
            if not given:
                defaults.append(f"--set weights.{key}={source}")
    if w.towers:
        out.append(("weights.towers", w.towers, _file))
    return out, defaults


def download(cfg: ModelConfig, report: Callable[[str], None] = print) -> list[str]:
    """Fetch every component of `cfg`; `report` gets one line per component. Returns the errors (one line each)."""
    planned, defaults = components(cfg)
    errors = []
    for key, source, fetch in planned:
        try:
            location, files = fetch(source)
        except VideoSalmonnError as e:
            errors.append(f"{key}: {e}")
            continue
        shown, home = (source, source) if source else _instruction_tokenizer_source(cfg, location)
        report(Fetched(key, shown, origin(home), location, tuple(files)).line())
    if defaults and not errors:
        report(f"not set in {cfg.name}, fetched from their release: run with {' '.join(defaults)}")
    return errors


def origin(source: str) -> str:
    from videosalmonn.parts import is_part

    if is_part(source):
        return "part"
    return "local" if Path(source).expanduser().exists() else "hub"


# ------------------------------------------------------------------------------------------ the components


def _llm(source: str) -> tuple[Path, list[Path]]:
    from videosalmonn.weights import resolve_model, weight_files

    root = resolve_model(source)  # every shard its index names
    return root, [*_matching(root, CONFIG_FILES), *weight_files(source)]


def _tokenizer(source: str) -> tuple[Path, list[Path]]:
    from videosalmonn.weights import resolve

    root = resolve(source)  # configs and tokenizer files
    files = _matching(root, TOKENIZER_FILES)
    if not files:
        raise CheckpointError(f"{source}: no tokenizer files in {root}")
    return root, files


def _instructblip(source: str) -> tuple[Path, list[Path]]:
    from videosalmonn.weights import PICKLE_SUFFIXES, resolve, weight_files

    if Path(source).suffix in PICKLE_SUFFIXES:  # the LAVIS file
        return _file(source)
    from videosalmonn.encoders.vision import HF_INSTRUCTBLIP_PREFIXES

    root = resolve(source)  # configs and tokenizers, `qformer_tokenizer/` included
    return root, [*_matching(root, CONFIG_FILES), *weight_files(source, HF_INSTRUCTBLIP_PREFIXES)]


def _whisper(source: str) -> tuple[Path, list[Path]]:
    from videosalmonn.encoders.whisper import ENCODER_PREFIXES
    from videosalmonn.weights import resolve, weight_files

    root = resolve(source)
    return root, [*_matching(root, CONFIG_FILES), *weight_files(source, ENCODER_PREFIXES)]


def _instruction_tokenizer(cfg: ModelConfig) -> tuple[Path, list[Path]]:
    """The tokenizer inference uses (its size checked against the Q-Former): the same choice, fetched."""
    from videosalmonn.prompting.instruction import instruction_tokenizer_for

    root = Path(instruction_tokenizer_for(cfg).hf.name_or_path)
    return root, _matching(root, TOKENIZER_FILES)


def _instruction_tokenizer_source(cfg: ModelConfig, root: Path) -> tuple[str, str]:
    """(what to show, where it came from) for the instruction tokenizer chosen by default."""
    from videosalmonn.prompting.instruction import BERT_UNCASED, INSTRUCTBLIP_SUBFOLDER

    if root.name == INSTRUCTBLIP_SUBFOLDER:
        return f"{cfg.weights.instructblip} {INSTRUCTBLIP_SUBFOLDER}/", cfg.weights.instructblip
    return BERT_UNCASED, BERT_UNCASED


def _file(source: str) -> tuple[Path, list[Path]]:
    from videosalmonn.pipeline import trained_weights_file  # a training checkpoint directory -> its file
    from videosalmonn.weights import resolve_file

    path = resolve_file(str(trained_weights_file(source)) if Path(source).exists() else source)
    return path, [path]


def _matching(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and any(fnmatch.fnmatch(p.name, g) for g in patterns))


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------------------------------------ command


def cmd_download(args: argparse.Namespace) -> int:
    from videosalmonn.hub import offline

    cfg = ModelConfig.from_name(args.model, args.set)
    if not components(cfg)[0]:
        print(f"{cfg.name}: names no weights to download (every part is seeded random)")
        return 0
    errors = download(cfg, lambda line: print(line, flush=True))
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        where = " (HF_HUB_OFFLINE=1: from the cache only)" if offline() else ""
        print(f"{len(errors)} component(s) of {cfg.name} not fetched{where}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch every weight file a model names into the Hugging Face cache")
    p.add_argument("--model", default="video-salmonn-13b", help="preset name or model YAML (default video-salmonn-13b)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. weights.delta=FILE"
    )
    p.set_defaults(func=cmd_download)
