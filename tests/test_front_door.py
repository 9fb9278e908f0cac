"""The inference front door: batch manifests, long inputs, --limits official, bad and odd input (tiny preset)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import DEMO_FLAC, DEMO_IMAGE, DEMO_VIDEO, DEMO_WAV, ROOT, needs_media
from make_fixtures import write_video
from PIL import Image

from videosalmonn.cli import main
from videosalmonn.data.manifest import read_manifest
from videosalmonn.infer_manifest import run_manifest
from videosalmonn.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", device="cpu")


def write_audio(
    path: Path, seconds: float, rate: int = 16000, channels: int = 1, codec: str = "pcm_s16le", freq: float = 440.0
) -> Path:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    data = np.stack([0.3 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = "s16" if codec == "pcm_s16le" else "fltp"
        step = 1024
        for i in range(0, n, step):
            chunk = data[:, i : i + step]
            if fmt == "s16":
                frame = av.AudioFrame.from_ndarray(
                    (chunk.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout=layout
                )
            else:
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


# -------------------------------------------------------------------------------- batch manifests


@needs_media
@pytest.mark.slow
def test_manifest_of_mixed_inputs_equals_one_by_one(pipe, tmp_path):
    lines = [
        {"id": "video", "video": str(DEMO_VIDEO), "prompt": "Describe the video"},
        {"id": "video+audio", "video": str(DEMO_VIDEO), "audio": str(DEMO_WAV), "prompt": "What do you hear?"},
        {"id": "image", "image": str(DEMO_IMAGE), "prompt": "What is in the image?"},
        {"id": "image+audio", "image": str(DEMO_IMAGE), "audio": str(DEMO_FLAC), "prompt": "Describe both"},
        {"id": "audio", "audio": str(DEMO_FLAC), "prompt": "Transcribe the speech"},
    ]
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    samples = read_manifest(manifest)
    out = tmp_path / "out.jsonl"
    summary = run_manifest(pipe, samples, str(out), batch_size=5, progress=False)
    assert (summary.answered, summary.failed) == (5, 0)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    alone = [pipe.answer_batch([s.to_request()])[0] for s in samples]
    assert [r["id"] for r in records] == [x["id"] for x in lines]
    assert [r["answer"] for r in records] == [a.text for a in alone]
    assert [r["audio_present"] for r in records] == [True, True, False, True, True]
    # resume: a second run answers nothing new
    assert run_manifest(pipe, samples, str(out), batch_size=5, progress=False).skipped == 5


@needs_media
@pytest.mark.slow
def test_official_manifest_format_and_bad_sample(pipe, tmp_path):
    official = [
        {
            "image_name": [str(DEMO_VIDEO), str(DEMO_WAV)],
            "conversation": [
                {"from": "human", "value": "Describe the video together with the audio"},
                {"from": "gpt", "value": "A band plays."},
            ],
        },
        {
            "image_name": str(DEMO_VIDEO),
            "conversation": [{"from": "human", "value": "What is happening?"}, {"from": "gpt", "value": "Music."}],
        },
        {
            "image_name": str(tmp_path / "garbage.mp4"),
            "conversation": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "-"}],
        },
    ]
    (tmp_path / "garbage.mp4").write_bytes(b"\x00garbage" * 100)
    path = tmp_path / "official.json"
    path.write_text(json.dumps(official))
    samples = read_manifest(path)
    assert samples[1].video_audio is False  # official video-only: its sound track is not used
    out = tmp_path / "out.jsonl"
    summary = run_manifest(pipe, samples, str(out), batch_size=3, progress=False)
    assert (summary.answered, summary.failed) == (2, 1)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert records[0]["reference"] == "A band plays." and records[0]["audio_present"]
    assert not records[1]["audio_present"] and records[1]["media_tokens"] == 150
    assert "garbage.mp4" in records[2]["error"] and "answer" not in records[2]


def test_manifest_errors_name_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4", "prompt": "x"}\n{"video": "b.mp4", "promt": "x"}\n')
    assert main(["infer", "--model", "tiny", "--manifest", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2: unknown key(s) promt" in err and err.count("\n") == 1
    bad.write_text('{"video": "a.mp4", "prompt": "x"}\n{"video": "b.mp4", "prompt": "y"}\n')
    assert main(["infer", "--model", "tiny", "--manifest", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "2 media file(s) not found" in err and "bad.jsonl:1" in err and "b.mp4" in err


@needs_media
@pytest.mark.slow
def test_cli_manifest_resumes_after_kill(tmp_path):
    lines = [{"id": str(i), "audio": str(DEMO_FLAC), "prompt": f"Question {i}"} for i in range(4)]
    manifest = tmp_path / "in.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    first = json.dumps({"id": "0", "answer": "kept"}) + "\n" + '{"id": "1", "ans'  # a run killed mid-write
    out.write_text(first)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "videosalmonn",
            "infer",
            "--model",
            "tiny",
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["0", "1", "2", "3"] and records[0]["answer"] == "kept"
    assert "3 answered, 0 failed, 1 already in" in proc.stderr


# ---------------------------------------------------------------------------------------- long inputs


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """95 s of video (4 fps, 32x24) with 95 s of audio."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_video(path, size=(32, 24), fps=4, n_frames=95 * 4, audio_seconds=95)


@pytest.mark.slow
def test_long_input_covered_by_default(pipe, long_video):
    answer = pipe.answer("Describe the video", video=str(long_video))
    cov = answer.coverage
    assert cov.cut == [] and cov.frames == 190 and abs(cov.video_seconds - 95) < 0.3
    assert abs(cov.audio_seconds - 95) < 0.3
    assert answer.media_tokens == 190 * 3  # 95 s of video and audio: 190 slots, 3 tokens each


@pytest.mark.slow
def test_long_input_cut_with_official_limits(long_video, capsys):
    assert (
        main(
            [
                "infer",
                "--model",
                "tiny",
                "--limits",
                "official",
                "--video",
                str(long_video),
                "--prompt",
                "Describe the video",
                "--json",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 120 and abs(info["video_seconds"] - 60) < 0.01 and abs(info["audio_seconds"] - 30) < 0.01
    assert len(info["cut"]) == 2 and any("audio after 30.0 s" in c for c in info["cut"])
    assert any("video after 60" in c for c in info["cut"]) and info["media_tokens"] == 360


# ---------------------------------------------------------------------------------------- bad input


def bad_inputs(tmp: Path) -> dict[str, Path]:
    (tmp / "dir.mp4").mkdir()
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp / "notes.txt").write_text("this is not media\n" * 50)
    good = write_video(tmp / "good.mp4", n_frames=50, audio_seconds=2)
    (tmp / "truncated.mp4").write_bytes(good.read_bytes()[:1500])
    return {
        "missing": tmp / "missing.mp4",
        "directory": tmp / "dir.mp4",
        "empty": tmp / "empty.mp4",
        "garbage": tmp / "garbage.mp4",
        "truncated": tmp / "truncated.mp4",
        "non-media": tmp / "notes.txt",
    }


@pytest.mark.parametrize("flag", ["--video", "--audio", "--image"])
def test_bad_input_exit_2_one_line(tmp_path, capsys, flag):
    for name, path in bad_inputs(tmp_path).items():
        code = main(["infer", "--model", "tiny", flag, str(path), "--prompt", "x"])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert err.count("\n") == 1 and path.name in err and "Traceback" not in err, (name, err)


# ---------------------------------------------------------------------------------------- odd, valid input


def odd_media(tmp: Path) -> list[dict]:
    img = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    for mode in ("L", "RGBA", "CMYK", "P"):
        Image.fromarray(img).convert(mode).save(tmp / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}")
    Image.fromarray(np.zeros((10, 4000, 3), np.uint8)).save(tmp / "wide.png")
    return [
        {"video": write_video(tmp / "silent.mp4", n_frames=20)},  # no audio track
        {"video": write_video(tmp / "one_frame.mp4", n_frames=1)},
        {"video": write_video(tmp / "tiny.mp4", size=(8, 8), n_frames=10)},
        {"video": write_video(tmp / "uhd.mp4", size=(3840, 2160), n_frames=2, fps=2)},
        {"video": write_video(tmp / "vfr.mp4", pts_ms=[0, 40, 80, 700, 740, 1500, 2600])},
        {"audio": write_audio(tmp / "surround.wav", 1.5, rate=48000, channels=6)},
        {"audio": write_audio(tmp / "phone.wav", 2.0, rate=8000)},
        {"audio": write_audio(tmp / "blip.wav", 0.1)},
        *({"image": tmp / f"img_{m}.{'jpg' if m == 'CMYK' else 'png'}"} for m in ("L", "RGBA", "CMYK", "P")),
        {"image": tmp / "wide.png"},
    ]


@pytest.mark.slow
def test_odd_but_valid_media_are_answered(pipe, tmp_path):
    for media in odd_media(tmp_path):
        kind, path = next(iter(media.items()))
        answer = pipe.answer("Describe it", **{kind: str(path)})
        assert answer.media_tokens > 0 and isinstance(answer.text, str), path
        if kind == "audio":
            assert answer.coverage.audio_present and answer.coverage.frames == 0
        else:
            assert answer.coverage.frames >= 1


def test_batch_size_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "infer",
                "--model",
                "tiny",
                "--manifest",
                str(tmp_path / "m.jsonl"),
                "--out",
                str(tmp_path / "o.jsonl"),
                "--batch-size",
                "0",
            ]
        )
    assert e.value.code == 2 and "expected a positive integer, got '0'" in capsys.readouterr().err
