"""The command line end to end on the tiny preset (the README quickstart)."""

import json
import subprocess
import sys

import pytest
from conftest import DEMO_VIDEO, ROOT, needs_media


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "videosalmonn", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@needs_media
@pytest.mark.slow
def test_infer_text_and_json():
    out = run("infer", "--model", "tiny", "--video", str(DEMO_VIDEO), "--prompt", "Describe the video")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "Traceback" not in out.stderr
    out = run("infer", "--model", "tiny", "--video", str(DEMO_VIDEO), "--prompt", "Describe the video", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    # 48 frames and 23.7 s of audio (48 slots of its own): 50 slots, 3 tokens each
    assert info["frames"] == 48 and info["audio_present"] and info["media_tokens"] == 150
    assert abs(info["video_seconds"] - 23.69) < 0.01 and info["cut"] == []


@pytest.mark.slow
def test_user_errors_are_one_line(tmp_path):
    out = run("infer", "--model", "tiny", "--video", str(tmp_path / "missing.mp4"), "--prompt", "x")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "missing.mp4" in out.stderr and "Traceback" not in out.stderr
    out = run("infer", "--model", "no-such-model", "--audio", str(tmp_path / "a.wav"), "--prompt", "x")
    assert out.returncode == 2 and "unknown preset" in out.stderr
    out = run("infer", "--model", "tiny", "--set", "connector.bogus=1", "--audio", "a.wav", "--prompt", "x")
    assert out.returncode == 2 and "unknown key 'connector.bogus'" in out.stderr
