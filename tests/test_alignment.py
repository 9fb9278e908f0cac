"""The alignment stage of the mini recipe (issue 15): CTC of the media tokens against the answer's tokens, read
through the LLM's input embeddings (`losses.media_ctc_loss`), the samples it applies to (`data.align_tasks`), its
vocabulary, and a training run with the LLM skipped (`loss.lm_weight=0`)."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import DEMO_FLAC, DEMO_IMAGE

from videosalmonn.checkpoint import load_model
from videosalmonn.config import ModelConfig
from videosalmonn.errors import ConfigError
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.losses import media_ctc_loss
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.prompting.conversation import IGNORE
from videosalmonn.prompting.instruction import instruction_tokenizer_for
from videosalmonn.training.config import MixingConfig, SourceConfig, load_train_config
from videosalmonn.training.data import TrainCollator, TrainData, alignment_vocab, read_items
from videosalmonn.training.feedback import read_metrics
from videosalmonn.training.loop import train
from videosalmonn.training.mixing import mix
from videosalmonn.types import Coverage, MediaClip

pytestmark = pytest.mark.usefixtures("one_thread")

ROWS = [
    {"id": "a", "task": "asr", "audio": str(DEMO_FLAC), "prompt": "Transcribe.", "answer": "mister quilter"},
    {"id": "o", "task": "ocr", "image": str(DEMO_IMAGE), "prompt": "What word?", "answer": "calendar"},
    {"id": "q", "task": "vqa", "image": str(DEMO_IMAGE), "prompt": "Who wrote it?", "answer": "Sandra Boynton."},
]


def test_ctc_loss_is_low_for_tokens_that_spell_the_target_and_ignores_rows_without_one():
    torch.manual_seed(0)
    table = torch.randn(20, 16)  # row 0: the blank
    target = torch.tensor([[3, 7, 7, 5]])  # a repeat needs a blank between its two tokens
    spelled = table[[3, 0, 7, 0, 7, 5, 0]][None] * 2.5  # (1, 7, 16): the norm is free, the direction counts
    lengths = torch.tensor([7])
    good = media_ctc_loss(spelled, lengths, table, target, blank=0, tau=0.02)
    shuffled = media_ctc_loss(spelled[:, [5, 1, 0, 3, 2, 6, 4]], lengths, table, target, blank=0, tau=0.02)
    assert good.item() < 0.01 < 1.0 < shuffled.item()
    # a second sample without targets (a row of IGNORE) changes nothing; a batch with none has no loss
    noise = torch.randn(1, 7, 16)
    both = media_ctc_loss(
        torch.cat([spelled, noise]),
        torch.tensor([7, 5]),
        table,
        torch.cat([target, torch.full((1, 4), IGNORE)]),
        blank=0,
        tau=0.02,
    )
    torch.testing.assert_close(both, good)
    assert media_ctc_loss(noise, torch.tensor([7]), table, torch.full((1, 4), IGNORE), blank=0, tau=0.02) is None
    # it is torch's CTC over softmax(cos / tau), per target token
    logp = (F.normalize(spelled, dim=-1) @ F.normalize(table, dim=-1).T / 0.02).log_softmax(-1)
    expected = F.ctc_loss(logp.transpose(0, 1), target[0], lengths, torch.tensor([4]), blank=0)
    torch.testing.assert_close(good, expected)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("align")
    manifest = tmp / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = load_train_config(write_config(tmp, manifest), [])
    model_cfg = cfg.model_config()
    tok = load_tokenizer(model_cfg.weights.tokenizer or model_cfg.weights.llm)
    items = read_items(cfg.data.sources)
    return cfg, model_cfg, tok, items


def write_config(tmp, manifest, **top):
    cfg = {
        "output_dir": str(tmp / "run"),
        "steps": 4,
        "seed": 0,
        "model": {
            "preset": "tiny",
            "overrides": ["connector.image_slots=10", "loss.lm_weight=0", "loss.alignment_weight=1"],
        },
        "data": {
            "sources": [{"path": str(manifest)}],
            "batch_size": 3,
            "feature_cache": str(tmp / "features"),
            "align_tasks": ["asr", "ocr"],
            "mixing": {"enabled": False},
        },
        "optim": {"lr": 3.0e-3, "warmup_steps": 1},
        "checkpoint": {"every": 2, "keep": 0},
        "log": {"every": 1, "progress": False},
        **top,
    }
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_aligned_samples_and_their_targets(data):
    cfg, model_cfg, tok, items = data
    assert [i.task for i in items] == ["asr", "ocr", "vqa"]
    vocab = alignment_vocab(items, frozenset(cfg.data.align_tasks), tok, model_cfg.loss.alignment_blank)
    answers = {t for text in ("mister quilter", "calendar") for t in tok.encode(text)}
    assert vocab[0] == model_cfg.loss.alignment_blank and vocab[1:] == sorted(answers - {vocab[0]})
    train_data = TrainData(items, cfg.data, 0, model_cfg, None, {}, None)
    examples = [mix(items, train_data.pools, i, 0, 0, cfg.data.mixing, {}) for i in range(3)]
    assert [train_data.alignment_text(e) for e in examples] == ["mister quilter", "calendar", None]
    collate = TrainCollator(model_cfg, tok, None, None, vocab)
    targets = collate.alignment_targets(["mister quilter", None, "calendar"])
    assert (targets[1] == IGNORE).all()
    for row, text in ((0, "mister quilter"), (2, "calendar")):
        ids = [vocab[k] for k in targets[row][targets[row] != IGNORE].tolist()]
        assert ids == tok.encode(text)


def test_a_mixing_rule_that_replaces_the_answer_leaves_the_sample_unaligned(data):
    cfg, model_cfg, tok, items = data
    mixing = MixingConfig(image_single_task_probability=0.0)  # an image with a partner audio: a combined prompt
    train_data = TrainData(items, cfg.data, 0, model_cfg, None, {}, None)
    combined = mix(items, train_data.pools, 1, 0, 0, mixing, {})
    assert combined.turns[-1] != items[1].turns[-1]
    assert train_data.alignment_text(combined) is None


def test_lm_weight_zero_skips_the_llm_and_trains_the_connector_only():
    cfg = ModelConfig.from_name("tiny", ["loss.lm_weight=0", "loss.alignment_weight=1"])
    model = load_model(cfg, "cpu").train()
    pipe = Pipeline(model, load_tokenizer(cfg.weights.tokenizer or cfg.weights.llm), instruction_tokenizer_for(cfg))
    g = torch.Generator().manual_seed(0)
    clips = [
        MediaClip(None, False, torch.randn(32000, generator=g) * 0.1, Coverage(frames=0, audio_present=True))
        for _ in range(2)
    ]
    batch, _ = pipe.prepare([Request("Transcribe", answer="a b"), Request("Transcribe", answer="c")], clips, "right")
    batch.prompt.alignment = torch.tensor([[1, 2, 1], [IGNORE] * 3])  # the second sample has no alignment target
    batch.prompt.alignment_vocab = torch.tensor([0, 5, 9])
    called = []
    model.llm.register_forward_hook(lambda *a: called.append(1))
    out = model(batch)
    assert out.logits is None and out.ce_loss is None and out.diversity_loss is None and not called
    assert out.alignment_loss is not None and out.loss.item() == out.alignment_loss.item()
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert any(g is not None and g.abs().sum() > 0 for name, g in grads.items() if name.startswith("connector."))
    assert all(g is None for name, g in grads.items() if name.startswith("llm."))


def test_an_alignment_run_trains_without_the_llm_and_records_the_loss(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    summary = train(load_train_config(write_config(tmp_path, manifest)))
    assert summary.steps == 4
    rows = read_metrics(tmp_path / "run")
    assert all(r["ce_loss"] is None and r["alignment_loss"] > 0 for r in rows)
    assert rows[-1]["alignment_loss"] < rows[0]["alignment_loss"]  # the same 3 samples every step: it learns
    assert all(r["loss"] == pytest.approx(r["alignment_loss"]) for r in rows)


def test_alignment_without_any_aligned_task_is_a_config_error(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = write_config(tmp_path, manifest)
    with pytest.raises(ConfigError, match=r"no training sample has a task in data.align_tasks \['music'\]"):
        train(load_train_config(config, ["data.align_tasks=[music]"]))


def test_the_loss_weights_are_checked():
    with pytest.raises(ConfigError, match="lm_weight or loss.alignment_weight"):
        ModelConfig.from_name("tiny", ["loss.lm_weight=0"])
    with pytest.raises(ConfigError, match="not a token id"):
        ModelConfig.from_name("tiny", ["loss.alignment_blank=99999999"])


def test_a_source_keeps_only_its_tasks_of_its_first_limit_samples(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert [i.task for i in read_items((SourceConfig(str(manifest), tasks=("vqa", "ocr")),))] == ["ocr", "vqa"]
    assert [i.id for i in read_items((SourceConfig(str(manifest), tasks=("vqa", "ocr"), limit=2),))] == ["m.jsonl#o"]
