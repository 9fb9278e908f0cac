"""The training loop: trainable set, schedule, overfitting one batch, resume after SIGKILL reaching the same loss
curve, export (official delta, merged HF model), and the out-of-memory message."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from conftest import DEMO_FLAC, DEMO_IMAGE, ROOT, needs_media

from videosalmonn.checkpoint import load_delta, load_model, load_trainable
from videosalmonn.config import ModelConfig
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.model import VideoSalmonn
from videosalmonn.training.config import OptimConfig, load_train_config
from videosalmonn.training.data import CollatedExamples
from videosalmonn.training.export import export_merged, export_official, model_from_checkpoint
from videosalmonn.training.feedback import read_metrics
from videosalmonn.training.loop import (
    BatchTooLargeError,
    build_model,
    explain_oom,
    learning_rate,
    make_optimizer,
    train,
)
from videosalmonn.training.mixing import Example

# Cheap samples: an image alone fills connector.image_slots (10 here: 30 media tokens); the 5.9-s speech clip fills
# its 12 slots (padded to 20: 60 tokens); only the mixed run (resume test) carries audio.
IMAGES = [
    {"id": "title", "image": str(DEMO_IMAGE), "prompt": "What is the title?", "answer": "Mom's Family Calendar."},
    {"id": "author", "image": str(DEMO_IMAGE), "prompt": "Who wrote it?", "answer": "Sandra Boynton."},
]
SPEECH = [{"id": "speech", "audio": str(DEMO_FLAC), "prompt": "Transcribe the speech.", "answer": "Mister Quilter."}]
CHEAP = ["connector.image_slots=10", "llm.lora.dropout=0.0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def write_config(tmp, rows, **overrides):
    manifest = tmp / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "output_dir": str(tmp / "run"),
        "steps": 10,
        "seed": 0,
        "model": {"preset": "tiny", "overrides": CHEAP + ["loss.diversity_weight=0.01"]},
        "data": {"sources": [{"path": str(manifest)}], "batch_size": 2, "feature_cache": str(tmp / "features")},
        "optim": {"lr": 3.0e-3, "warmup_steps": 2},
        "checkpoint": {"every": 2, "keep": 0},
        "log": {"every": 1, "progress": False},
    }
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun sets it (see conftest.one_thread)
    return subprocess.Popen(
        [sys.executable, "-m", "videosalmonn", "train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_trainable_set_and_optimizer():
    cfg = load_train_config(ROOT / "configs/train/tiny-smoke.yaml")
    accelerator = Accelerator(cpu=True)
    try:
        model, encoder, *_ = build_model(cfg, accelerator)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith("connector.") or ".lora_A." in n or ".lora_B." in n for n in trained)
    assert any(n.startswith("connector.sync.whisper_proj") for n in trained)  # audio pre-projections train
    assert model.encoder is None and not any(p.requires_grad for p in encoder.parameters())
    optimizer = make_optimizer(model, cfg.optim)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(trained)


def test_learning_rate_warmup_then_cosine():
    cfg = OptimConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=4)
    lrs = [learning_rate(s, 14, cfg) for s in range(14)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


@needs_media
@pytest.mark.slow
def test_overfit_one_batch(tmp_path):
    """The whole loop (cache, mixing off, AdamW) drives the answer loss of one fixed batch to ~0."""
    cfg = load_train_config(
        write_config(tmp_path, IMAGES),
        [
            "steps=40",
            "optim.lr=1e-2",
            "optim.warmup_steps=0",
            "optim.min_lr_ratio=1.0",
            "data.mixing.enabled=false",
            "checkpoint.every=40",
            "log.every=40",
            f"model.overrides=[{', '.join(CHEAP)}]",
        ],
    )
    summary = train(cfg)
    assert summary.losses[0] > 5.0 and summary.losses[-1] < 0.1, summary.losses[::5]  # dropout 0.1: a noisy path
    assert (tmp_path / "run/checkpoints/step-000040/trainable.safetensors").is_file()


@needs_media
def test_gradient_accumulation_steps_once_per_step(tmp_path):
    cfg = load_train_config(
        write_config(tmp_path, IMAGES),
        [
            "steps=2",
            "grad_accum=3",
            "data.batch_size=1",
            "optim.warmup_steps=0",
            "checkpoint.every=2",
            "mixed_precision=bf16",
        ],
    )
    summary = train(cfg)
    checkpoint = tmp_path / "run/checkpoints/step-000002"
    assert json.loads((checkpoint / "state.json").read_text())["samples_seen"] == 2 * 3
    adam = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]
    assert {int(s["step"]) for s in adam.values()} == {2}  # two optimizer steps, not six
    assert len(summary.losses) == 2 and all(loss == loss for loss in summary.losses)


@needs_media
@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_loss_curve(tmp_path):
    config = write_config(tmp_path, IMAGES + SPEECH, **{"data.batch_size": 1})  # mixing on (image+audio rules)
    reference = cli("--config", str(config), f"output_dir={tmp_path / 'ref'}")
    killed = cli("--config", str(config), f"output_dir={tmp_path / 'cut'}")
    metrics = tmp_path / "cut" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 6):  # step 5 ran: checkpoint 4 exists
        assert killed.poll() is None and time.monotonic() < deadline, killed.stdout.read()
        time.sleep(0.02)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    stopped_at = json.loads(
        (tmp_path / "cut/checkpoints" / (tmp_path / "cut/checkpoints/latest").read_text() / "state.json").read_text()
    )["step"]
    assert 4 <= stopped_at < 10
    resumed = cli("--config", str(config), f"output_dir={tmp_path / 'cut'}", "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and f"resuming at step {stopped_at}" in out, out
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    ref, cut = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == list(range(1, 11))
    diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(ref, cut))
    assert diff <= 1e-6, [(a["loss"], b["loss"]) for a, b in zip(ref, cut)]
    assert ref[-1]["loss"] < ref[0]["loss"]
    final = [json.loads((tmp_path / r / "checkpoints/step-000010/state.json").read_text()) for r in ("ref", "cut")]
    assert final[0]["trainable_sha256"] == final[1]["trainable_sha256"]  # identical weights


@needs_media
def test_export_official_delta_and_merged_model(tmp_path):
    cfg = load_train_config(write_config(tmp_path, IMAGES), ["steps=3", "checkpoint.every=3"])
    train(cfg)
    checkpoint = tmp_path / "run/checkpoints/step-000003"
    model = model_from_checkpoint(checkpoint)
    delta = export_official(model, tmp_path / "pytorch_model.pt")
    other = load_model(ModelConfig.from_name("tiny", CHEAP + ["loss.diversity_weight=0.01"]), "cpu")
    load_delta(other, delta)
    for (name, a), b in zip(model.named_parameters(), other.parameters()):
        assert torch.equal(a, b), name

    merged_dir = export_merged(model, load_tokenizer("tiny"), tmp_path / "merged")
    merged_cfg = ModelConfig.from_name(str(merged_dir / "model.yaml"))
    assert merged_cfg.llm.lora is None and merged_cfg.weights.llm == str(merged_dir / "llm")
    merged = VideoSalmonn.from_config(
        merged_cfg.replace("weights.llm=null"), llm=LanguageModel.build(merged_cfg.llm, merged_cfg.weights.llm)
    ).eval()
    load_trainable(merged, merged_cfg.weights.delta)
    embeds = torch.randn(1, 7, model.llm.width)
    mask = torch.ones(1, 7, dtype=torch.long)
    torch.testing.assert_close(merged.llm(embeds, mask), model.eval().llm(embeds, mask), atol=1e-4, rtol=1e-4)


def test_out_of_memory_names_the_samples():
    example = Example(0, "clip-7", "train.jsonl:7", "paired", (), None, False, None, (1.0, 1.0))
    batch = CollatedExamples(None, [example], [4123])
    with pytest.raises(BatchTooLargeError, match=r"step 3: .*clip-7 \(train.jsonl:7, rule paired, 4123 tokens\)"):
        with explain_oom(batch, step=2):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(ValueError), explain_oom(batch, step=2):
        raise ValueError("unrelated")
