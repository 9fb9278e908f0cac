"""LRS2 lip reading with 0 dB Gaussian noise (paper App. F): the SNR function, the reader, `eval add-noise`, and
WER runs audio alone vs audio + video on a 2-clip synthetic LRS2 folder."""

from __future__ import annotations

import math

import pytest
import torch
from make_fixtures import write_video

from videosalmonn.cli import main
from videosalmonn.errors import InputError
from videosalmonn.evaluation.noisy import sample_seed, write_noisy_audio
from videosalmonn.evaluation.runner import request_for, run_eval
from videosalmonn.evaluation.settings import EvalSettings, select_samples
from videosalmonn.evaluation.tasks import TASKS
from videosalmonn.media.audio import load_audio
from videosalmonn.media.noise import add_noise, power, snr_db
from videosalmonn.pipeline import Pipeline

TRANSCRIPTS = {"6330311066473698535/00011": "WHEN YOU'RE COOKING CHIPS AT HOME", "6331559613336179781/00046": "IT IS"}


@pytest.fixture(scope="module")
def lrs2(tmp_path_factory):
    """LRS2's layout: test.txt + main/<folder>/<utterance>.mp4 (with a speech-like tone) and .txt."""
    root = tmp_path_factory.mktemp("LRS2")
    for sample_id, text in TRANSCRIPTS.items():
        clip = root / "main" / f"{sample_id}.mp4"
        clip.parent.mkdir(parents=True)
        write_video(clip, n_frames=25, audio_seconds=1.0)
        clip.with_suffix(".txt").write_text(f"Text:  {text}\nConf:  4\n\nWORD START END ASDSCORE\nIT 0.1 0.2 3.4\n")
    (root / "test.txt").write_text("".join(f"{i}\n" for i in TRANSCRIPTS))
    return root


# ------------------------------------------------------------------------------------------ SNR


@pytest.mark.parametrize("snr", [0.0, 10.0, -5.0, 20.0])
@pytest.mark.parametrize("kind", ["sine", "speechlike"])
def test_measured_snr_is_the_target(snr, kind):
    t = torch.arange(16_000) / 16_000
    x = 0.5 * torch.sin(2 * math.pi * 440 * t)
    if kind == "speechlike":
        x = x * (torch.rand(16_000, generator=torch.Generator().manual_seed(1)) > 0.5)
    y = add_noise(x, snr, seed=3)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert abs(snr_db(x, y) - snr) < 0.1
    noise = (y.double() - x.double()).numpy()
    assert abs(noise.mean()) < 0.05 * noise.std()  # zero-mean Gaussian noise
    assert power(y.double() - x.double()) == pytest.approx(power(x) / 10 ** (snr / 10), rel=1e-5)


def test_noise_is_seeded():
    x = torch.sin(torch.arange(8000) * 0.1)
    assert torch.equal(add_noise(x, 0, seed=7), add_noise(x, 0, seed=7))
    assert not torch.equal(add_noise(x, 0, seed=7), add_noise(x, 0, seed=8))
    assert torch.equal(add_noise(torch.zeros(100), 0, seed=7), torch.zeros(100))  # silence: no reference power
    assert sample_seed(0, "a/1") == sample_seed(0, "a/1") != sample_seed(0, "a/2") != sample_seed(1, "a/1")


# ------------------------------------------------------------------------------------------ reader


def test_reader(lrs2, tmp_path):
    samples = TASKS["lrs2"].read(lrs2 / "test.txt")
    assert [s.id for s in samples] == list(TRANSCRIPTS)
    assert [s.references[0] for s in samples] == list(TRANSCRIPTS.values())
    assert all(s.video == lrs2 / "main" / f"{s.id}.mp4" and s.audio is None for s in samples)
    noisy = TASKS["lrs2"].read(lrs2 / "test.txt", lrs2, noisy_audio=str(tmp_path))
    assert [s.audio for s in noisy] == [tmp_path / f"{i}.wav" for i in TRANSCRIPTS]
    (lrs2 / "bad.txt").write_text("nobody/00001\n")
    with pytest.raises(InputError, match="nobody/00001"):
        TASKS["lrs2"].read(lrs2 / "bad.txt")


def test_add_noise_writes_files_at_the_snr(lrs2, tmp_path):
    samples = select_samples(EvalSettings(task="lrs2", media_root=str(lrs2)))
    files = write_noisy_audio(samples, 0.0, 0, tmp_path)
    assert files == [tmp_path / f"{i}.wav" for i in TRANSCRIPTS]
    for s, f in zip(samples, files):
        clean, noisy = load_audio(s.video).samples, load_audio(f).samples
        assert noisy.shape == clean.shape and abs(snr_db(clean, noisy)) < 0.1
    again = tmp_path / "again"
    assert (
        main(["eval", "add-noise", "--task", "lrs2", "--media-root", str(lrs2), "--snr", "0", "--out", str(again)]) == 0
    )
    assert all(
        torch.equal(load_audio(again / f"{i}.wav").samples, load_audio(f).samples) for i, f in zip(TRANSCRIPTS, files)
    )


# ------------------------------------------------------------------------------------------ WER runs


def test_wer_audio_alone_and_audio_video(lrs2, tmp_path):
    pipe = Pipeline.from_pretrained("tiny", device="cpu")
    noisy = tmp_path / "0db"
    write_noisy_audio(select_samples(EvalSettings(task="lrs2", media_root=str(lrs2))), 0.0, 0, noisy)
    results = {}
    for name, mask, options in [
        ("clean-av", None, ()),
        ("clean-audio", "video", ()),
        ("0db-av", None, (f"noisy_audio={noisy}",)),
        ("0db-audio", "video", (f"noisy_audio={noisy}",)),
    ]:
        settings = EvalSettings(task="lrs2", media_root=str(lrs2), mask=mask, task_options=options)
        summary = run_eval(settings, tmp_path / name, batch_size=2, pipe=pipe)
        results[name] = summary.results
        assert summary.answered == 2 and summary.failed == 0
    for name, r in results.items():
        assert r["complete"] and r["counts"]["scored"] == 2, name
        assert r["metrics"][0]["name"] == "WER" and r["metrics"][0]["value"] >= 0
    settings = EvalSettings(task="lrs2", media_root=str(lrs2), task_options=(f"noisy_audio={noisy}",))
    requests = [request_for(s, settings) for s in select_samples(settings)]
    assert [r.audio for r in requests] == [str(noisy / f"{i}.wav") for i in TRANSCRIPTS]  # what the model got
    clean = request_for(select_samples(EvalSettings(task="lrs2", media_root=str(lrs2)))[0], EvalSettings(task="lrs2"))
    assert clean.audio is None and clean.video_audio  # clean: the video's own sound track
