"""Dependencies (issue 16, item 1): pyproject.toml promises ranges, requirements/lock.txt is the exact set CI and the
README's install line use, requirements/lowest.txt is the set of lower bounds `.ci/run` installs and tests; and a
command whose optional library is missing ends with one line naming the extra to install."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from videosalmonn.cli import EXTRA_OF_MODULE, missing_extra

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements" / "lock.txt"
LOWEST = ROOT / "requirements" / "lowest.txt"
# pyproject's floor for these is not tried (every torch but the local 2.13.0 CPU wheel is a CUDA download here):
# lowest.txt holds the version that is, inside the range
UNTRIED_FLOORS = {"torch": Version("2.13.0")}


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def groups() -> dict[str, list[Requirement]]:
    """{"": core, extra: its own requirements}, the package's references to its own extras left out."""
    name = canonicalize_name(project()["name"])
    out = {"": [Requirement(r) for r in project()["dependencies"]]}
    for extra, lines in project().get("optional-dependencies", {}).items():
        out[extra] = [r for r in map(Requirement, lines) if canonicalize_name(r.name) != name]
    return out


def extras_of_all() -> list[str]:
    """The extras `.[all]` installs (the README's line, so the lock and the lowest check)."""
    (ref,) = [Requirement(r) for r in project()["optional-dependencies"]["all"]]
    return sorted(ref.extras)


def installed_by_all() -> dict[str, Requirement]:
    g = groups()
    return {canonicalize_name(r.name): r for group in ["", *extras_of_all()] for r in g[group]}


def pins(path: Path) -> dict[str, Version]:
    """{name: version} of a file of `name==version` lines (comments and blank lines allowed, nothing else)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.extras and req.marker is None, f"{path.name}: {line}"
        assert canonicalize_name(req.name) not in out, f"{path.name}: {req.name} twice"
        out[canonicalize_name(req.name)] = Version(spec.version)
    return out


def floor(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(lows) if lows else None


def test_no_exact_pin_without_a_comment_saying_why():
    lines = PYPROJECT.read_text().splitlines()
    for group, reqs in groups().items():
        for req in reqs:
            if not any(s.operator in ("==", "===") for s in req.specifier):
                continue
            (at,) = [i for i, line in enumerate(lines) if f'"{req}"' in line.replace(" ", "")]
            above = at
            while above > 0 and lines[above - 1].strip().startswith("#"):
                above -= 1
            why = "#" in lines[at].split(f'"{req}"')[-1] or above < at
            assert why, f"pyproject.toml [{group or 'core'}]: {req} is pinned exactly with no comment saying why"


def test_every_requirement_of_the_all_install_has_a_floor():
    for req in installed_by_all().values():
        assert floor(req) is not None, f"pyproject.toml: {req} has no lower bound (the lowest check needs one)"


def test_the_lock_is_exact_and_inside_every_range():
    lock = pins(LOCK)
    assert lock["torch"] == Version("2.13.0")  # the local CPU wheel; any other torch is a multi-GB CUDA build here
    for name in installed_by_all():
        assert name in lock, f"requirements/lock.txt has no {name} (rerun requirements/make_lock.py)"
    for reqs in groups().values():
        for req in reqs:
            name = canonicalize_name(req.name)
            if name in lock:
                assert req.specifier.contains(lock[name], prereleases=True), f"lock {name}=={lock[name]} vs {req}"
    assert "videosalmonn" not in lock


def test_the_lowest_versions_are_the_floors():
    lowest, wanted = pins(LOWEST), installed_by_all()
    assert sorted(lowest) == sorted(wanted), "requirements/lowest.txt: one line per requirement of .[all]"
    for name, req in wanted.items():
        expected = UNTRIED_FLOORS.get(name, floor(req))
        assert lowest[name] == expected, f"lowest.txt {name}=={lowest[name]}, pyproject.toml {req}"
        assert req.specifier.contains(lowest[name], prereleases=True)


def test_readme_and_ci_install_with_the_lock_and_run_the_lowest_versions():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Setup", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert len(setup) == 2
    assert ".venv/bin/pip install torch==2.13.0 -c requirements/lock.txt &&" in setup[0]
    assert '.venv/bin/pip install -e ".[all]" -c requirements/lock.txt &&' in setup[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "requirements/lowest.txt" in ci and '-m "not slow"' in ci


def test_each_optional_module_names_the_extra_that_installs_it():
    g = groups()
    for module, extra in EXTRA_OF_MODULE.items():
        assert extra in g, f"{module}: no [{extra}] extra in pyproject.toml"
        dist = canonicalize_name(module)  # each of these distributions is named as its module
        direct = {canonicalize_name(r.name) for r in g[extra]}
        pulled = set(direct)
        for name in direct:  # or one of the extra's libraries requires it (starlette, by fastapi)
            try:
                pulled |= {canonicalize_name(Requirement(r).name) for r in metadata.requires(name) or []}
            except metadata.PackageNotFoundError:
                pass
        assert dist in pulled, f"{module}: [{extra}] = {sorted(direct)} does not install it"


def test_missing_extra_line():
    line = missing_extra(ModuleNotFoundError("No module named 'fastapi'", name="fastapi.responses"))
    assert line == "fastapi is not installed: it comes with the serve extra, pip install 'videosalmonn[serve]'"
    assert missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope")) is None


BLOCKED = """
import sys
BLOCK = set(sys.argv[1].split(","))


class Blocker:  # as if the optional libraries were not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Blocker())
from videosalmonn.cli import main

sys.exit(main(sys.argv[2:]))
"""


def run_without(modules, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, ",".join(modules), *argv], capture_output=True, text=True, timeout=timeout
    )


def test_help_needs_no_extra():
    done = run_without(EXTRA_OF_MODULE, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "serve" in done.stdout and "infer" in done.stdout


@pytest.mark.parametrize(
    "command, extra", [(["serve", "--model", "tiny"], "serve"), (["demo-ui", "--model", "tiny"], "demo")]
)
def test_a_missing_extra_is_one_line_naming_it(command, extra):
    done = run_without(EXTRA_OF_MODULE, *command)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert re.fullmatch(rf"error: \w+ is not installed: it comes with the {extra} extra, .*\[{extra}\]'", line)


@pytest.mark.slow
def test_infer_needs_no_extra():
    clip = ROOT / "tests" / "assets" / "clip2s.mp4"
    argv = ["infer", "--model", "tiny", "--video", str(clip), "--prompt", "What?"]
    done = run_without(EXTRA_OF_MODULE, *argv, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
