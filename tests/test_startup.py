"""Start-up stays cheap: the package and every `--help` load no heavy library; the pure-torch stages load no
transformers. Structure only (which modules a fresh interpreter has loaded), never timing: `bench/startup.py`
measures the seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "av", "numpy", "fastapi", "gradio", "peft", "safetensors")
TRANSFORMERS_HEAVY = ("transformers", "torch.distributed.tensor", "torch._dynamo", "transformers.models.instructblip")


def loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Run `code` in a fresh interpreter; which of `names` are in its sys.modules afterwards."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {list(names)!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_import_videosalmonn_loads_no_heavy_library():
    assert loaded_after("import videosalmonn", HEAVY) == []
    # the lazy public names are still there (resolving one is what loads torch)
    assert loaded_after("import videosalmonn\nassert 'Pipeline' in videosalmonn.__all__", HEAVY) == []


@pytest.mark.slow
def test_every_help_loads_no_heavy_library():
    code = """
import contextlib, io
from videosalmonn.cli import build_parser, main
commands = build_parser()._subparsers._group_actions[0].choices
assert len(commands) >= 5, commands
argvs = [["--help"]] + [[name, "--help"] for name in commands]
for name, parser in commands.items():  # and the nested ones: eval run, savemini make, ...
    for group in parser._subparsers._group_actions if parser._subparsers else []:
        argvs += [[name, inner, "--help"] for inner in group.choices or ()]
assert any(len(argv) == 3 for argv in argvs), argvs
for argv in argvs:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0, (argv, e.code)
    assert "usage:" in out.getvalue(), argv
"""
    assert loaded_after(code, HEAVY) == []


@pytest.mark.slow
def test_torch_only_stages_load_no_transformers():
    modules = ["config", "connector.multires", "media.video", "media.clip", "types", "encoders", "prompting"]
    assert loaded_after("\n".join(f"import videosalmonn.{m}" for m in modules), TRANSFORMERS_HEAVY) == []


def test_the_probe_sees_imports():
    assert loaded_after("import json", ("json", "sqlite3")) == ["json"]
