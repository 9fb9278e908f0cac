"""A full disk outside training (issue 11, row 12): `infer --manifest`, `eval run`, `eval merge`, `eval report` and
every results write end with one line naming the file (exit 2), leave no torn tail or temporary file, and a rerun
once space is free completes with every sample once. The disk is simulated: os.write on files under the test's
directory writes `free` more bytes (the last write short), then raises ENOSPC."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import DEMO_FLAC, ROOT
from test_eval_runner import librispeech

from videosalmonn.cli import main
from videosalmonn.errors import DiskFullError
from videosalmonn.pipeline import Pipeline
from videosalmonn.results import ResultsFile, write_atomic

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"


class Disk:
    """os.write for files under `root` (whose path holds `only`): `free` more bytes, then ENOSPC (free=None:
    unlimited)."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.free, self.only = str(root), None, ""
        real = os.write

        def write(fd, data):
            path = os.readlink(f"/proc/self/fd/{fd}")
            if self.free is None or not path.startswith(self.root) or self.only not in path:
                return real(fd, data)
            if self.free <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = real(fd, bytes(data[: self.free]))  # short when the disk fills mid-line
            self.free -= n
            return n

        monkeypatch.setattr(os, "write", write)


@pytest.fixture
def disk(tmp_path, monkeypatch) -> Disk:
    return Disk(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", device="cpu")


@pytest.fixture
def cli(pipe, monkeypatch, capsys):
    """cli(*args) -> (exit code, stderr) of `videosalmonn ...` in this process, on the module's tiny pipeline."""
    monkeypatch.setattr(Pipeline, "from_pretrained", lambda *a, **k: pipe)

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().err

    return run


def lines(path: Path) -> list[dict]:
    """Every record; the file must end with a complete line (no torn tail)."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), raw[-80:]
    return [json.loads(line) for line in raw.decode().splitlines()]


def one_line(err: str, name: str) -> str:
    """The command's error: one line naming `name`, after at most a progress bar, no traceback."""
    assert "Traceback" not in err and err.count("error: ") == 1, err
    line = err.replace("\r", "\n").rstrip("\n").rsplit("\n", 1)[-1]
    assert line.startswith("error: ") and f"{name}: no space left on device, " in line, err
    assert line.endswith(
        "free space and run the command again (infer --manifest and eval run continue where they stopped)"
    )
    return line


def no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob(".*.tmp")], list(root.rglob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- the writers


def test_a_short_write_is_continued_and_a_failed_one_taken_back(tmp_path, disk):
    results = ResultsFile(tmp_path / "out.jsonl")
    results.append({"id": "a", "answer": "x" * 50})
    disk.free = 30  # the next line is cut after 30 bytes
    with pytest.raises(DiskFullError, match=r"out\.jsonl: no space left on device, \d+ MiB free") as e:
        results.append({"id": "b", "answer": "y" * 50})
    assert "\n" not in str(e.value)
    assert [r["id"] for r in lines(tmp_path / "out.jsonl")] == ["a"]  # the partial line is gone
    disk.free = None
    results.append({"id": "b", "answer": "y" * 50})
    assert [r["id"] for r in lines(tmp_path / "out.jsonl")] == ["a", "b"]
    assert ResultsFile(tmp_path / "out.jsonl").done() == {"a", "b"}


def test_a_short_write_that_then_succeeds_is_whole(tmp_path, monkeypatch):
    real, calls = os.write, []

    def short(fd, data):  # a write that stops halfway (a signal, a nearly full disk) then goes on
        calls.append(len(data))
        return real(fd, bytes(data[: max(1, len(data) // 2)]))

    monkeypatch.setattr(os, "write", short)
    ResultsFile(tmp_path / "out.jsonl").append({"id": "a", "answer": "z" * 40})
    assert len(calls) > 1 and lines(tmp_path / "out.jsonl") == [{"id": "a", "answer": "z" * 40}]


def test_a_failed_fsync_takes_the_line_back(tmp_path, monkeypatch):
    results = ResultsFile(tmp_path / "out.jsonl")
    results.append({"id": "a"})

    def full(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=r"out\.jsonl: no space left"):
        results.append({"id": "b"})
    assert lines(tmp_path / "out.jsonl") == [{"id": "a"}]


def test_an_atomic_write_leaves_the_old_file_whole(tmp_path, disk, monkeypatch):
    path = tmp_path / "results.json"
    write_atomic(path, b'{"old": 1}\n')
    disk.free = 5
    with pytest.raises(DiskFullError, match=r"results\.json: no space left"):
        write_atomic(path, b'{"new": 2, "padding": "' + b"p" * 100 + b'"}\n')
    assert path.read_bytes() == b'{"old": 1}\n'
    no_temporaries(tmp_path)

    disk.free = None
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space", a[1])))
    with pytest.raises(DiskFullError, match=r"results\.json: no space left"):
        write_atomic(path, b'{"new": 2}\n')  # a rename that needs a directory block
    assert path.read_bytes() == b'{"old": 1}\n'
    no_temporaries(tmp_path)


def test_other_os_errors_are_not_disguised(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "fsync", denied)
    with pytest.raises(PermissionError):
        ResultsFile(tmp_path / "out.jsonl").append({"id": "a"})
    with pytest.raises(PermissionError):
        write_atomic(tmp_path / "x.json", b"{}")


def test_any_full_disk_under_a_command_is_one_line(monkeypatch, capsys):
    import videosalmonn.cli as cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/noisy/1.wav")

    monkeypatch.setattr(cli, "cmd_check_official", full)
    assert main(["check-official", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /data/out/noisy/1.wav: no space left on device") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- the commands


@pytest.mark.slow
def test_infer_manifest_on_a_full_disk_then_rerun(tmp_path, disk, cli):
    manifest = tmp_path / "in.jsonl"
    ids = ["a", "b", "c", "d"]
    manifest.write_text("".join(json.dumps({"id": i, "video": str(CLIP), "prompt": "What?"}) + "\n" for i in ids))
    out = tmp_path / "out" / "answers.jsonl"
    args = ["infer", "--model", "tiny", "--manifest", str(manifest), "--out", str(out), "--batch-size", "1"]
    code, err = cli(*args)
    assert code == 0, err
    reference = {r["id"]: r for r in lines(out)}
    out.unlink()

    disk.free = len(json.dumps(reference["a"])) + 30  # a, then b is cut
    code, err = cli(*args)
    assert code == 2 and one_line(err, "answers.jsonl")
    assert [r["id"] for r in lines(out)] == ["a"]

    disk.free = None
    code, err = cli(*args)
    assert code == 0 and "3 answered, 0 failed, 1 already in" in err, err
    assert {r["id"]: r for r in lines(out)} == reference and len(lines(out)) == 4


@pytest.mark.slow
def test_eval_run_merge_and_report_on_a_full_disk(tmp_path, disk, cli):
    assert DEMO_FLAC.is_file()
    root = librispeech(tmp_path / "data", 3)
    out = tmp_path / "run"
    args = ["eval", "run", "--task", "asr", "--media-root", str(root), "--out", str(out), "--batch-size", "1"]
    shard = out / "samples.rank0.jsonl"

    disk.free = 0
    code, err = cli(*args)
    assert code == 2 and one_line(err, "run.json") and not (out / "run.json").exists()
    disk.free, disk.only = 200, "samples.rank0"  # the first record is cut
    code, err = cli(*args)
    assert code == 2 and one_line(err, "samples.rank0.jsonl")
    assert lines(shard) == [] and not (out / "results.json").exists()
    no_temporaries(tmp_path)

    disk.free = None
    code, err = cli(*args)
    assert code == 0, err
    ids = [r["id"] for r in lines(shard)]
    assert sorted(ids) == sorted(set(ids)) == [f"1272-128104-{i:04d}" for i in range(3)]  # every sample once
    merged, results = (out / "samples.jsonl").read_bytes(), (out / "results.json").read_bytes()

    disk.free, disk.only = 100, ""  # the merge: the old merged files stay whole
    code, err = cli("eval", "merge", str(out))
    assert code == 2 and one_line(err, "/samples.jsonl")
    assert (out / "samples.jsonl").read_bytes() == merged and (out / "results.json").read_bytes() == results
    no_temporaries(tmp_path)

    disk.free = None
    assert cli("eval", "merge", str(out))[0] == 0 and (out / "results.json").read_bytes() == results
    report = tmp_path / "report"
    assert cli("eval", "report", str(out), "--out", str(report))[0] == 0
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    text = len(before["report.md"]) + len(before["summary.json"])
    for free, name in ((0, "report.md"), (text + 10, "chart.png")):  # nothing fits; all but the chart fits
        disk.free = free
        code, err = cli("eval", "report", str(out), "--out", str(report))
        assert code == 2 and one_line(err, name)
        assert {p.name: p.read_bytes() for p in report.iterdir()} == before  # each file old or new, whole
        no_temporaries(tmp_path)
