"""Checkpoints that prove themselves (issue 11, part 3): recorded hashes verified on resume, fallback to the newest
intact checkpoint, a stop (or a bounded skip) on a non-finite loss, one-line errors for damaged files and a full
disk, `--resume` of a finished run, and a `latest` marker that cannot leave the run directory."""

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DEMO_IMAGE, ROOT, needs_media

from videosalmonn.errors import CheckpointError, VideoSalmonnError
from videosalmonn.model import VideoSalmonn
from videosalmonn.training.config import load_train_config
from videosalmonn.training.loop import train

IMAGES = [
    {"id": "title", "image": str(DEMO_IMAGE), "prompt": "What is the title?", "answer": "Mom's Family Calendar."},
    {"id": "author", "image": str(DEMO_IMAGE), "prompt": "Who wrote it?", "answer": "Sandra Boynton."},
]
CHEAP = ["connector.image_slots=10", "llm.lora.dropout=0.0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def write_config(tmp, output_dir, features):
    manifest = tmp / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in IMAGES))
    cfg = {
        "output_dir": str(output_dir),
        "steps": 4,
        "seed": 0,
        "model": {"preset": "tiny", "overrides": CHEAP},
        "data": {"sources": [{"path": str(manifest)}], "batch_size": 2, "feature_cache": str(features)},
        "optim": {"lr": 3.0e-3, "warmup_steps": 1},
        "checkpoint": {"every": 2, "keep": 0},
        "log": {"every": 1, "progress": False},
    }
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step run with checkpoints step-000002 and step-000004 (copied by each test)."""
    tmp = tmp_path_factory.mktemp("base")
    config = write_config(tmp, tmp / "run", tmp / "features")
    train(load_train_config(config))
    return tmp


@pytest.fixture
def run(finished, tmp_path):
    """(config path, checkpoints dir) of a private copy of the finished run."""
    shutil.copytree(finished / "run", tmp_path / "run")
    return write_config(tmp_path, tmp_path / "run", finished / "features"), tmp_path / "run/checkpoints"


def sha(checkpoint):
    return json.loads((checkpoint / "state.json").read_text())["trainable_sha256"]


@pytest.fixture
def nan_at_call(monkeypatch):
    """nan_at_call(n): the n-th forward pass (1-based) returns a NaN loss."""

    def install(n):
        forward, calls = VideoSalmonn.forward, []

        def poisoned(self, batch):
            out = forward(self, batch)
            calls.append(1)
            if len(calls) == n:
                nan = torch.tensor(float("nan"))
                out = dataclasses.replace(out, loss=out.loss * nan, ce_loss=out.ce_loss * nan)
            return out

        monkeypatch.setattr(VideoSalmonn, "forward", poisoned)

    return install


# ---------------------------------------------------------------- row 5: damaged weights, non-finite loss


@needs_media
def test_damaged_weights_are_detected_and_the_previous_checkpoint_is_used(run, capsys):
    config, checkpoints = run
    weights = checkpoints / "step-000004/trainable.safetensors"
    with open(weights, "r+b") as f:  # 8 bytes of the last tensor's data -> NaN
        f.seek(-8, os.SEEK_END)
        f.write(b"\xff" * 8)
    summary = train(load_train_config(config, ["steps=6"]), resume=True)
    out = capsys.readouterr().out
    assert "step-000004" in out and "trainable.safetensors" in out and "sha256" in out, out
    assert "resuming from step-000002" in out and "resuming at step 2" in out, out
    assert len(summary.losses) == 4 and all(torch.isfinite(torch.tensor(summary.losses))), summary.losses


@needs_media
def test_an_older_checkpoint_without_file_hashes_still_has_its_weights_checked(run):
    config, checkpoints = run
    state = checkpoints / "step-000004/state.json"
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items() if k != "files_sha256"}))
    with open(checkpoints / "step-000004/trainable.safetensors", "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\xff" * 8)
    with pytest.raises(CheckpointError, match=r"trainable\.safetensors: the weights' sha256 differs"):
        train(load_train_config(config, ["steps=6"]), resume=True)


@needs_media
def test_a_non_finite_loss_stops_the_run_before_it_is_checkpointed(tmp_path, finished, nan_at_call):
    config = write_config(tmp_path, tmp_path / "run", finished / "features")
    nan_at_call(2)
    with pytest.raises(VideoSalmonnError, match=r"step 2: .*nan.*optim\.max_nonfinite_steps"):
        train(load_train_config(config, ["steps=3", "checkpoint.every=1"]))
    checkpoints = tmp_path / "run/checkpoints"
    assert (checkpoints / "step-000001").is_dir() and not (checkpoints / "step-000002").exists()


@needs_media
def test_a_skipped_non_finite_step_leaves_the_weights_unchanged(tmp_path, finished, nan_at_call, capsys):
    config = write_config(tmp_path, tmp_path / "run", finished / "features")
    nan_at_call(2)
    summary = train(load_train_config(config, ["steps=3", "checkpoint.every=1", "optim.max_nonfinite_steps=1"]))
    checkpoints = tmp_path / "run/checkpoints"
    assert sha(checkpoints / "step-000001") == sha(checkpoints / "step-000002")  # the skipped step
    assert sha(checkpoints / "step-000003") != sha(checkpoints / "step-000002")
    assert summary.losses[1] != summary.losses[1] and summary.losses[2] == summary.losses[2]
    assert "step 2: non-finite loss" in capsys.readouterr().out


# ---------------------------------------------------------------- row 8: truncated files


@needs_media
@pytest.mark.parametrize("name", ["state.json", "optimizer.pt", "rng-0.pt"])
def test_a_truncated_file_falls_back_to_the_previous_checkpoint(run, name, capsys):
    config, checkpoints = run
    damaged = checkpoints / "step-000004" / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    summary = train(load_train_config(config, ["steps=6"]), resume=True)
    out = capsys.readouterr().out
    assert f"step-000004/{name}" in out and "resuming at step 2" in out, out
    assert len(summary.losses) == 4


@needs_media
def test_no_intact_checkpoint_is_a_one_line_error(run):
    config, checkpoints = run
    for step in ("step-000002", "step-000004"):
        (checkpoints / step / "state.json").write_text('{"step": 4, "samp')
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*step-000004.*state\.json.*step-000002") as e:
        train(load_train_config(config, ["steps=6"]), resume=True)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- row 16: resuming a finished run


@needs_media
def test_resuming_a_finished_run_says_so(run, capsys):
    config, checkpoints = run
    summary = train(load_train_config(config), resume=True)
    assert summary.steps == 4 and summary.losses == [] and summary.checkpoint == checkpoints / "step-000004"
    assert "complete" in capsys.readouterr().out


@needs_media
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["python", "torchrun"])
def test_resuming_a_finished_run_exits_0_on_the_command_line(run, launcher):
    config, _ = run
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*([sys.executable] if launcher == "python" else torchrun), "-m", "videosalmonn"]
        + ["train", "--config", str(config), "--resume"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "complete" in done.stdout, done.stdout + done.stderr
    assert done.stdout.count("complete") == 1  # said once, by the first process


# ---------------------------------------------------------------- row 12: a full disk


@needs_media
def test_a_full_disk_while_saving_is_a_one_line_error(run, monkeypatch):
    config, checkpoints = run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(VideoSalmonnError, match=r"step-000006.*no space left") as e:
        train(load_train_config(config, ["steps=6"]), resume=True)
    assert "\n" not in str(e.value)
    assert (checkpoints / "latest").read_text() == "step-000004" and not list(checkpoints.glob(".step-*"))


# ---------------------------------------------------------------- the latest marker


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "step-000002/../../x", ""])
def test_the_latest_marker_cannot_leave_the_run_directory(tmp_path, name):
    from videosalmonn.training.checkpointing import latest_checkpoint

    checkpoints = tmp_path / "run/checkpoints"
    (checkpoints / "step-000002").mkdir(parents=True)
    (tmp_path / "run/x").mkdir()
    (checkpoints / "latest").write_text(name)
    with pytest.raises(CheckpointError, match=r"latest.*step-XXXXXX"):
        latest_checkpoint(tmp_path / "run")


def test_a_full_disk_anywhere_in_the_run_is_one_line(tmp_path):
    from videosalmonn.training.faults import DiskFullError, disk_full_is_an_error

    with pytest.raises(DiskFullError, match=r"metrics\.csv: no space left on device, \d+ MiB free; .*--resume"):
        with disk_full_is_an_error(tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.csv"))
    with pytest.raises(PermissionError), disk_full_is_an_error(tmp_path):  # other errors are not disguised
        raise PermissionError(errno.EACCES, "Permission denied")
