"""Shared fixtures: paths to ../shared (golden data, demo media), tiny configs, seeded RNG."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported anywhere
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEOSALMONN_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden" / "official_v1"
MEDIA = SHARED / "media"
DEMO_VIDEO = MEDIA / "4405327307.mp4"
DEMO_WAV = MEDIA / "4405327307.wav"
DEMO_IMAGE = MEDIA / "761183272.jpg"
DEMO_FLAC = MEDIA / "1272-128104-0000.flac"

needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden data not found at {GOLDEN}")
needs_media = pytest.mark.skipif(not DEMO_VIDEO.is_file(), reason=f"demo media not found at {MEDIA}")


@pytest.fixture(scope="session")
def golden_json() -> dict:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return json.loads((GOLDEN / "golden.json").read_text())


@pytest.fixture(scope="session")
def golden_tensors():
    """golden_tensors(case) -> dict of the official tensors recorded for that case."""
    from safetensors.torch import load_file

    cache: dict[str, dict[str, torch.Tensor]] = {}

    def get(case: str) -> dict[str, torch.Tensor]:
        if not GOLDEN.is_dir():
            pytest.skip(f"golden data not found at {GOLDEN}")
        if case not in cache:
            cache[case] = load_file(str(GOLDEN / "tensors" / f"{case}.safetensors"))
        return cache[case]

    return get


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a small, busy
    machine two spinning OpenMP threads per process slow training ~10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# a tiny BEATs as the official checkpoint's own `cfg` dict writes it (= BEATsConfig(patch_dim=32, width=80, depth=2,
# num_heads=4, mlp_width=160), post-LN with relative positions, as the released BEATs)
TINY_BEATS_OFFICIAL = dict(
    input_patch_size=16,
    embed_dim=32,
    encoder_embed_dim=80,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_embed_dim=160,
    relative_position_embedding=True,
    max_distance=800,
    deep_norm=True,
    gru_rel_pos=True,
)

HUB_SHA = "1" * 40  # the commit every emulated repo is at


class EmulatedHub:
    """The Hugging Face hub, emulated: `add(repo_id, folder, repo_type)`; `snapshot_download`/`hf_hub_download`
    copy a registered folder's files into the HF cache layout (`<type>s--org--name/snapshots/<sha>/`,
    `refs/main`), the way huggingface_hub lays it out. `downloaded`: "repo_id/path" of every file copied;
    `calls`: (repo_id, revision) of every snapshot asked for."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.repos: dict[tuple[str, str], Path] = {}
        self.downloaded: list[str] = []
        self.calls: list[tuple[str, str | None]] = []

    def add(self, repo_id: str, folder: Path, repo_type: str = "model") -> None:
        self.repos[(repo_type, repo_id)] = folder

    def folder(self, repo_id: str, repo_type: str | None) -> Path:
        from types import SimpleNamespace

        from huggingface_hub.errors import RepositoryNotFoundError

        if (repo_type or "model", repo_id) not in self.repos:
            raise RepositoryNotFoundError(f"404: {repo_id}", response=SimpleNamespace(headers={}, request=None))
        return self.repos[(repo_type or "model", repo_id)]

    def snapshot_download(self, repo_id, allow_patterns=None, repo_type=None, revision=None, **_) -> str:
        import fnmatch
        import shutil

        self.calls.append((repo_id, revision))
        folder = self.folder(repo_id, repo_type)
        repo = self.cache / f"{repo_type or 'model'}s--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(HUB_SHA)
        snap = repo / "snapshots" / (revision or HUB_SHA)
        snap.mkdir(parents=True, exist_ok=True)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = f.relative_to(folder).as_posix()
            wanted = allow_patterns is None or any(fnmatch.fnmatch(rel, p) for p in allow_patterns)
            if wanted and not (snap / rel).exists():
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, snap / rel)
                self.downloaded.append(f"{repo_id}/{rel}")
        return str(snap)

    def hf_hub_download(self, repo_id, filename, repo_type=None, revision=None, subfolder=None, **_) -> str:
        from huggingface_hub.errors import EntryNotFoundError

        filename = f"{subfolder}/{filename}" if subfolder else filename
        if not (self.folder(repo_id, repo_type) / filename).is_file():
            raise EntryNotFoundError(f"404: {repo_id}/{filename}")
        snap = self.snapshot_download(repo_id, [filename], repo_type=repo_type, revision=revision)
        return str(Path(snap) / filename)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, as huggingface_hub's own functions see it (offline: they never go online)."""
    import huggingface_hub.constants

    path = tmp_path / "hf-cache"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return path


@pytest.fixture
def hub(hf_cache, monkeypatch) -> EmulatedHub:
    """The hub online, emulated: huggingface_hub's download functions copy from folders into `hf_cache`."""
    import huggingface_hub

    hub = EmulatedHub(hf_cache)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    return hub
