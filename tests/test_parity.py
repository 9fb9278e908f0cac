"""Golden parity: our code reproduces the official code's numbers (../shared/golden/official_v1).

The full check (`check_official`, every stage of every case through the public Pipeline and the model's forward)
runs once per suite, in the `report` fixture; the other tests reuse it or check one case.
"""

import math

import pytest
import torch
from conftest import GOLDEN, needs_golden

pytestmark = [needs_golden, pytest.mark.slow]  # the full golden check: ~20 s
CASES = ("av", "video_only", "audioimage")


@pytest.fixture(scope="module")
def report():
    from videosalmonn.official.parity import check_official

    return check_official(str(GOLDEN))


@pytest.fixture(scope="module")
def golden():
    from videosalmonn.official.golden import GoldenDir

    return GoldenDir(GOLDEN)


def test_every_stage_within_tolerance(report):
    assert report.ok, report.failed
    assert len(report.values) >= 140


@pytest.mark.parametrize(
    "stage",
    [
        "eva_out",
        "instructblip_query_out",
        "whisper_encoder_out",
        "beats_out",
        "audio_embeds",
        "joint_X",
        "mrc_low_out",
        "mrc_coarse_out",
        "H",
        "media_embeds",
        "inputs_embeds",
        "greedy_path_logits",
        "train.answer_logits",
    ],
)
def test_stage_checked_both_ways(report, stage):
    for mode in ("isolated", "end_to_end"):
        value = report.values[f"av/{stage}/{mode}"]
        assert math.isfinite(value) and value <= 1e-4


def test_generated_ids_identical(report):
    for case in CASES:
        for run in ("greedy20", "beam20"):
            assert report.values[f"{case}/{run}_ids/end_to_end"] == 0
            assert report.values[f"{case}/{run}_ids/isolated"] == 0
    assert report.values["av/beam_default_ids/end_to_end"] == 0  # the released 512-token call
    assert report.values["av/beam_default_text/end_to_end"] == 0


def test_training_forward_losses(report):
    for case in CASES:
        assert report.values[f"{case}/train.loss/end_to_end"] <= 1e-5
        assert report.values[f"{case}/train_div.loss/end_to_end"] <= 1e-5
    assert report.values["video_only/train.H/end_to_end"] <= 1e-4  # the masked unpaired audio of training


def test_pipeline_answer_batch_gives_golden_ids_batched(golden):
    """The public path, all three cases in one left-padded batch: the official greedy and beam ids."""
    from videosalmonn.official.parity import case_request, golden_pipeline, golden_runs

    pipe = golden_pipeline(golden)
    cases = golden.cases()
    requests = [case_request(golden, case) for case in cases]
    clips = [pipe.load(r) for r in requests]
    for run in ("greedy20", "beam20"):
        gen = golden_runs(cases[0], pipe.cfg.llm.max_text_tokens)[run]
        with torch.no_grad():
            answers = pipe.answer_batch(requests, gen, clips)
        for case, answer in zip(cases, answers):
            assert answer.token_ids == case.expected[run]["ids"][0], (case.name, run)
            assert answer.media_tokens == case.tensors["media_embeds"].shape[1]


def test_cli_exit_code_and_json(report, monkeypatch, capsys):
    import json

    from videosalmonn import cli
    from videosalmonn.official import parity

    monkeypatch.setattr(parity, "check_official", lambda directory, progress=None: report)
    assert cli.main(["check-official", str(GOLDEN)]) == 0
    out = capsys.readouterr()
    values = json.loads(out.out)
    assert values["audioimage/train.loss/end_to_end"] <= 1e-5
    assert "OK:" in out.err

    failed = parity.Report(values={"x/H/end_to_end": 1.0}, failed=["x/H/end_to_end: max abs error 1 > 0.0001"])
    monkeypatch.setattr(parity, "check_official", lambda directory, progress=None: failed)
    assert cli.main(["check-official", str(GOLDEN)]) == 1
    assert "FAILED: 1 of 1 stages" in capsys.readouterr().err


def test_check_fails_on_a_perturbed_golden(tmp_path):
    """The check can fail: a golden directory whose recorded H differs by 1e-3 is rejected."""
    import shutil

    from safetensors.torch import load_file, save_file

    from videosalmonn.official.parity import check_official

    copy = tmp_path / "golden"
    shutil.copytree(GOLDEN, copy)
    path = copy / "tensors" / "video_only.safetensors"
    path.chmod(0o644)
    tensors = load_file(str(path))
    tensors["H"] = tensors["H"] + 1e-3 * torch.randn_like(tensors["H"]).sign()
    save_file(tensors, str(path))
    report = check_official(str(copy), cases=("video_only",))
    assert not report.ok
    assert any(line.startswith("video_only/H/end_to_end") for line in report.failed)
    expected = ("video_only/H/", "video_only/media_embeds/isolated_from_H")  # fed the perturbed H
    assert all(line.startswith(expected) for line in report.failed), report.failed


def test_check_fails_when_the_model_differs(golden, monkeypatch):
    """End-to-end stages come from the real model: a perturbed connector projection fails them (and only the
    stages downstream of it), while the golden-fed isolated stages upstream still pass."""
    from videosalmonn.official import parity

    real = parity.golden_pipeline

    def perturbed(g):
        pipe = real(g)
        with torch.no_grad():
            pipe.model.connector.proj.bias.add_(1e-2)
        return pipe

    monkeypatch.setattr(parity, "golden_pipeline", perturbed)
    report = parity.check_official(str(GOLDEN), cases=("audioimage",))
    assert "audioimage/media_embeds/end_to_end" in " ".join(report.failed)
    assert report.values["audioimage/H/end_to_end"] <= 1e-4
    assert report.values["audioimage/beats_out/isolated"] <= 1e-4
