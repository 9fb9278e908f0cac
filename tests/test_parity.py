"""Golden parity: our code reproduces the official code's numbers (../shared/golden/official_v1)."""

import json
import math
import subprocess
import sys

import pytest
from conftest import GOLDEN, ROOT, needs_golden

pytestmark = needs_golden


@pytest.fixture(scope="module")
def report():
    from videosalmonn.official.parity import check_official

    return check_official(str(GOLDEN))


def test_every_stage_within_tolerance(report):
    assert report.ok, report.failed
    assert len(report.values) >= 140


@pytest.mark.parametrize("stage", [
    "eva_out", "instructblip_query_out", "whisper_encoder_out", "beats_out", "audio_embeds", "joint_X",
    "mrc_low_out", "mrc_coarse_out", "H", "media_embeds", "inputs_embeds", "greedy_path_logits",
    "train.answer_logits"])
def test_stage_checked_both_ways(report, stage):
    for mode in ("isolated", "end_to_end"):
        value = report.values[f"av/{stage}/{mode}"]
        assert math.isfinite(value) and value <= 1e-4


def test_generated_ids_identical(report):
    for case in ("av", "video_only", "audioimage"):
        for run in ("greedy20", "beam20"):
            assert report.values[f"{case}/{run}_ids/end_to_end"] == 0
            assert report.values[f"{case}/{run}_ids/isolated"] == 0
    assert report.values["av/beam_default_ids/end_to_end"] == 0          # the released 512-token call
    assert report.values["av/beam_default_text/end_to_end"] == 0


def test_cli_exit_code_and_json():
    out = subprocess.run([sys.executable, "-m", "videosalmonn", "check-official", str(GOLDEN)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    values = json.loads(out.stdout)
    assert values["audioimage/train.loss/end_to_end"] <= 1e-5
    assert "OK:" in out.stderr


def test_check_fails_on_a_perturbed_golden(tmp_path):
    """The check can fail: a golden directory whose recorded H differs by 1e-3 is rejected."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from videosalmonn.official.parity import check_official

    copy = tmp_path / "golden"
    shutil.copytree(GOLDEN, copy)
    path = copy / "tensors" / "video_only.safetensors"
    path.chmod(0o644)
    tensors = load_file(str(path))
    tensors["H"] = tensors["H"] + 1e-3 * torch.randn_like(tensors["H"]).sign()
    save_file(tensors, str(path))
    report = check_official(str(copy))
    assert not report.ok
    assert any(line.startswith("video_only/H/end_to_end") for line in report.failed)
    expected = ("video_only/H/", "video_only/media_embeds/isolated_from_H")     # fed the perturbed H
    assert all(line.startswith(expected) for line in report.failed), report.failed
