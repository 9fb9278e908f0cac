"""The LLM wrapper without hidden global state: seeded sampling on forked generators, HF's notes quieted once at
import; and the methods training and export use (activation checkpointing, LoRA merge)."""

import copy
import logging
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import ROOT
from transformers.generation.streamers import BaseStreamer

from videosalmonn.config import GenerationConfig, ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.llm.language_model import HF_GENERATION_LOGGER, LanguageModel
from videosalmonn.llm.lora import is_lora_parameter
from videosalmonn.rng import seeded

SAMPLING = GenerationConfig(
    max_new_tokens=6, num_beams=1, do_sample=True, temperature=1.5, top_p=0.95, repetition_penalty=1.3, seed=11
)


@pytest.fixture(scope="module")
def lm():
    return LanguageModel.build(ModelConfig.from_name("tiny", ["llm.lora.dropout=0.0"]).llm).eval()


def prompt(lm: LanguageModel, length: int = 5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, length, lm.width, generator=g), torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])


def lazy_cuda_seed_calls() -> list:
    """Seeds torch queued for CUDA devices not started yet (`torch.manual_seed` queues one on a CPU-only host)."""
    return [call and call[0] for call in torch.cuda._lazy_seed_tracker.get_calls()]


def test_seeded_context_restores_every_global_state():
    before, queued = torch.random.get_rng_state(), lazy_cuda_seed_calls()
    with seeded(5):
        inside = torch.rand(4)
    assert torch.equal(inside, torch.rand(4, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert lazy_cuda_seed_calls() == queued  # no seed queued for any GPU


def test_seeded_sampling_leaves_the_global_rng_alone(lm):
    embeds, mask = prompt(lm)
    before, queued = torch.random.get_rng_state(), lazy_cuda_seed_calls()
    first = lm.generate(embeds, mask, SAMPLING, eos_id=2, pad_id=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert lazy_cuda_seed_calls() == queued
    torch.rand(10)  # the global stream moves on: the seeded answer does not
    assert torch.equal(lm.generate(embeds, mask, SAMPLING, eos_id=2, pad_id=0), first)


class StateSpy(BaseStreamer):
    """Records the logging and warnings state seen by every decoding step."""

    def __init__(self):
        self.seen = []

    def put(self, value) -> None:
        self.seen.append(logging_and_warnings_state())

    def end(self) -> None:
        pass


def logging_and_warnings_state():
    hf = logging.getLogger(HF_GENERATION_LOGGER)
    return hf.level, list(hf.filters), list(warnings.filters)


@pytest.mark.parametrize("gen", [SAMPLING, GenerationConfig(max_new_tokens=4, num_beams=1, repetition_penalty=1.5)])
def test_generate_changes_no_logging_or_warnings_state(lm, gen):
    embeds, mask = prompt(lm)
    before, spy = logging_and_warnings_state(), StateSpy()
    lm.generate(embeds, mask, gen, eos_id=2, pad_id=0, streamer=spy)
    assert spy.seen and all(state == before for state in spy.seen)  # not during the call either
    assert logging_and_warnings_state() == before


@pytest.mark.slow
def test_hf_penalty_notes_are_quieted_once_at_import():
    """Outside pytest's warning capture: a generation with a repetition penalty prints none of HF's two notes."""
    code = (
        "import torch; from videosalmonn.config import GenerationConfig, ModelConfig; "
        "from videosalmonn.llm.language_model import LanguageModel; "
        "lm = LanguageModel.build(ModelConfig.from_name('tiny').llm).eval(); "
        "gen = GenerationConfig(max_new_tokens=3, num_beams=1, repetition_penalty=1.5); "
        "[lm.generate(torch.randn(1, 4, lm.width), torch.ones(1, 4, dtype=torch.long), gen, 2, 0) "
        "for _ in range(2)]; print('generated')"
    )
    run = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "generated" in run.stdout, run.stderr
    assert "repetition_penalty" not in run.stderr and "RepetitionPenaltyLogitsProcessor" not in run.stderr, run.stderr


def test_merge_lora_gives_the_same_logits_and_leaves_the_adapters(lm):
    adapted = copy.deepcopy(lm)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters count
        for name, p in adapted.named_parameters():
            if ".lora_B." in name:
                p.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(3))
    embeds, mask = prompt(lm)
    merged = LanguageModel(adapted.merge_lora()).eval()
    assert not any(is_lora_parameter(n) for n, _ in merged.named_parameters())
    assert any(is_lora_parameter(n) for n, _ in adapted.named_parameters())  # merged a copy
    assert not torch.allclose(adapted(embeds, mask), lm(embeds, mask))
    torch.testing.assert_close(merged(embeds, mask), adapted(embeds, mask), atol=1e-4, rtol=1e-4)
    with pytest.raises(CheckpointError, match="no LoRA adapters"):
        merged.merge_lora()


def test_activation_checkpointing_keeps_the_gradients(lm):
    plain, checkpointed = copy.deepcopy(lm).train(), copy.deepcopy(lm).train()
    checkpointed.enable_activation_checkpointing()
    assert checkpointed.model.is_activation_checkpointing and not plain.model.is_activation_checkpointing
    embeds, mask = prompt(lm)
    grads = []
    for model in (plain, checkpointed):
        model(embeds, mask).float().pow(2).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_should_stop_aborts_a_beam_search_within_a_step():
    """`should_stop` is asked every step, beam search included (it cannot take a streamer)."""
    import time

    from conftest import ROOT

    from videosalmonn.config import GenerationConfig
    from videosalmonn.llm.language_model import GenerationAborted
    from videosalmonn.pipeline import Pipeline, Request

    pipe = Pipeline.from_pretrained("tiny", device="cpu")
    request = Request("Describe", video=str(ROOT / "tests" / "assets" / "clip2s.mp4"))
    clip = pipe.load(request)
    calls = []

    def stop_after_three() -> bool:
        calls.append(time.monotonic())
        return len(calls) > 3

    with pytest.raises(GenerationAborted):
        pipe.answer_batch(
            [request], GenerationConfig(max_new_tokens=512, num_beams=4), [clip], should_stop=stop_after_three
        )
    assert len(calls) == 4  # stopped at the first step that asked after the budget: no more decoding
