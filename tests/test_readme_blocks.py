"""The README runs as written (issue 12): its fenced bash and python blocks, in order, on a fresh clone.

Every bash/python block is preceded by a marker comment:

    <!-- test: run -->            run it (bash with `set -eo pipefail`; python with the venv's interpreter): exit 0,
                                  no "Traceback" in its output
    <!-- test: serve URL -->      start it in the background, wait until URL answers 200, stop it (SIGINT to its
                                  process group) at the end of its `## ` section; its port is replaced by a free one
                                  in that section's blocks (so a server already on 8000 does not collide)
    <!-- test: skip (reason) -->  not run, and the reason says why

The clone is `git clone` of this repository with the working tree's files copied over it (tracked and new ones
that git does not ignore: uncommitted edits are what is tested), `.venv` a symlink to this checkout's, and
`../shared` a symlink to the shared data (`$VIDEOSALMONN_SHARED`), with OMP_NUM_THREADS=1 (what torchrun sets).
After the last block, `git status --porcelain` must be what it was before the first: the README's commands write
only ignored paths (runs/, ...).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.S | re.M)
MARKER = re.compile(r"<!-- test: (run|serve|skip)(?: (.*?))? -->\s*$")
BLOCK_TIMEOUT_S = 900
SERVE_WAIT_S = 180


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    action: str  # run | serve | skip
    arg: str  # serve: the URL to probe; skip: the reason
    section: str  # the `## ` heading it sits under


def readme_blocks(text: str) -> list[Block]:
    """Every bash/python fenced block with its marker; a block without one is an error (ValueError)."""
    blocks = []
    for m in FENCE.finditer(text):
        lang = m.group(1)
        if lang not in ("bash", "python"):
            continue
        before = text[: m.start()].rstrip("\n").splitlines()
        line = len(before) + 2
        marker = MARKER.search(before[-1]) if before else None
        if marker is None:
            raise ValueError(f"README.md:{line}: a {lang} block without a `<!-- test: run|serve|skip -->` marker")
        headings = [h for h in before if h.startswith("## ")]
        blocks.append(
            Block(line, lang, m.group(2), marker.group(1), marker.group(2) or "", headings[-1] if headings else "")
        )
    return blocks


def test_every_block_is_marked_and_every_skip_says_why():
    blocks = readme_blocks(README.read_text())
    assert blocks, "no bash/python blocks found"
    for b in blocks:
        if b.action == "skip":
            assert re.fullmatch(r"\(.+\)", b.arg), f"README.md:{b.line}: a skip marker needs a (reason)"
        if b.action == "serve":
            assert b.arg.startswith("http://127.0.0.1:"), f"README.md:{b.line}: serve needs a local URL to probe"
    assert any(b.action == "run" for b in blocks)


def test_an_unmarked_block_is_refused():
    with pytest.raises(ValueError, match="README.md:3: a bash block without"):
        readme_blocks("text\n\n```bash\necho hi\n```\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_clone(tmp: Path) -> Path:
    """tmp/repo: a clone with the working tree's tracked files, .venv and ../shared linked."""
    repo = tmp / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # tracked + new, not ignored
    tracked = subprocess.run(listed, cwd=ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        src = ROOT / name
        if name and src.is_file() and not src.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (tmp / "shared").symlink_to(SHARED.resolve())
    return repo


def run_block(block: Block, repo: Path, env: dict, code: str) -> subprocess.CompletedProcess:
    if block.lang == "python":
        cmd = [str(repo / ".venv" / "bin" / "python"), "-c", code]
    else:
        cmd = ["bash", "-c", "set -eo pipefail\n" + code]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


def wait_for(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVE_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}) before answering {url}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {SERVE_WAIT_S} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, log: Path) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return log.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "media").is_dir(), reason=f"demo media not found at {SHARED / 'media'}")
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_readme_runs_top_to_bottom_on_a_fresh_clone(tmp_path):
    blocks = readme_blocks(README.read_text())
    repo = fresh_clone(tmp_path)
    env = {
        **os.environ,
        "VIDEOSALMONN_SHARED": str(tmp_path / "shared"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",  # README "On CPU": several times faster on a small, busy machine (7x measured here)
    }
    before = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    server: tuple[subprocess.Popen, Path, str] | None = None  # (process, its log, its section)
    ports: dict[str, str] = {}  # within the server's section: README port -> the free port used
    timings = []
    try:
        for block in blocks:
            if server is not None and block.section != server[2]:
                output = stop(server[0], server[1])
                assert "Traceback" not in output, output[-3000:]
                server, ports = None, {}
            if block.action == "skip":
                continue
            code = block.code
            for old, new in ports.items():
                code = code.replace(old, new)
            start = time.monotonic()
            if block.action == "serve":
                port = re.search(r":(\d+)", block.arg).group(1)
                ports = {port: str(free_port())}
                code, url = code.replace(port, ports[port]), block.arg.replace(port, ports[port])
                log = tmp_path / f"serve-{block.line}.log"
                with open(log, "w") as f:
                    proc = subprocess.Popen(
                        ["bash", "-c", code],
                        cwd=repo,
                        env=env,
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                server = (proc, log, block.section)
                wait_for(url, proc, log)
            else:
                out = run_block(block, repo, env, code)
                output = out.stdout + out.stderr
                assert out.returncode == 0, f"README.md:{block.line} exited {out.returncode}:\n{code}\n{output[-4000:]}"
                assert "Traceback" not in output, f"README.md:{block.line}:\n{output[-4000:]}"
            timings.append(f"README.md:{block.line} {block.action} {time.monotonic() - start:.1f} s")
        if server is not None:
            output = stop(server[0], server[1])
            assert "Traceback" not in output, output[-3000:]
            server = None
    finally:
        if server is not None:
            stop(server[0], server[1])
        print("\n".join(timings))
    after = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert after == before, f"the README's commands changed tracked or unignored files:\n{after}"
