"""`savemini make`: the same seed gives the same world (manifests, decoded frames and samples), an interrupted run
resumes to the same world, another spec in the same folder is refused, and `savemini eval` scores every task."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from videosalmonn.errors import InputError
from videosalmonn.media.audio import load_audio
from videosalmonn.media.video import sample_frames
from videosalmonn.savemini import generate
from videosalmonn.savemini.frames import FONT_PATH
from videosalmonn.savemini.generate import WorldSpec, make_world

pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (apt-get install espeak-ng)"),
    pytest.mark.skipif(not FONT_PATH.is_file(), reason=f"{FONT_PATH} missing (apt-get install fonts-dejavu-core)"),
]

SPEC = WorldSpec(seed=3, n_train=13, n_val=0, n_test=13)  # one task cycle per split: every task once or twice


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("savemini") / "world"
    make_world(out, SPEC, workers=2, progress=False)
    return out


def manifest_files(root: Path) -> list[Path]:
    return sorted(
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix in {".json", ".jsonl", ".csv", ".txt"}
    )


def assert_same_world(a: Path, b: Path) -> None:
    files = manifest_files(a)
    assert files == manifest_files(b)
    different = [str(f) for f in files if f.name != "scenes.jsonl" and not filecmp.cmp(a / f, b / f, shallow=False)]
    assert different == []
    scenes = lambda root: sorted((root / "scenes.jsonl").read_text().splitlines())  # noqa: E731 (order: finish time)
    assert scenes(a) == scenes(b)


def test_every_task_has_test_samples(world):
    info = json.loads((world / "world.json").read_text())
    assert set(info["eval"]) == set(generate.world.TASKS)
    assert all(n > 0 for n in info["samples"]["test"].values())
    assert info["clips"] == {"train": 13, "val": 0, "test": 13}


@pytest.mark.slow
def test_same_seed_same_world_same_media(world, tmp_path):
    again = tmp_path / "again"
    make_world(again, SPEC, workers=1, progress=False)  # other worker count: clips finish in another order
    assert_same_world(world, again)
    videos = sorted((world / "media").glob("*.mp4"))[:3]
    audios = sorted((world / "media").glob("*.flac"))[:3]
    assert videos and audios
    for v in videos:
        a, b = (sample_frames(root / "media" / v.name, "uniform").frames for root in (world, again))
        assert np.array_equal(np.asarray(a), np.asarray(b))
    for f in audios:
        a, b = (load_audio(root / "media" / f.name).samples for root in (world, again))
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_other_seed_other_world(world, tmp_path):
    other = tmp_path / "other"
    make_world(other, WorldSpec(seed=4, n_train=0, n_val=0, n_test=13), workers=1, progress=False)
    a = (world / "test" / "nextqa_test.json").read_text()
    b = (other / "test" / "nextqa_test.json").read_text()
    assert a != b


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_world(world, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real = generate._make_clip
    calls = {"n": 0}

    def dies_after_five(job):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of the run
        return real(job)

    monkeypatch.setattr(generate, "_make_clip", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        make_world(out, SPEC, workers=1, progress=False)
    assert len((out / "scenes.jsonl").read_text().splitlines()) == 5
    assert not (out / "world.json").exists()
    monkeypatch.setattr(generate, "_make_clip", real)
    summary = make_world(out, SPEC, workers=2, progress=False)
    assert summary.rendered == SPEC.n_train + SPEC.n_test - 5
    assert_same_world(world, out)


def test_a_torn_last_scene_line_is_rendered_again(world, tmp_path):
    out = tmp_path / "torn"
    shutil.copytree(world, out)
    lines = (out / "scenes.jsonl").read_text().splitlines(keepends=True)
    (out / "scenes.jsonl").write_text("".join(lines[:-1]) + lines[-1][:40])  # killed mid-write
    summary = make_world(out, SPEC, workers=1, progress=False)
    assert summary.rendered == 1
    assert_same_world(world, out)


def test_another_spec_in_the_same_folder_is_refused(world):
    with pytest.raises(InputError, match="holds another world.*n_test 13 -> 14"):
        make_world(world, WorldSpec(seed=3, n_train=13, n_val=0, n_test=14), progress=False)


def test_a_folder_that_is_not_a_world_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a SAVE-mini world"):
        make_world(tmp_path, SPEC, progress=False)


@pytest.mark.slow
def test_savemini_eval_scores_every_task_with_the_tiny_model(world, tmp_path):
    from videosalmonn.savemini.evaluate import evaluate_world

    scores = evaluate_world(world, "tiny", tmp_path / "eval", limit=1, batch_size=4, device="cpu", progress=False)
    assert {s.task for s in scores} == set(generate.world.TASKS)
    assert all(s.scored == 1 and s.failed == 0 for s in scores)
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert "| video-qa | accuracy |" in summary and "25.0%" in summary
