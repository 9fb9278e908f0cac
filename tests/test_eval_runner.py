"""The SAVE harness end to end on the tiny preset: runs of an audio-visual task (How2-style AVSR, Ego4D-style
AVQA with time spans) and an audio task (a LibriSpeech test-clean tree), kill-and-resume, torchrun shards +
merge, diagnostics, prepare and the report. Media are the demo files of ../shared/media."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
from conftest import DEMO_FLAC, DEMO_VIDEO, DEMO_WAV, ROOT, needs_media
from PIL import Image

from videosalmonn.cli import main
from videosalmonn.data.save import BenchmarkSample
from videosalmonn.errors import InputError
from videosalmonn.evaluation.diagnostics import zeroed_levels
from videosalmonn.evaluation.merge import merge_run
from videosalmonn.evaluation.report import write_report
from videosalmonn.evaluation.runner import request_for, run_eval
from videosalmonn.evaluation.settings import EvalSettings, select_samples
from videosalmonn.pipeline import Pipeline
from videosalmonn.types import Turn

AVSR_QUESTION = "Can you transcribe the speech into text, paying attention to the video?"
TRANSCRIPTS = [
    "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES",
    "AND WE ARE GLAD TO WELCOME HIS GOSPEL",
    "MISTER QUILTER",
    "THE MIDDLE CLASSES",
    "HIS GOSPEL",
    "WE ARE GLAD",
    "THE APOSTLE",
    "TO WELCOME",
]
OPTIONS = ["a band plays", "a man sings", "people dance", "a dog barks", "rain falls"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ---------------------------------------------------------------------------------------------- data


def cut_demo(src: Path, dst: Path, seconds: float) -> Path:
    """The first `seconds` of a demo file, stream-copied (no re-encoding), like a pre-cut How2 clip."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.dts is None or packet.stream.index not in streams or packet.dts * packet.time_base >= seconds:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def how2(root: Path, n: int, missing: int = 0) -> Path:
    """How2 dev5 layout (SAVEBench how2_test.json): {"image": [<id>_<start>_<end>.mp4, ... .wav], "question",
    "answer"}, clips cut from the demo; media paths relative to `root`; the last `missing` samples point at
    files that do not exist."""
    (root / "how2").mkdir(parents=True, exist_ok=True)
    clip = "how2/4405327307_0.00_3.00"
    if not (root / f"{clip}.mp4").exists():
        cut_demo(DEMO_VIDEO, root / f"{clip}.mp4", 3.0)
        cut_demo(DEMO_WAV, root / f"{clip}.wav", 3.0)
    entries = [
        {
            "image": [f"{clip}.mp4", f"{clip}.wav"] if i < n - missing else ["how2/gone.mp4", "how2/gone.wav"],
            "question": AVSR_QUESTION,
            "answer": "a band is playing on stage",
        }
        for i in range(n)
    ]
    (root / "how2_test.json").write_text(json.dumps(entries))
    return root / "how2_test.json"


def ego4d(root: Path, n: int) -> Path:
    """Ego4D-QA layout: [mp4, wav], question, answer, answer_candidates, duration = 2-s spans of the demo."""
    entries = [
        {
            "image_name": [str(DEMO_VIDEO), str(DEMO_WAV)],
            "question": "What happens in the video?",
            "answer": OPTIONS[i % 5],
            "answer_candidates": OPTIONS,
            "duration": [2.0 * i, 2.0 * i + 2],
        }
        for i in range(n)
    ]
    (root / "ego4d_qa.json").write_text(json.dumps(entries))
    return root / "ego4d_qa.json"


def librispeech(root: Path, n: int, absent: int = 0) -> Path:
    """LibriSpeech/test-clean/1272/128104/: n copies of the demo flac and their .trans.txt (+ `absent` lines
    naming files that do not exist)."""
    chapter = root / "LibriSpeech" / "test-clean" / "1272" / "128104"
    chapter.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n + absent):
        utt = f"1272-128104-{i:04d}"
        if i < n:
            shutil.copy(DEMO_FLAC, chapter / f"{utt}.flac")
        lines.append(f"{utt} {TRANSCRIPTS[i % len(TRANSCRIPTS)]}")
    (chapter / "1272-128104.trans.txt").write_text("\n".join(lines) + "\n")
    return root / "LibriSpeech"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videosalmonn", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def runs(pipe, tmp_path_factory):
    """An AVSR run (2 samples), an ASR run (3), and AVSR with audio masked / level 1 zeroed (1 each)."""
    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("runs")
    if not DEMO_VIDEO.is_file():
        pytest.skip(f"demo media not found at {DEMO_VIDEO.parent}")
    avsr = EvalSettings(task="avsr", manifest=str(how2(data, 2)), media_root=str(data))
    asr = EvalSettings(task="asr", media_root=str(librispeech(data, 3)))
    for name, settings, p in [
        ("avsr", avsr, pipe),
        ("asr", asr, pipe),
        ("avsr-audio-masked", EvalSettings(**{**vars(avsr), "mask": "audio", "limit": 1}), pipe),
        ("avsr-level1", EvalSettings(**{**vars(avsr), "zero_level": 1, "limit": 1}), pipe),
    ]:
        run_eval(settings, out / name, batch_size=2, pipe=p)
    return out


# ---------------------------------------------------------------------------------------------- runs


@needs_media
@pytest.mark.slow
def test_audio_visual_run_records_and_results(runs, pipe):
    run = runs / "avsr"
    merged = records(run / "samples.jsonl")
    assert [r["id"] for r in merged] == ["avsr-0000", "avsr-0001"]
    for r in merged:
        assert r["prompt"] == AVSR_QUESTION and r["reference"] == ["a band is playing on stage"]
        assert isinstance(r["output"], str) and r["score"] >= 0 and r["audio_present"] and r["frames"] > 0
    results = json.loads((run / "results.json").read_text())
    assert results["complete"] and results["counts"] == {
        "selected": 2,
        "scored": 2,
        "failed": 0,
        "missing_media": 0,
        "pending": 0,
    }
    wer = results["metrics"][0]
    assert wer["name"] == "WER" and wer["details"]["ci95_low"] <= wer["value"] <= wer["details"]["ci95_high"]
    info = json.loads((run / "run.json").read_text())
    assert info["task"] == "avsr" and info["seed"] == 0 and info["model"]["config"]["name"] == "tiny"
    assert info["generation"]["num_beams"] == 1 and info["generation"]["max_new_tokens"] == 16
    versions = info["sessions"][-1]["versions"]
    assert set(versions) >= {"videosalmonn", "torch", "transformers"}
    # a rerun resumes: nothing is generated again
    summary = run_eval(EvalSettings.from_json(info["settings"]), run, pipe=pipe)
    assert (summary.answered, summary.skipped) == (0, 2) and len(info["sessions"]) == 1
    assert len(records(run / "samples.rank0.jsonl")) == 2


@needs_media
def test_diagnostics_recorded(runs, pipe, tmp_path):
    masked = json.loads((runs / "avsr-audio-masked" / "run.json").read_text())
    assert masked["diagnostics"] == {
        "mask": "audio",
        "modality_mask": [1.0, 0.0],
        "zero_level": None,
        "label": "audio masked",
    }
    level = json.loads((runs / "avsr-level1" / "run.json").read_text())
    assert level["diagnostics"]["zero_level"] == 1 and level["model"]["zeroed_levels"] == [1]
    assert level["model"]["overrides"] == [] and masked["model"]["zeroed_levels"] == []
    # the run's hook is gone with the run; a pipeline zeroed by its caller is refused (the record would be wrong)
    with zeroed_levels(pipe.model.connector, [0]), pytest.raises(InputError, match=r"already has levels \[0\]"):
        run_eval(EvalSettings.from_json({**level["settings"], "zero_level": None}), tmp_path / "run", pipe=pipe)
    assert json.loads((runs / "avsr-level1" / "results.json").read_text())["diagnostics"]["label"] == "level 1 zeroed"


@needs_media
def test_resume_refuses_a_different_evaluation(runs, pipe):
    settings = EvalSettings(**{**json.loads((runs / "avsr" / "run.json").read_text())["settings"], "mask": "video"})
    with pytest.raises(InputError, match="holds a different evaluation.*mask: None -> 'video'"):
        run_eval(settings, runs / "avsr", pipe=pipe)


@needs_media
@pytest.mark.slow
def test_audio_run_killed_then_resumed(tmp_path, pipe):
    root = librispeech(tmp_path, 6)
    out = tmp_path / "run"
    first = run_eval(EvalSettings(task="asr", media_root=str(root), limit=2), out, pipe=pipe)
    shard = out / "samples.rank0.jsonl"
    assert len(records(shard)) == 2 and first.results["counts"]["selected"] == 2

    args = ["eval", "run", "--task", "asr", "--media-root", str(root), "--out", str(out), "--batch-size", "1"]

    proc = subprocess.Popen(
        [sys.executable, "-m", "videosalmonn", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not shard.exists() or shard.read_text().count("\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    killed_with = shard.read_text().count("\n")
    assert 3 <= killed_with < 6
    with shard.open("a") as f:
        f.write('{"id": "1272-128104-0005", "outp')  # a write torn by the kill

    last = cli(*args)
    assert last.returncode == 0, last.stderr
    assert f"{6 - killed_with} answered, 0 failed, {killed_with} already done" in last.stderr
    ids = [r["id"] for r in records(shard)]
    assert sorted(ids) == [f"1272-128104-{i:04d}" for i in range(6)]  # every id once: none redone
    merged = records(out / "samples.jsonl")
    assert [r["id"] for r in merged] == [f"1272-128104-{i:04d}" for i in range(6)]
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and results["counts"]["scored"] == 6 and results["metrics"][0]["name"] == "WER"
    assert [s["world_size"] for s in json.loads((out / "run.json").read_text())["sessions"]] == [1, 1, 1]


@needs_media
@pytest.mark.slow
def test_torchrun_shards_and_merge(tmp_path):
    manifest = ego4d(tmp_path, 4)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "videosalmonn",
            "eval",
            "run",
            "--task",
            "avqa-ego4d",
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
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = {r: [x["id"] for x in records(out / f"samples.rank{r}.jsonl")] for r in (0, 1)}
    assert shards == {0: ["avqa-ego4d-0000", "avqa-ego4d-0002"], 1: ["avqa-ego4d-0001", "avqa-ego4d-0003"]}
    merged = records(out / "samples.jsonl")
    assert [r["id"] for r in merged] == [f"avqa-ego4d-{i:04d}" for i in range(4)]
    assert [r["span"] for r in merged] == [[0.0, 2.0], [2.0, 4.0], [4.0, 6.0], [6.0, 8.0]]  # source video: cut
    assert all(abs(r["video_seconds"] - 2.0) < 0.1 and r["score"] in (0.0, 1.0) for r in merged)
    before = json.loads((out / "results.json").read_text())
    assert before["complete"] and before["counts"]["scored"] == 4
    assert json.loads((out / "run.json").read_text())["sessions"][0]["world_size"] == 2
    after = merge_run(out)  # `eval merge` is idempotent
    assert after["metrics"] == before["metrics"] and after["counts"] == before["counts"]


@needs_media
def test_missing_media_refused_unless_allowed(tmp_path, pipe):
    settings = EvalSettings(task="asr", media_root=str(librispeech(tmp_path, 1, absent=1)))
    with pytest.raises(InputError, match="1 of 2 samples have missing media .*--allow-missing"):
        run_eval(settings, tmp_path / "run", pipe=pipe)
    summary = run_eval(EvalSettings(**{**vars(settings), "allow_missing": True}), tmp_path / "run", pipe=pipe)
    assert (summary.answered, summary.missing) == (1, 1)
    assert summary.results["counts"] == {"selected": 2, "scored": 1, "failed": 0, "missing_media": 1, "pending": 0}
    merged = records(tmp_path / "run" / "samples.jsonl")
    assert merged[1]["error"] == "media not found" and merged[1]["missing_media"][0].endswith("0001.flac")


@needs_media
@pytest.mark.slow
def test_avssd_scored_by_an_llm_judge_endpoint(tmp_path, pipe):
    """--judge-url: each answer goes to an OpenAI-compatible endpoint with the App. D prompt (here a fake one)."""
    prompts = []

    class Judge(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompts.append(body["messages"][0]["content"])
            reply = json.dumps({"choices": [{"message": {"content": "Yes."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        manifest = how2(tmp_path, 2)  # VGGSS layout is the same: [mp4, wav], question, answer
        entries = json.loads(manifest.read_text())
        for e in entries:
            e.update(
                question="What is the source of the sound?",
                answer="The source of this sound in this scene is people belly laughing.",
            )
        (tmp_path / "testdata_formatted.json").write_text(json.dumps(entries))
        settings = EvalSettings(
            task="avssd",
            savebench=str(tmp_path),
            media_root=str(tmp_path),
            judge_url=f"http://127.0.0.1:{server.server_port}/v1",
            judge_model="judge",
        )
        results = run_eval(settings, tmp_path / "run", pipe=pipe).results
    finally:
        server.shutdown()
    assert results["metrics"][0]["name"] == "accuracy (LLM judge, App. D prompt)"
    assert results["metrics"][0]["value"] == 1.0 and len(prompts) == 2
    assert 'mentioned in answer "The source of this sound in this scene is people belly laughing."' in prompts[0]


# ---------------------------------------------------------------------------------------------- report


@needs_media
def test_report_tables_json_and_chart(runs, tmp_path, capsys):
    assert main(["eval", "report", str(runs), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Single-modal tasks (paper Table 2)" in md and "## Audio-visual tasks (paper Table 3)" in md
    paper_rows = [line for line in md.splitlines() if line.startswith("| video-SALMONN 13B (paper) |")]
    assert paper_rows[0] == "| video-SALMONN 13B (paper) | 2.6% | 49.7 | 49.6% | 89.6 | 37.8% | 44.8% |"
    assert paper_rows[1] == "| video-SALMONN 13B (paper) | 7.7% | 49.8% | 70.5% | 47.6% | 79.7% |"
    assert "| tiny (audio masked) |" in md and "| tiny (level 1 zeroed) |" in md
    assert "paper Table 5: 0.5-s level only (level 1 zeroed)" in md
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {(r["task"], r["diagnostics"]["label"]) for r in summary["runs"]} == {
        ("avsr", ""),
        ("asr", ""),
        ("avsr", "audio masked"),
        ("avsr", "level 1 zeroed"),
    }
    assert summary["paper"]["avsr"] == {"metric": "WER", "value": 0.077}
    with Image.open(tmp_path / "report" / "chart.png") as img:
        img.verify()
        assert img.format == "PNG" and img.size[0] >= 480
    assert "| asr | tiny | WER |" in capsys.readouterr().out


def test_report_of_unmerged_run_says_merge(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(InputError, match="not merged yet; run `videosalmonn eval merge"):
        write_report([tmp_path], tmp_path / "report")


# ---------------------------------------------------------------------------------------------- prepare


@needs_media
def test_prepare_lists_missing_media_and_source(tmp_path, capsys):
    manifest = how2(tmp_path, 3, missing=1)
    assert main(["eval", "prepare", "--task", "avsr", "--manifest", str(manifest), "--media-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "6 files: 4 present, 2 missing (1 of 3 samples incomplete)" in out
    assert f"avsr-0002  {tmp_path / 'how2' / 'gone.mp4'}" in out and "How2" in out
    assert main(["eval", "prepare", "--task", "asr", "--media-root", str(librispeech(tmp_path, 2))]) == 0
    out = capsys.readouterr().out
    assert "2 files: 2 present, 0 missing" in out and "openslr.org/12" in out


def test_prepare_without_manifest_names_the_source(tmp_path, capsys):
    assert main(["eval", "prepare", "--task", "avqa-ego4d", "--savebench", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ego4d_qa.json: manifest not found" in err and "ego4d-data.org" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- requests


@needs_media
@pytest.mark.parametrize(
    "mode, span, expected",
    [
        ("auto", (2.0, 4.0), (2.0, 4.0)),  # the file runs past the span: a source video, cut it
        ("auto", (0.0, 23.5), None),  # the file is about the span's length: a pre-cut clip
        ("auto", (300.0, 320.0), None),  # the file ends before the span starts: a pre-cut clip
        ("cut", (300.0, 320.0), (300.0, 320.0)),
        ("whole", (2.0, 4.0), None),
    ],
)
def test_spans(mode, span, expected):
    sample = BenchmarkSample("s", "q", ("a",), video=DEMO_VIDEO, audio=DEMO_WAV, span=span)
    request = request_for(sample, EvalSettings(task="avqa-ego4d", spans=mode))
    assert (None if request.start is None else (request.start, request.end)) == expected


def test_requests_history_masks_and_video_audio():
    avsd = BenchmarkSample("d", "and then?", ("he leaves",), video=Path("x.mp4"), history=(("who?", "a man"),))
    request = request_for(avsd, EvalSettings(task="avsd", mask="audio"))
    assert request.prompt == (Turn("user", "who?"), Turn("assistant", "a man"), Turn("user", "and then?"))
    assert request.modality_mask == (1.0, 0.0) and request.video == "x.mp4"
    plain = BenchmarkSample("v", "why?", ("because",), video=Path("x.mp4"))
    assert request_for(plain, EvalSettings(task="video-qa", mask="video")).modality_mask == (0.0, 1.0)
    assert request_for(plain, EvalSettings(task="video-qa")).video_audio is False  # official: video only
    assert request_for(plain, EvalSettings(task="music-avqa")).video_audio is True  # its sound is the audio
    assert request_for(plain, EvalSettings(task="video-qa", video_audio=True)).video_audio is True


def test_settings_errors_and_task_options(tmp_path, monkeypatch):
    monkeypatch.delenv("VIDEOSALMONN_SAVEBENCH", raising=False)
    with pytest.raises(InputError, match="unknown task 'asr2'"):
        EvalSettings(task="asr2")
    with pytest.raises(InputError, match="--judge-url applies to the avssd task only"):
        EvalSettings(task="asr", judge_url="http://localhost:8000/v1")
    manifest = tmp_path / "avsd.json"
    manifest.write_text(json.dumps([{"image_name": ["a.mp4", "a.wav"], "conversation": [["q1", "a1"], ["q2", "a2"]]}]))
    assert len(select_samples(EvalSettings(task="avsd", manifest=str(manifest)))) == 1
    assert len(select_samples(EvalSettings(task="avsd", manifest=str(manifest), task_options=("all_turns=true",)))) == 2
    with pytest.raises(InputError, match="takes key=value options all_turns"):
        select_samples(EvalSettings(task="avsd", manifest=str(manifest), task_options=("turns=all",)))
    with pytest.raises(InputError, match="give --savebench"):
        EvalSettings(task="avsr").manifest_path()
