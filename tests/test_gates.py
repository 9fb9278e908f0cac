"""Gates that keep the code base as designed: ruff (lint + format) and the one-way import layers (pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` installs it")
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check():
    out = run(tool("ruff"), "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_format():
    out = run(tool("ruff"), "format", "--no-cache", "--check", ".")
    assert out.returncode == 0, "run `ruff format .`:\n" + out.stdout[-4000:] + out.stderr[-2000:]


def test_import_layers():
    out = run(tool("lint-imports"), "--no-cache")
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout[-4000:] + out.stderr[-2000:]


def test_import_layers_catch_an_upward_import(tmp_path):
    """The contract can fail: a copy of the package where the media layer imports the pipeline is rejected."""
    shutil.copytree(ROOT / "videosalmonn", tmp_path / "videosalmonn")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "videosalmonn" / "media" / "upward.py").write_text("from videosalmonn.pipeline import Pipeline\n")
    out = subprocess.run(
        [tool("lint-imports"), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(BIN)},
    )
    assert out.returncode != 0 and "videosalmonn.media.upward -> videosalmonn.pipeline" in out.stdout, out.stdout
