"""HF-native save and load of a trained model: `save_pretrained` -> `from_pretrained` (a directory, a hub id),
`push_to_hub` and the peft adapter export.

The hub is never reached: downloads go through an emulated `snapshot_download` that copies a local folder into
the Hugging Face cache layout (as tests/test_download.py does), and uploads through `HfApi.create_repo` /
`upload_folder` replaced by recorders. "Trained" is the tiny model with every trainable tensor moved off its
seeded init (LoRA B starts at zero), so a round trip that fell back to the init would not pass.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import HUB_SHA as SHA
from safetensors import safe_open
from safetensors.torch import load, load_file, save_file

from videosalmonn.checkpoint import SAVED_WEIGHTS, save_pretrained, save_trainable
from videosalmonn.cli import main
from videosalmonn.config import MODEL_FILE, ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.model import trainable_names
from videosalmonn.pipeline import Pipeline
from videosalmonn.rng import seeded
from videosalmonn.training.export import export_peft
from videosalmonn.types import Coverage, MediaClip, Request

REPO = "someone/tiny-trained"


def clip(seed: int = 0) -> MediaClip:
    g = torch.Generator().manual_seed(seed)
    frames, wave = torch.randn(3, 3, 224, 224, generator=g), torch.randn(16000, generator=g) * 0.1
    return MediaClip(frames, False, wave, Coverage(frames=3, audio_present=True))


def perturb(pipe: Pipeline, seed: int = 1, scale: float = 0.2) -> Pipeline:
    """Every trainable tensor moved off its init, deterministically: a stand-in for a few training steps."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in pipe.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return pipe


def logits(pipe: Pipeline) -> torch.Tensor:
    batch, _ = pipe.prepare([Request("Describe the video"), Request("What do you hear?")], [clip(0), clip(1)])
    with torch.no_grad():
        return pipe.model(batch).logits


def answers(pipe: Pipeline) -> list[list[int]]:
    requests = [Request("Describe the video"), Request("What do you hear?")]
    return [a.token_ids for a in pipe.answer_batch(requests, clips=[clip(0), clip(1)])]


@pytest.fixture(scope="module")
def trained() -> Pipeline:
    return perturb(Pipeline.from_pretrained("tiny", device="cpu"))


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Path:
    return trained.save_pretrained(tmp_path_factory.mktemp("saved") / "tiny-trained")


@pytest.fixture
def hub(hub, monkeypatch, tmp_path):
    """conftest's emulated hub, run from tmp_path: `someone/tiny-trained` is no local path."""
    monkeypatch.chdir(tmp_path)
    return hub


@pytest.fixture
def uploads(monkeypatch) -> list[dict]:
    """HfApi's create_repo and upload_folder replaced by recorders (each upload: its repo and files' bytes)."""
    from huggingface_hub import HfApi

    calls: list[dict] = []

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False, **_):
        calls.append({"create": repo_id, "repo_type": repo_type, "private": private, "exist_ok": exist_ok})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None, **_):
        folder = Path(folder_path)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        calls.append({"upload": repo_id, "repo_type": repo_type, "message": commit_message, "files": files})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{SHA}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


# ------------------------------------------------------------------------------ save_pretrained -> from_pretrained


def test_round_trip_gives_the_trained_model(trained, saved, tmp_path):
    assert sorted(p.name for p in saved.iterdir()) == [SAVED_WEIGHTS, MODEL_FILE]
    with safe_open(str(saved / SAVED_WEIGHTS), framework="pt") as f:
        assert sorted(f.keys()) == sorted(trainable_names(trained.model))  # the trained tensors, no frozen copy
    moved = Path(shutil.move(str(saved), tmp_path / "moved"))  # relative weights.delta: the directory can move
    try:
        loaded = Pipeline.from_pretrained(str(moved), device="cpu")
    finally:
        shutil.move(str(moved), saved)
    ours, theirs = trained.model.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), [k for k in ours if not torch.equal(ours[k], theirs[k])]
    assert torch.equal(logits(loaded), logits(trained))
    assert answers(loaded) == answers(trained)
    # the seeded init is a different model: a load that dropped the trained tensors would fail above
    assert not torch.allclose(logits(Pipeline.from_pretrained("tiny", device="cpu")), logits(trained))


def test_frozen_parts_are_references(trained, tmp_path, monkeypatch):
    """Hub ids and `parts:` names are written as given, local paths made absolute; no frozen weight is copied."""
    llm_dir = tmp_path / "my-llm"
    llm_dir.mkdir()
    weights = dataclasses.replace(
        trained.cfg.weights, llm="lmsys/vicuna-13b-v1.5", tokenizer="my-llm", whisper="parts:whisper-tiny.en"
    )
    model = trained.model
    original = model.cfg
    model.cfg = dataclasses.replace(original, weights=weights)
    monkeypatch.chdir(tmp_path)  # `my-llm`: a path relative to here
    try:
        out = save_pretrained(model, tmp_path / "saved")
    finally:
        model.cfg = original
    w = yaml.safe_load((out / MODEL_FILE).read_text())["weights"]
    assert w["llm"] == "lmsys/vicuna-13b-v1.5" and w["whisper"] == "parts:whisper-tiny.en"
    assert w["tokenizer"] == str(llm_dir.resolve())
    assert w["delta"] == SAVED_WEIGHTS and w["delta_sha256"] is None


def test_towers_trained_here_travel_in_the_file(tmp_path):
    """A tower trained here (`weights.towers`) is saved with the connector + LoRA, and the saved config no longer
    needs the towers file."""
    base = Pipeline.from_pretrained("tiny", ["weights.random_towers=[beats]"], device="cpu")
    towers = {f"encoder.beats.{k}": v + 0.5 for k, v in base.model.encoder.beats.state_dict().items()}
    save_file(towers, str(tmp_path / "towers.safetensors"))
    cfg = ["weights.random_towers=[beats]", f"weights.towers={tmp_path / 'towers.safetensors'}"]
    pipe = perturb(Pipeline.from_pretrained("tiny", cfg, device="cpu"))
    out = pipe.save_pretrained(tmp_path / "saved")
    (tmp_path / "towers.safetensors").unlink()
    assert yaml.safe_load((out / MODEL_FILE).read_text())["weights"]["towers"] is None
    loaded = Pipeline.from_pretrained(str(out), device="cpu")
    got = loaded.model.encoder.beats.state_dict()
    assert all(torch.equal(got[k.removeprefix("encoder.beats.")], v) for k, v in towers.items())
    assert torch.equal(logits(loaded), logits(pipe))


# ------------------------------------------------------------------------------ the hub: load by id, push


def test_load_by_hub_id(trained, saved, hub):
    hub.add(REPO, saved)
    loaded = Pipeline.from_pretrained(REPO, device="cpu")
    assert torch.equal(logits(loaded), logits(trained))
    assert Path(loaded.cfg.weights.delta).is_relative_to(hub.cache)  # read from the HF cache's snapshot
    Pipeline.from_pretrained(f"{REPO}@v1", device="cpu")
    assert hub.calls == [(REPO, None), (REPO, "v1")]
    with pytest.raises(CheckpointError, match="someone/missing: not a local path; on the hub: the hub has no repo"):
        ModelConfig.from_name("someone/missing")


def test_load_by_hub_id_offline_uses_the_cache(trained, saved, hub, monkeypatch):
    """Once downloaded, huggingface_hub's own snapshot_download (HF_HUB_OFFLINE) finds it in the cache; an id never
    downloaded is one line."""
    import huggingface_hub
    from huggingface_hub import _snapshot_download

    hub.add(REPO, saved)
    Pipeline.from_pretrained(REPO, device="cpu")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _snapshot_download.snapshot_download)
    loaded = Pipeline.from_pretrained(REPO, device="cpu")
    assert torch.equal(logits(loaded), logits(trained))
    with pytest.raises(CheckpointError, match="someone/other: .*not in the Hugging Face cache, and HF_HUB_OFFLINE"):
        Pipeline.from_pretrained("someone/other", device="cpu")


def test_push_to_hub_uploads_the_saved_directory(trained, saved, uploads, hub, tmp_path):
    url = trained.push_to_hub(REPO, private=True)
    assert url == f"https://huggingface.co/{REPO}/commit/{SHA}"
    create, upload = uploads
    assert create == {"create": REPO, "repo_type": "model", "private": True, "exist_ok": True}
    assert upload["upload"] == REPO and upload["repo_type"] == "model"
    assert sorted(upload["files"]) == [SAVED_WEIGHTS, MODEL_FILE]
    pushed_state, saved_state = load(upload["files"][SAVED_WEIGHTS]), load_file(str(saved / SAVED_WEIGHTS))
    assert pushed_state.keys() == saved_state.keys()  # (not the bytes: safetensors orders its metadata freely)
    assert all(torch.equal(pushed_state[k], saved_state[k]) for k in saved_state)
    pushed = tmp_path / "pushed"  # what the hub now holds, served back by id
    for name, data in upload["files"].items():
        (pushed / name).parent.mkdir(parents=True, exist_ok=True)
        (pushed / name).write_bytes(data)
    hub.add(REPO, pushed)
    assert torch.equal(logits(Pipeline.from_pretrained(REPO, device="cpu")), logits(trained))


def test_push_to_hub_refused_is_one_line(trained, monkeypatch):
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    def refuse(self, repo_id, **_):
        response = httpx.Response(401, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
        raise HfHubHTTPError("401 Client Error: Unauthorized", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(CheckpointError, match=rf"^{REPO}: cannot upload to the hub \(not allowed: log in"):
        trained.push_to_hub(REPO)


# ------------------------------------------------------------------------------ peft adapter


def test_peft_adapter_loads_in_peft_with_our_logits(trained, tmp_path):
    from peft import PeftModel

    out = export_peft(trained.model, tmp_path / "adapter")
    settings = json.loads((out / "adapter_config.json").read_text())
    lora = trained.cfg.llm.lora
    assert (settings["r"], settings["lora_alpha"], settings["lora_dropout"]) == (lora.r, lora.alpha, lora.dropout)
    assert sorted(settings["target_modules"]) == sorted(lora.targets) and settings["base_model_name_or_path"] is None
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert len(keys) == len([n for n in trainable_names(trained.model) if n.startswith("llm.")])
    with seeded(trained.cfg.seed + 1):  # the frozen base as `from_config` builds it, without our adapters
        base = LanguageModel.build(dataclasses.replace(trained.cfg.llm, lora=None)).model
    ids = torch.randint(3, trained.cfg.llm.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        plain = base(input_ids=ids, attention_mask=mask).logits
        peft_model = PeftModel.from_pretrained(base, str(out)).eval()
        theirs = peft_model(input_ids=ids, attention_mask=mask).logits
        ours = trained.model.llm(trained.model.llm.embed(ids), mask)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert (plain - ours).abs().max() > 1e-2  # the adapter is what makes them agree


def test_peft_export_needs_lora(tmp_path):
    pipe = Pipeline.from_pretrained("tiny", ["llm.lora=null"], device="cpu")
    with pytest.raises(CheckpointError, match="no LoRA adapters to export"):
        export_peft(pipe.model, tmp_path / "adapter")


# ------------------------------------------------------------------------------ videosalmonn export --hf --peft


def test_export_cli_writes_hf_and_peft_and_pushes(trained, tmp_path, uploads, capsys):
    step = tmp_path / "run" / "checkpoints" / "step-000010"
    save_trainable(trained.model, step / "trainable.safetensors")
    hf, adapter = tmp_path / "hf", tmp_path / "adapter"
    argv = ["export", str(step), "--hf", str(hf), "--peft", str(adapter), "--push", REPO]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"model directory: {hf}" in out and f"pushed: https://huggingface.co/{REPO}" in out
    assert (adapter / "adapter_model.safetensors").is_file()
    assert sorted(uploads[1]["files"]) == [SAVED_WEIGHTS, MODEL_FILE]
    assert torch.equal(logits(Pipeline.from_pretrained(str(hf), device="cpu")), logits(trained))
    assert main(["export", str(step), "--push", REPO]) == 2
    assert "--push uploads the --hf directory" in capsys.readouterr().err
