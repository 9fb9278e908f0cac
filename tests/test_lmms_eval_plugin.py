"""The lmms-eval plugin (videosalmonn/integrations): its entry point; lmms-eval's own `Instance` requests -> Requests
and batched `answer_batch` calls (a video's audio kept, PIL images, audio arrays, frames, gen_kwargs), loglikelihood
and multi-round requests; `lmms-eval --model videosalmonn` end to end. Tiny preset, CPU.

lmms-eval is not in the test extra: 0.7.3 pins av<16 and pulls torchvision, wandb (protobuf<7) and ~50 packages
(README: Evaluating with lmms-eval). The mapping and batching tests need only the package; the tests marked
`needs_lmms` drive the plugin with lmms-eval's own objects and skip unless lmms-eval imports (e.g. after
`pip install --no-deps lmms-eval==0.7.3 loguru`); the command-line one also needs its evaluation dependencies.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from importlib.metadata import entry_points

import av
import numpy as np
import pytest
import torch
from conftest import DEMO_FLAC, DEMO_IMAGE, ROOT
from PIL import Image

from videosalmonn.config import GenerationConfig
from videosalmonn.errors import ConfigError, InputError
from videosalmonn.integrations import LMMS_CLASS, LMMS_MODEL_ID
from videosalmonn.integrations.lmms_requests import (
    Job,
    continuation_scores,
    cut_at_stop,
    generate,
    generation_for,
    media_fields,
    score,
)
from videosalmonn.media.audio import load_audio
from videosalmonn.model import DTYPES
from videosalmonn.pipeline import Pipeline
from videosalmonn.prompting.conversation import IGNORE
from videosalmonn.types import Request

pytestmark = pytest.mark.usefixtures("one_thread")

VIDEO = str(ROOT / "tests" / "assets" / "clip2s.mp4")  # 2 s, with an audio track
HAS_LMMS = importlib.util.find_spec("lmms_eval") is not None
needs_lmms = pytest.mark.skipif(
    not HAS_LMMS, reason="lmms-eval is not installed (it cannot join the test extra: README, Evaluating with lmms-eval)"
)


def sine(seconds: float, rate: int, dtype=np.float32) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return (wave * 32767).astype(np.int16) if dtype == np.int16 else wave.astype(dtype)


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline.from_pretrained("tiny", device="cpu")


@pytest.fixture
def calls(pipe, monkeypatch) -> list[tuple[list[Request], GenerationConfig, list]]:
    """Every `answer_batch` call of `pipe`: (requests, generation, answers)."""
    record = []
    real = pipe.answer_batch

    def spy(requests, generation=None, clips=None, **kwargs):
        answers = real(requests, generation, clips=clips, **kwargs)
        record.append((list(requests), generation, answers))
        return answers

    monkeypatch.setattr(pipe, "answer_batch", spy)
    return record


def job(prompt: str, *visuals, max_new_tokens: int = 4, **gen_kwargs) -> Job:
    generation, until = generation_for(
        GenerationConfig(num_beams=1, repetition_penalty=1.0),
        {
            "max_new_tokens": max_new_tokens,
            **gen_kwargs,
        },
    )
    return Job(prompt, lambda: list(visuals), generation, until, label=prompt)


# ------------------------------------------------------------------------------ entry point and gen_kwargs


def test_entry_point_names_the_manifest():
    (ep,) = [ep for ep in entry_points(group="lmms_eval.models") if ep.name == LMMS_MODEL_ID]
    assert ep.value == "videosalmonn.integrations:lmms_eval_models"


def test_gen_kwargs_override_the_config_key_by_key():
    released = GenerationConfig()  # 5 beams, repetition penalty 1.5, 512 tokens
    gen, until = generation_for(released, {"max_new_tokens": 7, "temperature": 0, "do_sample": False, "until": "\n"})
    assert (gen.max_new_tokens, gen.do_sample, gen.num_beams, gen.repetition_penalty) == (7, False, 5, 1.5)
    assert until == ("\n",)
    gen, until = generation_for(released, {"temperature": 0.7, "top_p": 0.9, "until": ["</s>", ""], "image_x": 1})
    assert (gen.do_sample, gen.temperature, gen.top_p, gen.num_beams) == (True, 0.7, 0.9, 1)
    assert until == ("</s>",)
    gen, _ = generation_for(released, {"num_beams": 1, "top_p": None, "do_sample": "false", "temperature": 0.5})
    assert (gen.num_beams, gen.do_sample, gen.top_p, gen.temperature) == (1, False, 1.0, 1.0)
    assert generation_for(released, None) == (released, ())
    with pytest.raises(ConfigError, match="beams"):
        generation_for(released, {"do_sample": True, "num_beams": 3})
    with pytest.raises(InputError, match="until"):
        generation_for(released, {"until": 3})


def test_cut_at_stop():
    assert cut_at_stop("yes. ASSISTANT: no", ["ASSISTANT:", "."]) == "yes"
    assert cut_at_stop("yes", ["\n"]) == "yes"


# ------------------------------------------------------------------------------ media


def test_media_fields_write_in_memory_media(tmp_path):
    image = Image.new("RGB", (40, 30), "red")
    fields = media_fields([image, {"array": sine(1.5, 22050), "sampling_rate": 22050}], tmp_path)
    assert set(fields) == {"image", "audio"}
    assert Image.open(fields["image"]).size == (40, 30)
    wave = load_audio(fields["audio"]).samples  # 16 kHz
    assert abs(len(wave) / 16000 - 1.5) < 0.01 and abs(float(wave.abs().max()) - 0.3) < 0.02
    stereo_int16 = np.stack([sine(1.0, 8000, np.int16)] * 2)  # (channels, n) integer PCM
    wave = load_audio(media_fields([{"array": stereo_int16, "sampling_rate": 8000}], tmp_path / "b")["audio"]).samples
    assert abs(len(wave) / 16000 - 1.0) < 0.01 and abs(float(wave.abs().max()) - 0.3) < 0.02
    assert media_fields([VIDEO, DEMO_FLAC], tmp_path) == {"video": VIDEO, "audio": str(DEMO_FLAC)}


def test_several_images_are_one_video_at_two_fps(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green")] + [Image.new("L", (16, 8))]
    fields = media_fields(frames, tmp_path)
    with av.open(fields["video"]) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 3 and [f.time for f in decoded] == [0.0, 0.5, 1.0]
    assert {(f.width, f.height) for f in decoded} == {(32, 32)}


def test_media_the_model_cannot_take_is_refused(tmp_path):
    with pytest.raises(InputError, match="one video"):
        media_fields([VIDEO, VIDEO], tmp_path)
    with pytest.raises(InputError, match="one audio stream"):
        media_fields([{"array": sine(1, 16000), "sampling_rate": 16000}] * 2, tmp_path)
    with pytest.raises(InputError, match="sampling_rate"):
        media_fields([{"array": sine(1, 16000)}], tmp_path)
    with pytest.raises(InputError, match="a ndarray"):
        media_fields([np.zeros((4, 4, 3))], tmp_path)


# ------------------------------------------------------------------------------ batches (no lmms-eval needed)


def test_jobs_are_batched_by_decoding_and_answered_in_order(pipe, calls):
    jobs = [
        job("What happens?", VIDEO, max_new_tokens=3),
        job("What is it?", Image.new("RGB", (48, 48), "blue"), max_new_tokens=5),
        job("What do you hear?", {"array": sine(1.0, 16000), "sampling_rate": 16000}, max_new_tokens=3),
        job("Describe it.", VIDEO, max_new_tokens=3),
    ]
    texts = generate(pipe, jobs, batch_size=2)
    assert [(len(reqs), gen.max_new_tokens) for reqs, gen, _ in calls] == [(2, 3), (1, 3), (1, 5)]
    by_prompt = {r.prompt: a for reqs, _, answers in calls for r, a in zip(reqs, answers)}
    assert texts == [by_prompt[j.prompt].text for j in jobs]
    assert generate(pipe, [jobs[2]], batch_size=1) == texts[2:3]  # batched = one by one


def test_a_request_the_model_cannot_take_is_answered_empty(pipe, calls, caplog):
    texts = generate(pipe, [job("No media?"), job("What happens?", VIDEO)], batch_size=2)
    assert texts[0] == "" and len(calls) == 1 and len(calls[0][0]) == 1
    assert "No media?: no media" in caplog.text


def test_scores_are_the_answer_tokens_log_probability(pipe):
    prompts = [("What happens?", " A"), ("What is it?", " a red square"), ("Say nothing.", "")]
    scored = [Job(p, lambda: [VIDEO], pipe.cfg.generation, answer=a) for p, a in prompts]
    scores = score(pipe, scored, batch_size=3)
    assert scores[2] == (0.0, True)  # nothing to score
    for (p, a), (logprob, _) in zip(prompts[:2], scores):
        request = Request(p, video=VIDEO, answer=a)
        batch, _ = pipe.prepare([request], [pipe.load(request)], side="right")
        with torch.no_grad():
            logits = pipe.model(batch.to(pipe.device, DTYPES[pipe.cfg.dtype]), answer_logits_only=False).logits[0]
        labels = batch.prompt.labels[0]
        positions = [t for t in range(1, len(labels)) if labels[t] != IGNORE][:-1]  # without the closing </s>
        expected = sum(float(logits[t - 1].float().log_softmax(-1)[labels[t]]) for t in positions)
        assert logprob < 0 and math.isclose(logprob, expected, rel_tol=1e-4, abs_tol=1e-4)
    request = Request("What is it?", video=VIDEO, answer=" a red square")
    ((alone, greedy),) = continuation_scores(pipe, [request], [pipe.load(request)])
    assert math.isclose(alone, scores[1][0], rel_tol=1e-4) and greedy == scores[1][1]  # batched = alone
    assert score(pipe, [Job("x", tuple, pipe.cfg.generation, answer=" A")], 1) == [(-math.inf, False)]


# ------------------------------------------------------------------------------ lmms-eval's own objects


@pytest.fixture(scope="module")
def lm(pipe):
    """The plugin made as lmms-eval makes it (`create_from_arg_string` + the CLI's settings), on the shared
    pipeline (`Pipeline.from_pretrained` is recorded instead of loading the tiny model again)."""
    if not HAS_LMMS:
        pytest.skip("lmms-eval is not installed")
    from videosalmonn.integrations import lmms_eval as plugin

    loads = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugin.Pipeline, "from_pretrained", lambda *args: loads.append(args) or pipe)
        model = plugin.VideoSalmonnLmms.create_from_arg_string(
            "model=tiny,device=cpu,batch_size=2,overrides=generation.seed=3;generation.num_beams=1",
            {"batch_size": 1, "max_batch_size": None, "device": None},
        )
    assert loads == [("tiny", ["generation.seed=3", "generation.num_beams=1"], "cpu")]
    return model


def instance(kind: str, args: tuple, doc_id: int = 0):
    from lmms_eval.api.instance import Instance

    return Instance(request_type=kind, arguments=args, idx=0, metadata={"task": "vs", "doc_id": doc_id, "repeats": 1})


def doc_to_visual(doc: dict) -> list:
    return doc["visuals"]


def ask(lm, docs: list[dict], gen_kwargs: dict | None = None) -> list[str]:
    """generate_until on one request per doc (the task "vs", split "test")."""
    lm.task_dict = {"vs": {"test": docs}}
    gen = {"max_new_tokens": 4, **(gen_kwargs or {})}
    requests = [
        instance("generate_until", (d.get("q", "What happens?"), dict(gen), doc_to_visual, i, "vs", "test"), i)
        for i, d in enumerate(docs)
    ]
    return lm.generate_until(requests)


@needs_lmms
def test_the_registry_resolves_the_entry_point(lm):
    import lmms_eval.models

    from videosalmonn.integrations.lmms_eval import VideoSalmonnLmms

    assert f"{VideoSalmonnLmms.__module__}.{VideoSalmonnLmms.__name__}" == LMMS_CLASS
    assert lmms_eval.models.get_model("videosalmonn") is VideoSalmonnLmms
    assert lmms_eval.models.get_model("video_salmonn") is VideoSalmonnLmms
    assert (lm.batch_size, lm.device.type, lm.is_simple) == (2, "cpu", True)  # model_args over the CLI's batch 1


@needs_lmms
def test_a_video_request_keeps_its_audio_track(lm, calls, monkeypatch):
    (text,) = ask(lm, [{"visuals": [VIDEO]}])
    ((request,), gen, (answer,)) = calls[0]
    assert (request.video, request.video_audio, request.audio) == (VIDEO, True, None)
    assert answer.coverage.audio_present and answer.coverage.frames > 1 and text == answer.text
    assert gen.max_new_tokens == 4
    monkeypatch.setattr(lm, "video_audio", False)  # model_args video_audio=false
    ask(lm, [{"visuals": [VIDEO]}])
    assert not calls[1][2][0].coverage.audio_present


@needs_lmms
def test_images_audio_arrays_and_frames(lm, calls):
    docs = [
        {"visuals": [Image.open(DEMO_IMAGE)], "q": "What is in the picture?"},
        {"visuals": [{"array": sine(2.0, 44100), "sampling_rate": 44100, "path": "x.wav"}], "q": "What is it?"},
        {"visuals": [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue")]},
    ]
    texts = ask(lm, docs)
    answers = [a for _, _, batch in calls for a in batch]
    image, audio, frames = (a.coverage for a in answers)
    assert (image.frames, image.audio_present) == (1, False)
    assert (audio.frames, audio.audio_present, round(audio.audio_seconds, 1)) == (0, True, 2.0)
    assert (frames.frames, frames.audio_present) == (3, False)
    assert all(isinstance(t, str) for t in texts) and len(texts) == 3


@needs_lmms
def test_gen_kwargs_are_honoured(lm, calls):
    docs = [{"visuals": [VIDEO], "q": "What happens?"}, {"visuals": [VIDEO], "q": "Describe it."}]
    long = ask(lm, docs, {"max_new_tokens": 8})
    ask(lm, docs, {"max_new_tokens": 2, "temperature": 0, "do_sample": False})
    assert all(len(a.token_ids) <= 2 for a in calls[1][2]) and calls[1][1].max_new_tokens == 2
    assert all(len(a.token_ids) <= 8 for a in calls[0][2]) and len(long[0]) >= 4
    stop = long[0][2:4]
    cut = ask(lm, docs, {"max_new_tokens": 8, "until": [stop]})
    assert cut[0] == long[0][: long[0].find(stop)].strip() and cut[1] == cut_at_stop(long[1], [stop])


@needs_lmms
def test_requests_are_batched_and_answered_in_order(lm, calls):
    docs = [{"visuals": [VIDEO], "q": q} for q in ("What happens?", "Who speaks?", "Describe it.")]
    docs.append({"visuals": [Image.open(DEMO_IMAGE)], "q": "What is it?"})
    docs.append({"visuals": [], "q": "Nothing to see?"})
    texts = ask(lm, docs)
    assert [len(reqs) for reqs, _, _ in calls] == [2, 2]  # batch_size 2; the doc without media is not asked
    answered = {r.prompt: a.text for reqs, _, answers in calls for r, a in zip(reqs, answers)}
    assert texts == [answered.get(d["q"], "") for d in docs] and texts[-1] == ""
    assert [ask(lm, [docs[1]])[0], ask(lm, [docs[3]])[0]] == [texts[1], texts[3]]  # one by one: the same


@needs_lmms
def test_loglikelihood_requests(lm, pipe):
    docs = [{"visuals": [VIDEO], "target": " yes"}, {"visuals": [VIDEO]}]
    lm.task_dict = {"vs": {"test": docs}}
    requests = [
        instance("loglikelihood", ("Is it a video?", lambda d: d["target"], doc_to_visual, 0, "vs", "test")),
        instance("loglikelihood", ("Is it a video?", " yes", doc_to_visual, 1, "vs", "test"), 1),
        instance("loglikelihood", ("", " yes")),  # acc_mutual_info's unconditional request: no media
    ]
    (a, greedy_a), b, c = lm.loglikelihood(requests)
    assert math.isfinite(a) and a < 0 and isinstance(greedy_a, bool)
    assert math.isclose(b[0], a, rel_tol=1e-4) and b[1] == greedy_a and c == (-math.inf, False)


@needs_lmms
def test_multi_round_requests(lm):
    seen = []

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        seen.append((list(previous_output), round_idx, previous_round_info))
        if round_idx == 2:
            return None, None, True, previous_output, None
        return None, f"And round {round_idx}?", False, previous_output, {"round": round_idx}

    lm.task_dict = {"vs": {"test": [{"visuals": [VIDEO]}]}}
    args = ("What happens?", {"max_new_tokens": 3}, doc_to_visual, doc_to_text, 0, "vs", "test")
    ((first, second),) = lm.generate_until_multi_round([instance("generate_until_multi_round", args)])
    assert seen == [([first], 1, None), ([first, second], 2, {"round": 1})]
    assert first == ask(lm, [{"visuals": [VIDEO]}], {"max_new_tokens": 3})[0]


@needs_lmms
@pytest.mark.slow
def test_the_lmms_eval_command_runs_a_task(tmp_path):
    """`python -m lmms_eval --model videosalmonn ...` on a two-document local task (`--include_path`)."""
    try:
        import lmms_eval.__main__  # noqa: F401  the CLI's own imports: datasets, evaluate, sacrebleu, ...
    except ImportError as e:
        pytest.skip(f"lmms-eval's command line does not import here: {e}")
    task = tmp_path / "task"
    task.mkdir()
    docs = [{"video": VIDEO, "question": q} for q in ("What happens?", "What do you hear?")]
    (task / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (task / "vs_smoke.yaml").write_text(
        f"task: vs_smoke\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {task / 'docs.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_visual: !function utils.doc_to_visual\n"
        "doc_to_text: !function utils.doc_to_text\ndoc_to_target: question\n"
        "process_results: !function utils.process_results\n"
        "generation_kwargs:\n  max_new_tokens: 5\n  temperature: 0\n  do_sample: false\n"
        "metric_list:\n  - metric: answered\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (task / "utils.py").write_text(
        "def doc_to_visual(doc):\n    return [doc['video']]\n\n\n"
        "def doc_to_text(doc, lmms_eval_specific_kwargs=None):\n    return doc['question']\n\n\n"
        "def process_results(doc, results):\n    return {'answered': float(bool(results[0].strip()))}\n"
    )
    command = [sys.executable, "-m", "lmms_eval", "--model", "videosalmonn", "--model_args", "model=tiny,device=cpu"]
    command += ["--tasks", "vs_smoke", "--include_path", str(task), "--batch_size", "2"]
    command += ["--output_path", str(tmp_path / "out"), "--log_samples"]
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (results,) = (tmp_path / "out").rglob("*_results.json")
    assert json.loads(results.read_text())["results"]["vs_smoke"]["answered,none"] == 1.0
    (samples,) = (tmp_path / "out").rglob("*_samples_vs_smoke.jsonl")
    assert len(samples.read_text().splitlines()) == 2
