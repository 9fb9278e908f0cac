"""Held-out validation during training (`training/validation.py`): the greedy CTC reading of the media tokens, the
rows a run writes to validation.jsonl, their truncation on resume, and the config errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.utils import DistributedType
from conftest import DEMO_FLAC, DEMO_IMAGE, ROOT

from videosalmonn.errors import ConfigError, InputError
from videosalmonn.losses import greedy_ctc
from videosalmonn.training.config import SourceConfig, ValidationConfig, load_train_config
from videosalmonn.training.feedback import read_metrics
from videosalmonn.training.loop import train
from videosalmonn.training.validation import ROWS, line, read_rows, refuse_sharded, word_errors

pytestmark = pytest.mark.usefixtures("one_thread")
TORCHRUN = Path(sys.executable).with_name("torchrun")

TRAIN = [
    {"id": "a", "task": "asr", "audio": str(DEMO_FLAC), "prompt": "Transcribe.", "answer": "mister quilter"},
    {"id": "o", "task": "ocr", "image": str(DEMO_IMAGE), "prompt": "What word?", "answer": "calendar"},
    {"id": "q", "task": "vqa", "image": str(DEMO_IMAGE), "prompt": "Who wrote it?", "answer": "Sandra Boynton."},
]
# held out: answers with words no training answer has (outside the alignment vocabulary), one untagged sample
HELD_OUT = [
    {"id": "a2", "task": "asr", "audio": str(DEMO_FLAC), "prompt": "Transcribe.", "answer": "the apostle of classes"},
    {"id": "o2", "task": "ocr", "image": str(DEMO_IMAGE), "prompt": "What word?", "answer": "family zebra"},
    {"id": "q2", "task": "vqa", "image": str(DEMO_IMAGE), "prompt": "What is it?", "answer": "A calendar."},
    {"id": "u", "image": str(DEMO_IMAGE), "prompt": "Who wrote it?", "answer": "Boynton."},
]


def write_config(tmp, **top):
    for name, rows in (("train.jsonl", TRAIN), ("held-out.jsonl", HELD_OUT)):
        (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "output_dir": str(tmp / "run"),
        "steps": 4,
        "seed": 0,
        "model": {"preset": "tiny", "overrides": ["connector.image_slots=10", "loss.alignment_weight=1"]},
        "data": {
            "sources": [{"path": str(tmp / "train.jsonl")}],
            "batch_size": 3,
            "feature_cache": str(tmp / "features"),
            "align_tasks": ["asr", "ocr"],
            "mixing": {"enabled": False},
        },
        "optim": {"lr": 3.0e-3, "warmup_steps": 1},
        "checkpoint": {"every": 2, "keep": 0},
        "log": {"every": 1, "progress": False},
        "validation": {"source": {"path": str(tmp / "held-out.jsonl")}, "every": 2, "batch_size": 3},
        **top,
    }
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_greedy_ctc_spells_the_rows_the_tokens_equal():
    torch.manual_seed(0)
    table = torch.randn(12, 16)  # (C, E), row 0: the blank
    rows = [0, 3, 3, 3, 0, 7, 7, 0, 0, 7, 5, 0, 3]
    tokens = table[rows] * torch.rand(len(rows), 1).add(0.5)  # (N, E): the norm is free, only the direction counts
    assert greedy_ctc(tokens, table) == [3, 7, 7, 5, 3]  # repeats collapse, a blank separates two 7s, blanks dropped
    assert greedy_ctc(table[[0, 0]], table) == []
    noisy = tokens + 0.01 * torch.randn_like(tokens)
    assert greedy_ctc(noisy, table) == [3, 7, 7, 5, 3]
    assert greedy_ctc(tokens, table, blank=7) == [0, 3, 0, 0, 5, 0, 3]  # another blank row: the 0s are read


def test_word_errors_is_the_word_edit_distance():
    assert word_errors("the cat sat", "the cat sat") == (0, 3)
    assert word_errors("The cat, sat.", "the cat sat") == (0, 3)  # case and punctuation do not count
    assert word_errors("a b c", "a x c d") == (2, 3)  # one substitution, one insertion
    assert word_errors("a b c", "") == (3, 3)
    assert word_errors("", "a") == (1, 0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-step run validating every 2 steps (the tests below copy it before changing it)."""
    tmp = tmp_path_factory.mktemp("validation")
    config = write_config(tmp)
    train(load_train_config(config))
    return tmp, config


def test_a_run_writes_one_row_per_validation(run):
    tmp, _ = run
    rows = read_rows(tmp / "run")
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert r["n"] == {"asr": 1, "ocr": 1, "vqa": 1, "untagged": 1}
        assert 0 < r["ce_loss"] < 100 and r["seconds"] > 0
        assert set(r["ctc_wer"]) == {"asr", "ocr"} and all(0 <= w < 100 for w in r["ctc_wer"].values())
        assert [(t["id"], t["reference"]) for t in r["transcripts"]] == [
            ("held-out.jsonl#a2", "the apostle of classes"),
            ("held-out.jsonl#o2", "family zebra"),
        ]
        for t in r["transcripts"]:  # each task has one sample: its WER is that sample's
            errors, words = word_errors(t["reference"], t["transcript"])
            assert r["ctc_wer"][t["task"]] == pytest.approx(errors / words)
    assert line(rows[0]).startswith(f"validation step 2 | ce {rows[0]['ce_loss']:.4f} | ctc WER asr ")


def test_validation_leaves_training_as_it_was(run, tmp_path):
    tmp, config = run
    train(load_train_config(config, [f"output_dir={tmp_path / 'plain'}", "validation.source=null"]))
    with_validation, plain = read_metrics(tmp / "run"), read_metrics(tmp_path / "plain")
    assert len(plain) == 4 and [r["loss"] for r in with_validation] == [r["loss"] for r in plain]  # LoRA dropout on
    assert not (tmp_path / "plain" / ROWS).exists()


def test_resume_drops_the_rows_after_the_checkpoint(run, tmp_path):
    tmp, config = run
    shutil.copytree(tmp / "run", tmp_path / "run")
    before = read_rows(tmp_path / "run")
    # continue from step 2 with a run of 3 steps: row 4 belongs to a run the checkpoints no longer continue
    cfg = load_train_config(config, ["steps=3", f"output_dir={tmp_path / 'run'}"])
    assert train(cfg, resume=tmp_path / "run/checkpoints/step-000002").steps == 3
    rows = read_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [2, 3] and rows[0] == before[0]


def test_validation_config_errors(tmp_path):
    config = write_config(tmp_path)
    with pytest.raises(ConfigError, match=r"validation.every must be >= 1"):
        load_train_config(config, ["validation.every=0"])
    with pytest.raises(ConfigError, match=r"validation.batch_size must be >= 1"):
        load_train_config(config, ["validation.batch_size=0"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) validation.evry"):
        _load_with(tmp_path, {"evry": 3})
    with pytest.raises(ConfigError, match=r"repeat must be 1"):
        load_train_config(config, ["validation.source.repeat=2"])
    assert ValidationConfig().source is None  # off by default


def _load_with(tmp, validation: dict):
    path = tmp / "bad.yaml"
    data = yaml.safe_load(write_config(tmp).read_text())
    data["validation"].update(validation)
    path.write_text(yaml.safe_dump(data))
    return load_train_config(path)


def test_nothing_to_measure_is_a_config_error(tmp_path):
    config = write_config(tmp_path)
    overrides = ["model.overrides=[connector.image_slots=10, loss.lm_weight=0, loss.alignment_weight=1]"]
    with pytest.raises(ConfigError, match=r"loss.lm_weight is 0 and no held-out sample has a task in data.align"):
        train(load_train_config(config, [*overrides, "validation.source.tasks=[vqa]"]))


def test_an_empty_held_out_set_is_an_input_error(tmp_path):
    config = write_config(tmp_path)
    with pytest.raises(InputError, match=r"held-out.jsonl: no held-out samples \(limit, tasks\)$"):
        train(load_train_config(config, ["validation.source.tasks=[music]"]))


def test_sharded_training_refuses_validation():
    on = ValidationConfig(source=SourceConfig("held-out.jsonl"))
    for kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(ConfigError, match=r"^validation.source: .* cannot \(it shards the model\)"):
            refuse_sharded(on, kind)
    refuse_sharded(on, DistributedType.MULTI_CPU)  # DDP: the main process runs the unwrapped model
    refuse_sharded(ValidationConfig(), DistributedType.FSDP)  # off: nothing to refuse


@pytest.mark.slow
def test_under_ddp_the_main_process_validates_alone(tmp_path):
    config = write_config(tmp_path)
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
    assert out.stdout.count("validation step 2 |") == 1 and out.stdout.count("validation step 4 |") == 1
    assert [r["step"] for r in read_rows(tmp_path / "run")] == [2, 4]
    state = json.loads((tmp_path / "run/checkpoints/step-000004/state.json").read_text())
    assert state["trainable_sha256"][0] == state["trainable_sha256"][1]  # both processes still train the same weights
