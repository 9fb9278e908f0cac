"""A newcomer's first hour (issue 12): outputs tell the truth, and what the README names is accepted.

    3  random-weight outputs carry a notice        (Pipeline, Answer, CLI, server, demo page)
    4  an unusable --device is one line, exit 2
    5  checkpoints/latest and step directories are accepted everywhere a checkpoint is
    6  an export directory is a --model; a directory without model.yaml says what is expected
    8  the smoke manifests are machine-independent (running the script leaves git clean)
    9  single-file infer checks its files before building the model
   10  the eval report marks --limit runs as partial
   11  masked audio is not "present", an image is not a --video, check-official reports progress, the Python API
       prints no third-party deprecation warnings, public methods have docstrings, a missing prompt pool names
       the flag
(7, the README's training block top to bottom, is tests/test_readme_blocks.py.)
"""

from __future__ import annotations

import base64
import importlib.util
import inspect
import json
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import DEMO_FLAC, DEMO_IMAGE, GOLDEN, ROOT, needs_golden, needs_media

from videosalmonn import cli
from videosalmonn.checkpoint import save_trainable
from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError, ConfigError, InputError
from videosalmonn.pipeline import (
    RANDOM_WEIGHTS,
    Answer,
    Pipeline,
    random_weights_notice,
    resolve_device,
    trained_weights_file,
)
from videosalmonn.types import Request

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline.from_pretrained("tiny", device="cpu")


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videosalmonn", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


# ------------------------------------------------------------------------------------ 3: random weights


def test_notice_names_the_random_parts_and_is_absent_with_every_weight():
    notice = random_weights_notice(ModelConfig.from_name("tiny"))
    assert notice.startswith(f"{RANDOM_WEIGHTS}: tiny") and "connector + LoRA" in notice and "LLM" in notice
    assert "\n" not in notice
    every = ["weights.delta=d.pt", "weights.beats=b.pt"]  # the 13B preset names the other parts itself
    assert random_weights_notice(ModelConfig.from_name("video-salmonn-13b", every)) is None
    only_delta = random_weights_notice(ModelConfig.from_name("tiny", ["weights.delta=d.safetensors"]))
    assert "connector" not in only_delta and "vision encoder" in only_delta
    # mini: pretrained LLM and Whisper; a trained delta (holding the visual tower) with BEATs frozen at its seeded
    # init, which the delta was trained with: no notice; without a delta its connector and towers are random
    assert random_weights_notice(ModelConfig.from_name("mini", ["weights.delta=mini.safetensors"])) is None
    bare = random_weights_notice(ModelConfig.from_name("mini"))
    assert "connector + LoRA" in bare and "vision encoder" in bare and "BEATs" in bare and "LLM" not in bare


def test_tiny_answers_carry_the_notice(pipe):
    assert pipe.notice == random_weights_notice(pipe.cfg)
    answer = pipe.answer("Describe the video", video=str(CLIP))
    assert answer.notice == pipe.notice and answer.to_json()["notice"] == pipe.notice
    quiet = Answer("text", [], answer.coverage, 0)  # a model with its weights has no notice: no key at all
    assert "notice" not in quiet.to_json()


def test_server_response_and_health_carry_the_notice(pipe):
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from videosalmonn.serving import ServeSettings, create_app
    from videosalmonn.serving.app import NOTICE_HEADER

    url = "data:video/mp4;base64," + base64.b64encode(CLIP.read_bytes()).decode()
    body = {
        "model": "tiny",
        "max_tokens": 4,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "video_url", "video_url": {"url": url}}],
            }
        ],
    }
    with TestClient(create_app(pipe, ServeSettings())) as client:
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.headers[NOTICE_HEADER] == pipe.notice
        assert reply.json()["videosalmonn"]["notice"] == pipe.notice
        assert client.get("/health").json()["notice"] == pipe.notice
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
            assert stream.headers[NOTICE_HEADER] == pipe.notice
            last = [line for line in stream.iter_lines() if '"finish_reason":"' in line.replace(" ", "")][-1]
        assert json.loads(last.removeprefix("data: "))["videosalmonn"]["notice"] == pipe.notice


def test_demo_page_says_which_model_and_the_notice(pipe):
    from videosalmonn.demo.app import header

    text = header(pipe, "tiny")
    assert "**Model:** `tiny`" in text and pipe.notice in text
    assert "runs/x/merged" in header(pipe, "runs/x/merged") and "config `tiny`" in header(pipe, "runs/x/merged")


@needs_media
@pytest.mark.slow
def test_cli_prints_the_notice_on_stderr_and_in_the_json():
    out = run_cli("infer", "--model", "tiny", "--video", str(CLIP), "--prompt", "Describe the video", "--json")
    assert out.returncode == 0, out.stderr
    assert f"notice: {RANDOM_WEIGHTS}: tiny" in out.stderr
    assert json.loads(out.stdout)["notice"].startswith(RANDOM_WEIGHTS)


# ------------------------------------------------------------------------------------------ 4: --device


def test_unusable_devices_are_one_line_input_errors():
    for name in ("gpu", "cuda:x", "xla", ""):
        with pytest.raises(InputError, match="device"):
            resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no cuda device is available to this build"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is usable here")
def test_cli_device_cuda_on_a_cpu_build_is_exit_2(capsys):
    assert cli.main(["infer", "--device", "cuda", "--video", str(CLIP), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device 'cuda'" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- 5: checkpoints/latest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, pipe):
    """A run directory as training leaves it: checkpoints/step-000004/ (trainable.safetensors whose weights
    differ from the seeded init) and `latest` naming it."""
    root = tmp_path_factory.mktemp("run")
    step = root / "checkpoints" / "step-000004"
    step.mkdir(parents=True)
    model = pipe.model
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.5)
        save_trainable(model, step / "trainable.safetensors")
        trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        for n, p in model.named_parameters():
            if n in saved:
                p.copy_(saved[n])
    (root / "checkpoints" / "latest").write_text("step-000004")
    return root, trained


def test_every_name_of_a_checkpoint_resolves_to_its_directory(run_dir):
    from videosalmonn.training.checkpointing import resolve_checkpoint

    root, _ = run_dir
    step = root / "checkpoints" / "step-000004"
    for name in (step, step / "trainable.safetensors", root / "checkpoints" / "latest", root / "checkpoints", root):
        assert resolve_checkpoint(name) == step, name
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        resolve_checkpoint(root / "nope")
    for name in (step, root / "checkpoints" / "latest"):
        assert trained_weights_file(name) == step / "trainable.safetensors"
    assert trained_weights_file("x.pt").name == "x.pt"
    with pytest.raises(CheckpointError, match="a directory without trainable.safetensors"):
        trained_weights_file(root)


def test_weights_delta_may_be_latest_or_a_step_directory(run_dir):
    root, trained = run_dir
    for delta in (root / "checkpoints" / "latest", root / "checkpoints" / "step-000004"):
        loaded = Pipeline.from_pretrained("tiny", [f"weights.delta={delta}"], device="cpu")
        params = dict(loaded.model.named_parameters())
        assert all(torch.equal(params[n], t) for n, t in trained.items()), delta


def test_export_and_resume_from_take_latest(run_dir, tmp_path, monkeypatch, capsys):
    import videosalmonn.training.loop as loop
    from videosalmonn.weights import read_tensors

    root, trained = run_dir
    latest = root / "checkpoints" / "latest"
    assert cli.main(["export", str(latest), "--official-delta", str(tmp_path / "delta.pt")]) == 0
    assert len(read_tensors(tmp_path / "delta.pt")) == len(trained)
    seen = {}

    def fake_train(cfg, resume):
        seen["resume"] = resume
        return loop.TrainSummary(cfg.output_dir, 0, [], None)

    monkeypatch.setattr(loop, "train", fake_train)
    config = str(ROOT / "configs" / "train" / "tiny-smoke.yaml")
    assert cli.main(["train", "--config", config, "--resume-from", str(latest)]) == 0
    assert seen["resume"] == root / "checkpoints" / "step-000004"
    capsys.readouterr()


# ------------------------------------------------------------------------------- 6: export dir as --model


@pytest.fixture(scope="module")
def merged(pipe, tmp_path_factory):
    from videosalmonn.training.export import export_merged

    root = tmp_path_factory.mktemp("export")
    export_merged(pipe.model, pipe.tokenizer, root / "merged")
    moved = root / "moved"
    shutil.move(root / "merged", moved)  # an export can move: its paths are relative to it
    return moved


def test_an_export_directory_is_a_model_from_any_directory(merged, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for source in (merged, merged / "model.yaml"):
        cfg = ModelConfig.from_name(str(source))
        assert cfg.llm.lora is None and cfg.weights.llm == str(merged / "llm")
        assert cfg.weights.delta == str(merged / "connector.safetensors") and cfg.weights.tokenizer == cfg.weights.llm
    overridden = ModelConfig.from_name(str(merged), ["weights.delta=mine.safetensors"])  # overrides: as written
    assert overridden.weights.delta == "mine.safetensors"


def test_a_directory_without_model_yaml_says_what_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="must hold model.yaml .*export --merged"):
        ModelConfig.from_name(str(tmp_path))
    assert ModelConfig.from_name("tiny").name == "tiny"


def test_the_tiny_merged_export_loads_as_a_model(merged):
    assert ModelConfig.from_name(str(merged)).weights.random_towers == ("instructblip", "whisper", "beats")
    Pipeline.from_pretrained(str(merged), device="cpu")


# ---------------------------------------------------------------------------- 8: git stays clean


def test_smoke_manifests_are_what_the_script_writes_on_any_machine(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_smoke_manifest", ROOT / "scripts" / "make_smoke_manifest.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    media = tmp_path / "elsewhere" / "media"  # another machine's media folder: the manifests name files only
    media.mkdir(parents=True)
    for name in (script.VIDEO, script.WAV, script.IMAGE, script.FLAC):
        (media / name).write_bytes(b"x")
    assert script.main(["--media", str(media), "--check"]) == 0  # the tracked copies, unchanged
    out = tmp_path / "out"
    assert script.main(["--media", str(media), "--out", str(out)]) == 0
    for name in ("tiny-smoke.jsonl", "tiny-smoke-official.json"):
        assert (out / name).read_text() == (ROOT / "configs" / "train" / name).read_text()
        assert str(tmp_path) not in (out / name).read_text()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert script.main(["--media", str(media), "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # up to date: not rewritten
    assert "up to date" in capsys.readouterr().out


def test_runs_and_a_linked_venv_are_ignored_by_git():
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "runs/tiny-smoke/delta.pt", "runs/tiny-smoke/merged/model.yaml", ".venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == ["runs/tiny-smoke/delta.pt", "runs/tiny-smoke/merged/model.yaml", ".venv"]


# --------------------------------------------------------------------------- 9: files before the model


def test_infer_checks_its_files_before_building_the_model(tmp_path, monkeypatch, capsys):
    def must_not_build(*args, **kwargs):
        raise AssertionError("the model was built before the files were checked")

    monkeypatch.setattr(Pipeline, "from_pretrained", must_not_build)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = {
        ("--video", str(tmp_path / "typo.mp4")): "typo.mp4: file not found",
        ("--audio", str(empty)): "empty.wav: file is empty",
        ("--image", str(tmp_path)): "is a directory",
        ("--video", str(DEMO_IMAGE)): "an image file (by its suffix), given as --video; give it as --image",
        ("--image", str(CLIP)): "a video file (by its suffix), given as --image; give it as --video",
        ("--video", str(DEMO_FLAC)): "given as --video; give it as --audio",
    }
    for (flag, path), expected in cases.items():
        assert cli.main(["infer", "--model", "tiny", flag, path, "--prompt", "x"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------ 10: partial eval report


@needs_media
def test_report_marks_a_limit_run_as_partial(pipe, tmp_path):
    from videosalmonn.evaluation.report import write_report
    from videosalmonn.evaluation.runner import run_eval
    from videosalmonn.evaluation.settings import EvalSettings

    chapter = tmp_path / "LibriSpeech" / "test-clean" / "1272" / "128104"
    chapter.mkdir(parents=True)
    lines = []
    for i in range(3):
        shutil.copy(DEMO_FLAC, chapter / f"1272-128104-{i:04d}.flac")
        lines.append(f"1272-128104-{i:04d} MISTER QUILTER IS THE APOSTLE")
    (chapter / "1272-128104.trans.txt").write_text("\n".join(lines) + "\n")
    settings = EvalSettings(task="asr", media_root=str(tmp_path / "LibriSpeech"), limit=1)
    run_eval(settings, tmp_path / "runs" / "asr", batch_size=1, pipe=pipe)
    files = write_report([tmp_path / "runs"], tmp_path / "report")
    md = files["markdown"].read_text()
    assert "| 1 / 1 (partial: limit 1 of 3) |" in md
    row = next(line for line in md.splitlines() if line.startswith("| tiny |"))
    assert "§" in row
    run = json.loads(files["json"].read_text())["runs"][0]
    assert (run["limit"], run["manifest_samples"], run["partial"]) == (1, 3, True)


# ------------------------------------------------------------------------------------------- 11: smaller


def test_masked_audio_is_not_reported_present(pipe):
    plain, masked = pipe.answer_batch(
        [
            Request("What do you hear?", video=str(CLIP)),
            Request("What do you hear?", video=str(CLIP), modality_mask=(1, 0)),
        ]
    )
    assert plain.coverage.audio_present and not masked.coverage.audio_present
    assert any(n.startswith("audio masked") for n in masked.to_json()["notes"])
    assert not any(n.startswith("audio masked") for n in plain.to_json()["notes"])


def test_loading_prints_no_third_party_deprecation_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Pipeline.from_pretrained("tiny", device="cpu")
    noisy = [w for w in caught if any(lib in w.filename for lib in ("transformers", "peft"))]
    assert not noisy, [str(w.message) for w in noisy]


def test_public_methods_have_docstrings():
    for cls in (Pipeline, Answer):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"
    assert inspect.getdoc(Pipeline)


def test_a_missing_prompt_pool_names_the_flag():
    from videosalmonn.training.mixing import check_prompt_keys, load_prompt_pool

    with pytest.raises(ConfigError, match="--prompt-pool FILE"):
        load_prompt_pool(ROOT / "no-such-pool.json")

    class Item:
        source, turns = "m.jsonl:1", [Request("<asr>").turns()[0]]

    with pytest.raises(InputError, match=r"data.mixing.prompt_pool in the training YAML, or --prompt-pool FILE"):
        check_prompt_keys([Item()], {})


@needs_golden
@pytest.mark.slow
def test_check_official_reports_progress_per_case():
    from videosalmonn.official.parity import check_official

    lines = []
    report = check_official(str(GOLDEN), cases=("audioimage",), progress=lines.append)
    assert lines == ["case 1/1: audioimage (0 stages checked so far)"] and report.values
