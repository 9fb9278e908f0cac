"""Two processes with DDP on gloo (CPU), launched like a user would with torchrun: the feature cache is built by
both, every sample position goes to exactly one process, and both end with identical trained weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_FLAC, DEMO_IMAGE, ROOT, needs_media

from videosalmonn.training.checkpointing import trainable_sha256
from videosalmonn.training.data import RankMicroBatches
from videosalmonn.training.export import model_from_checkpoint
from videosalmonn.training.feedback import read_metrics

TORCHRUN = Path(sys.executable).with_name("torchrun")


class Positions:
    """A stand-in training set whose example at position p is p."""

    def example(self, position):
        return position

    def load(self, example):
        return example


def test_each_position_goes_to_one_process():
    seen = []
    for rank in range(3):
        part = RankMicroBatches(Positions(), base=10, batch_size=2, rank=rank, world=3, count=4)
        seen += [p for k in range(len(part)) for p in part[k]]
        assert part[1] == [10 + 6 + 2 * rank, 10 + 6 + 2 * rank + 1]
    assert sorted(seen) == list(range(10, 10 + 4 * 6))


@needs_media
@pytest.mark.slow
def test_two_process_gloo_ddp_trains_identical_weights(tmp_path):
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"id": "title", "image": str(DEMO_IMAGE), "prompt": "What is the title?", "answer": "Mom's Family Calendar."},
        {"id": "author", "image": str(DEMO_IMAGE), "prompt": "Who wrote it?", "answer": "Sandra Boynton."},
        {"id": "speech", "audio": str(DEMO_FLAC), "prompt": "Transcribe.", "answer": "Mister Quilter."},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "run"),
                "steps": 4,
                "model": {"preset": "tiny", "overrides": ["connector.image_slots=10"]},
                "data": {
                    "sources": [{"path": str(manifest)}],
                    "batch_size": 1,
                    "feature_cache": str(tmp_path / "features"),
                },
                "optim": {"lr": 3.0e-3},
                "checkpoint": {"every": 4},
                "log": {"every": 1, "progress": False},
            }
        )
    )
    out = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "videosalmonn",
            "train",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "on 2 process(es) (MULTI_CPU" in out.stdout, out.stdout
    state = json.loads((tmp_path / "run/checkpoints/step-000004/state.json").read_text())
    assert state["world_size"] == 2 and state["samples_seen"] == 4 * 2
    rank0, rank1 = state["trainable_sha256"]
    assert rank0 == rank1  # every process holds the same trained weights
    saved = model_from_checkpoint(tmp_path / "run/checkpoints/step-000004")
    assert trainable_sha256(saved) == rank0  # ... which are the weights in the checkpoint
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert len(losses) == 4 and all(loss == loss for loss in losses)
