"""The tiny model end to end: trainable set, losses, splice check, overfitting one batch, batched generation."""

import dataclasses

import pytest
import torch

from videosalmonn.checkpoint import load_model
from videosalmonn.config import GenerationConfig, ModelConfig
from videosalmonn.losses import diversity_loss
from videosalmonn.model import VideoSalmonn, splice, trainable_names
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.types import Coverage, MediaClip


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", device="cpu")


def clip(frames: int, seconds: float, image: bool = False, seed: int = 0) -> MediaClip:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(frames, 3, 224, 224, generator=g) if frames else None
    w = torch.randn(int(seconds * 16000), generator=g) * 0.1 if seconds else None
    return MediaClip(f, image, w, Coverage(frames=frames, audio_present=bool(seconds)))


def test_trainable_set_is_connector_and_lora(pipe):
    names = trainable_names(pipe.model)
    assert names and all(n.startswith("connector.") or ".lora_" in n for n in names)
    assert any(".lora_A." in n for n in names) and any(n.startswith("connector.sync.whisper_proj") for n in names)
    frozen = [n for n, p in pipe.model.named_parameters() if not p.requires_grad]
    assert all(n.startswith(("encoder.", "llm.")) and ".lora_" not in n for n in frozen)
    assert any(n.startswith("encoder.vision") for n in frozen) and any("embed_tokens" in n for n in frozen)


def test_forward_loss_and_gradients_reach_only_trainable(pipe):
    model = ModelConfig.from_name("tiny", ["loss.diversity_weight=0.01"])
    m = load_model(model, "cpu").train()
    p = Pipeline(m, pipe.tokenizer, pipe.instruction_tokenizer)
    batch, _ = p.prepare(
        [Request("Describe", answer="A band plays."), Request("Describe", answer="A dog.")],
        [clip(6, 2.0), clip(0, 4.0)],
        side="right",
    )
    out = m(batch)
    assert torch.isfinite(out.loss) and out.diversity_loss is not None
    torch.testing.assert_close(out.loss, out.ce_loss + 0.01 * out.diversity_loss)
    out.loss.backward()
    for name, param in m.named_parameters():
        assert (param.grad is not None) == param.requires_grad, name
    assert m.connector.queries[1].grad.abs().sum() > 0


def test_splice_count_check(pipe):
    batch, counts = pipe.prepare([Request("Describe")], [clip(4, 0)])
    media = pipe.model.encode(batch)
    media.lengths = media.lengths - 1
    with pytest.raises(ValueError, match="do not match media tokens"):
        splice(pipe.model.llm.embed(batch.prompt.input_ids), media, batch.prompt.media_mask)


def test_diversity_loss_values():
    same = torch.ones(2, 4, 8)
    assert diversity_loss(same).item() == pytest.approx(1.0, abs=1e-6)
    orthogonal = torch.eye(4)[None]
    assert diversity_loss(orthogonal).item() == pytest.approx(0.0, abs=1e-7)
    q = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # cos = 1/sqrt(2), both ordered pairs
    assert diversity_loss(q).item() == pytest.approx(2**-0.5, abs=1e-6)


@pytest.mark.slow
def test_overfit_one_batch(pipe):
    """Connector + LoRA alone can drive the answer loss of one batch to ~0 (dropout off, encoders cached)."""
    torch.manual_seed(0)
    m = load_model(ModelConfig.from_name("tiny", ["llm.lora.dropout=0.0"]), "cpu").eval()
    p = Pipeline(m, pipe.tokenizer, pipe.instruction_tokenizer)
    batch, _ = p.prepare(
        [
            Request("Describe the video", answer="A man sings on the stage."),
            Request("What do you hear?", answer="Music and applause."),
        ],
        [clip(4, 2.0, seed=1), clip(0, 3.0, seed=2)],
        side="right",
    )
    batch = dataclasses.replace(batch, features=m.encoder(batch.media))
    opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-2)
    losses = []
    for _ in range(50):
        loss = m(batch).loss
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] > 5.0 and losses[-1] < 0.05, losses[::10]


@pytest.mark.slow
def test_batched_generation_equals_one_by_one(pipe):
    requests = [Request("Describe the video"), Request("What is in the image?"), Request("Transcribe.")]
    clips = [clip(9, 5.0, seed=3), clip(1, 0, image=True, seed=4), clip(0, 2.5, seed=5)]
    for gen in (
        GenerationConfig(max_new_tokens=6, num_beams=1, repetition_penalty=1.0),
        GenerationConfig(max_new_tokens=6, num_beams=3, repetition_penalty=1.5),
    ):
        together = pipe.answer_batch(requests, gen, clips)
        alone = [pipe.answer_batch([r], gen, [c])[0] for r, c in zip(requests, clips)]
        assert [a.token_ids for a in together] == [a.token_ids for a in alone]
        assert [a.media_tokens for a in together] == [30, 180, 30]  # 5 s / an image (60 slots) / 2.5 s


def test_sampling_is_seeded(pipe):
    requests, clips = [Request("Describe the video")], [clip(3, 1.0, seed=6)]
    gen = GenerationConfig(
        max_new_tokens=8, num_beams=1, do_sample=True, temperature=1.5, top_p=0.95, repetition_penalty=1.0, seed=11
    )
    first = pipe.answer_batch(requests, gen, clips)[0].token_ids
    assert pipe.answer_batch(requests, gen, clips)[0].token_ids == first
    others = {
        tuple(pipe.answer_batch(requests, dataclasses.replace(gen, seed=s), clips)[0].token_ids) for s in range(12, 16)
    }
    assert len(others | {tuple(first)}) > 1


def test_instruction_reaches_instructblip_only_when_configured(pipe):
    """encoders.image_qformer.use_instruction: the question changes the visual tokens, or (false) does not."""
    frames = [clip(2, 0, seed=8), clip(2, 0, seed=8)]
    requests = [Request("Describe the video"), Request("Who is singing on the stage?")]
    for use, differ in ((True, True), (False, False)):
        model = load_model(ModelConfig.from_name("tiny", [f"encoders.image_qformer.use_instruction={use}"]), "cpu")
        p = Pipeline(model, pipe.tokenizer, pipe.instruction_tokenizer)
        batch, _ = p.prepare(requests, frames)
        with torch.no_grad():
            visual = model.encoder(batch.media).visual
        gap = (visual[0] - visual[1]).abs().max().item()  # rows of one batch may differ in the last bits (AVX2)
        assert gap > 1e-3 if differ else gap < 1e-5, gap


def test_split_encoder_hands_the_towers_over(pipe):
    """Training runs the frozen encoder apart: the model then takes encoder features only."""
    model = VideoSalmonn.from_config(ModelConfig.from_name("tiny")).eval()
    batch, _ = Pipeline(model, pipe.tokenizer, pipe.instruction_tokenizer).prepare(
        [Request("Describe")], [clip(2, 1.0)]
    )
    with torch.no_grad():
        expected = model.encode(batch).embeds
        encoder = model.split_encoder()
        assert model.encoder is None and not any(n.startswith("encoder.") for n, _ in model.named_parameters())
        with pytest.raises(ValueError, match="needs its encoder features"):
            model.encode(batch)
        torch.testing.assert_close(
            model.encode(dataclasses.replace(batch, features=encoder(batch.media))).embeds, expected
        )
    with pytest.raises(ValueError, match="already split off"):
        model.split_encoder()
