"""The `mini` visual tower's pretraining: frame targets read from the scene, a resumable run, and loading the result."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from videosalmonn.checkpoint import load_model
from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.savemini import towers
from videosalmonn.savemini.generate import WorldSpec, make_world
from videosalmonn.savemini.labels import CHARS, IGNORE, decode_text, encode_text, frame_targets
from videosalmonn.savemini.scene import OnScreenText, Scene, VisualObject
from videosalmonn.savemini.towers import (
    STATE_FILE,
    TOWERS_FILE,
    TowerRecipe,
    build_tower,
    probe_loss,
    step_clips,
    train_towers,
    visual_clips,
)

# the tiny preset's visual tower, without the instruction (as `mini`), so a run takes seconds
TINY = ModelConfig.from_name("tiny", ["encoders.image_qformer.use_instruction=false"])


def scene() -> Scene:
    star = VisualObject("o0", "star", "red", "large", 0.0, 2.0, (0.1, 0.5), (0.9, 0.5), flashes=(1.0,))
    ring = VisualObject("o1", "ring", "cyan", "small", 1.5, 3.0, (0.5, 0.8), (0.5, 0.8))
    word = OnScreenText("kettle", "yellow", 0.5, 2.5, (0.5, 0.2))
    return Scene("s", "video", 3.0, background="navy", objects=(star, ring), texts=(word,))


def test_frame_targets_follow_the_scene():
    t0 = frame_targets(scene(), 0.2)  # the red star alone, on the left, not flashing, no word yet
    red, cyan = 0, 7  # COLOURS order
    assert t0["present"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert t0["shape"][red] == 3 and t0["shape"][cyan] == IGNORE  # star
    assert (t0["x"][red], t0["y"][red], t0["size"][red]) == (0, 1, 2)
    assert t0["flash"][red] == 0 and t0["text"][0] == 0 and (t0["chars"] == IGNORE).all()
    assert t0["background"][0] == 2  # navy
    t1 = frame_targets(scene(), 1.55)  # flashing, now right of centre; the ring has appeared; the word is up
    assert t1["present"][[red, cyan]].tolist() == [1, 1] and t1["flash"][red] == 1 and t1["flash"][cyan] == 0
    assert t1["x"][red] == 2 and t1["shape"][cyan] == 7 and t1["y"][cyan] == 2
    assert t1["text"][0] == 1 and decode_text(t1["chars"]) == "kettle" and t1["text_colour"][0] == 3


def test_text_codes_round_trip_and_refuse_what_they_cannot_label():
    for text in ("a", "zebra42", "x" * 12, "9070"):
        ids = encode_text(text)
        assert decode_text(ids) == text
        assert (ids[len(text) + 1 :] == IGNORE).all()
    assert len(CHARS) == 36
    for bad in ("x" * 13, "hé", "two words"):
        with pytest.raises(ValueError):
            encode_text(bad)


def test_step_clips_cover_an_epoch_without_repeats():
    recipe = TowerRecipe(clips_per_step=4, seed=3)
    epoch = [i for s in range(5) for i in step_clips(20, s, recipe)]
    assert sorted(epoch) == list(range(20))
    assert step_clips(20, 5, recipe) != step_clips(20, 0, recipe)  # the next epoch is shuffled again
    assert step_clips(20, 2, recipe) == step_clips(20, 2, recipe)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    make_world(out, WorldSpec(seed=1, n_train=24, n_val=12, n_test=0), workers=1, progress=False)
    return out


def test_a_run_trains_saves_and_resumes_to_the_same_tower(world, tmp_path, monkeypatch):
    recipe = TowerRecipe(steps=4, clips_per_step=2, frames_per_clip=2, checkpoint_every=2, warmup_steps=1)
    whole = train_towers(world, TINY, tmp_path / "whole", recipe, log=lambda _: None)
    file = tmp_path / "whole" / TOWERS_FILE
    assert whole["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "whole" / "towers.json").read_text())["sha256"] == whole["sha256"]
    assert set(whole["validation"]) >= {"present", "shape", "background", "text"}
    trained = load_file(str(file))
    start = {f"encoder.vision.{k}": v for k, v in build_tower(TINY).state_dict().items()}
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in trained)  # it learned something

    # a run killed after its step-2 state resumes there and ends with the same weights
    half = tmp_path / "half"
    calls = []

    def dies_at_step_three(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return probe_loss(*args)

    monkeypatch.setattr(towers, "probe_loss", dies_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        train_towers(world, TINY, half, recipe, log=lambda _: None)
    monkeypatch.undo()
    logs = []
    train_towers(world, TINY, half, recipe, log=logs.append)
    assert logs[0] == "resuming at step 2 of 4"
    resumed = load_file(str(half / TOWERS_FILE))
    assert all(torch.allclose(resumed[k], trained[k], atol=1e-6) for k in trained)
    assert (half / STATE_FILE).is_file()


def test_visual_clips_reads_only_the_split_asked(world):
    train, val = visual_clips(world, "train"), visual_clips(world, "val")
    assert train and val and all(c.scene.id.startswith("train-") for c in train)
    assert all(c.path.is_file() and c.path.suffix in (".mp4", ".jpg") for c in train + val)


def test_trained_towers_load_into_the_model(tmp_path):
    cfg = TINY.replace("weights.random_towers=[instructblip]")
    tower = build_tower(cfg)
    state = {f"encoder.vision.{k}": torch.randn_like(v) for k, v in tower.state_dict().items()}
    save_file(state, tmp_path / "t.safetensors")
    model = load_model(cfg.replace(f"weights.towers={tmp_path / 't.safetensors'}"))
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v)

    # a tower the config does not list as trained here is refused, naming it
    beats = {"encoder.beats.x": torch.zeros(1)}
    save_file(beats, tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match="beats"):
        load_model(cfg.replace(f"weights.towers={tmp_path / 'b.safetensors'}"))
    # and a tower given in part is refused too
    save_file(dict(list(state.items())[:-1]), tmp_path / "part.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        load_model(cfg.replace(f"weights.towers={tmp_path / 'part.safetensors'}"))


def test_a_delta_may_carry_the_trained_towers(tmp_path):
    from videosalmonn.checkpoint import trainable_state

    cfg = TINY.replace("weights.random_towers=[instructblip]")
    model = load_model(cfg)
    towers = {f"encoder.vision.{k}": torch.full_like(v, 0.5) for k, v in model.encoder.vision.state_dict().items()}
    trained = {k: torch.full_like(v, 0.25) for k, v in trainable_state(model).items()}
    save_file({**towers, **trained}, tmp_path / "mini.safetensors")
    loaded = load_model(cfg.replace(f"weights.delta={tmp_path / 'mini.safetensors'}")).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in {**towers, **trained}.items())
    assert np.isclose(float(loaded[next(iter(trained))].mean()), 0.25)


def test_a_delta_with_another_sha256_than_the_config_names_is_refused(tmp_path):
    from videosalmonn.checkpoint import save_trainable

    model = load_model(TINY)
    save_trainable(model, tmp_path / "d.safetensors")
    digest = hashlib.sha256((tmp_path / "d.safetensors").read_bytes()).hexdigest()
    load_model(TINY.replace(f"weights.delta={tmp_path / 'd.safetensors'}", f"weights.delta_sha256={digest}"))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(TINY.replace(f"weights.delta={tmp_path / 'd.safetensors'}", f"weights.delta_sha256={'f' * 64}"))


def test_a_torn_training_state_is_a_one_line_error(world, tmp_path):
    out = tmp_path / "torn"
    out.mkdir()
    (out / STATE_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable tower-training state"):
        train_towers(world, TINY, out, TowerRecipe(steps=2), log=lambda _: None)
