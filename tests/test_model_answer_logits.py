"""The training forward computes the LM head at the answer positions only: same loss, same gradients."""

import pytest
import torch

from videosalmonn.checkpoint import load_model
from videosalmonn.config import ModelConfig
from videosalmonn.losses import answer_positions
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.types import Coverage, MediaClip


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", device="cpu")


def clip(frames: int, seconds: float, seed: int = 0) -> MediaClip:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(frames, 3, 224, 224, generator=g) if frames else None
    w = torch.randn(int(seconds * 16000), generator=g) * 0.1 if seconds else None
    return MediaClip(f, False, w, Coverage(frames=frames, audio_present=bool(seconds)))


def loss_and_grads(model, batch, answer_logits_only: bool):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same connector dropout masks in both forwards
    out = model(batch, answer_logits_only=answer_logits_only)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_answer_logits_only_gives_the_same_loss_and_gradients(pipe, side, attention):
    cfg = ModelConfig.from_name(
        "tiny", ["llm.lora.dropout=0.0", "loss.diversity_weight=0.01", f"llm.attention={attention}"]
    )
    model = load_model(cfg, "cpu").train()
    p = Pipeline(model, pipe.tokenizer, pipe.instruction_tokenizer)
    batch, _ = p.prepare(  # video of different lengths: the answers start at different columns
        [Request("Describe", answer="A band plays on a stage."), Request("What is heard?", answer="A dog.")],
        [clip(6, 0.0), clip(2, 0.0, seed=1)],
        side=side,
    )
    labels = batch.prompt.labels
    full, full_grads = loss_and_grads(model, batch, answer_logits_only=False)
    kept, kept_grads = loss_and_grads(model, batch, answer_logits_only=True)

    keep = answer_positions(labels)
    assert full.logits.shape[:2] == labels.shape and kept.logits.shape == (keep.sum(), full.logits.shape[-1])
    torch.testing.assert_close(kept.logits, full.logits[keep], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept.ce_loss, full.ce_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(kept.loss, full.loss, rtol=1e-6, atol=0)
    assert kept_grads.keys() == full_grads.keys() and any(".lora_" in n for n in kept_grads)
    # relative to the gradient's norm, plus a floor from the largest gradient: with AVX2 forced the LM head's matmul
    # over fewer rows accumulates in another order, and some gradients are zero in exact arithmetic (a key bias:
    # softmax ignores a shift) and rounding noise in both forms; a wrong gradient differs by O(1)
    scale = max(g.norm() for g in full_grads.values())
    for name, grad in full_grads.items():
        error = (kept_grads[name] - grad).norm()
        assert error <= 1e-4 * grad.norm() + 1e-6 * scale, f"{name}: error {error:.2e} of {grad.norm():.2e}"


def test_training_mode_trims_and_eval_mode_keeps_every_position(pipe):
    model = load_model(ModelConfig.from_name("tiny"), "cpu")
    p = Pipeline(model, pipe.tokenizer, pipe.instruction_tokenizer)
    batch, _ = p.prepare([Request("Describe", answer="A dog.")], [clip(2, 0.0)], side="right")
    labelled = int(answer_positions(batch.prompt.labels).sum())
    with torch.no_grad():
        assert model.eval()(batch).logits.shape[:2] == batch.prompt.labels.shape
        assert model.train()(batch).logits.shape[0] == labelled
        unlabelled, _ = p.prepare([Request("Describe")], [clip(2, 0.0)])
        assert model(unlabelled).logits.shape[:2] == unlabelled.prompt.input_ids.shape  # nothing to trim to
