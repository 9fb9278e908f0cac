"""Hub references of single-file weights (`owner/repo/path/in/repo`) and `videosalmonn download`, against an
emulated hub: downloads copy from local folders into the Hugging Face cache layout, as a first online run; the
offline runs use huggingface_hub itself on that cache (or on an empty one)."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import HUB_SHA as SHA
from conftest import TINY_BEATS_OFFICIAL, EmulatedHub
from safetensors.torch import save_file

from videosalmonn.checkpoint import export_official_delta, load_delta, load_model, trainable_state
from videosalmonn.cli import main
from videosalmonn.config import ModelConfig
from videosalmonn.download import size_text
from videosalmonn.encoders.beats import BEATs, BEATsConfig, load_beats
from videosalmonn.errors import CheckpointError
from videosalmonn.hub import HubFile
from videosalmonn.weights import BEATS_FILE, DELTA_FILE, RELEASED, hub_file, resolve_file

PRESETS = Path(__file__).resolve().parents[1] / "videosalmonn" / "presets"
BIG = "video-salmonn-13b"


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig.from_name("tiny"), "cpu")


# ------------------------------------------------------------------------------ REPO_ID/FILENAME references


def test_hub_file_references(tmp_path, monkeypatch):
    assert HubFile.parse("tsinghua-ee/Video-SALMONN/pytorch_model_4_5001.pt") == HubFile(
        "tsinghua-ee/Video-SALMONN", "pytorch_model_4_5001.pt"
    )
    space = HubFile.parse(f"spaces/someone/demo@{SHA}/beats/{BEATS_FILE}")
    assert space == HubFile("someone/demo", f"beats/{BEATS_FILE}", "space", SHA)
    assert str(space) == f"spaces/someone/demo@{SHA}/beats/{BEATS_FILE}"
    assert HubFile.parse("datasets/org/data/a/b.pt") == HubFile("org/data", "a/b.pt", "dataset")
    for not_a_file in ("lmsys/vicuna-13b-v1.5", "bert-base-uncased", DELTA_FILE, f"ckpt/{DELTA_FILE}"):
        assert HubFile.parse(not_a_file) is None, not_a_file
    # a local path is never looked up on the hub: one that exists, starts with . / ~, or is a Path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "repo").mkdir(parents=True)
    (tmp_path / "org" / "repo" / "w.pt").write_bytes(b"")
    for local in ("org/repo/w.pt", "./org/repo/x.pt", "/abs/org/repo/x.pt", "~/org/repo/x.pt", Path("a/b/c.pt")):
        assert hub_file(local) is None, local
    assert hub_file("org/repo/x.pt") == HubFile("org/repo", "x.pt")


def test_delta_by_hub_reference_resolves_and_loads(hub, tiny, tmp_path):
    """`weights.delta=REPO_ID/FILENAME`: fetched into the HF cache on a first run, then loaded as the official .pt."""
    with torch.no_grad():
        trained = load_model(ModelConfig.from_name("tiny", ["seed=5"]), "cpu")  # other weights than `tiny`'s
    (tmp_path / "remote").mkdir()
    export_official_delta(trained, tmp_path / "remote" / DELTA_FILE)
    hub.add("tsinghua-ee/Video-SALMONN", tmp_path / "remote")
    ref = f"tsinghua-ee/Video-SALMONN/{DELTA_FILE}"

    from videosalmonn.pipeline import Pipeline

    pipe = Pipeline.from_pretrained("tiny", [f"weights.delta={ref}"], device="cpu")
    assert hub.downloaded == [ref]
    loaded = trainable_state(pipe.model)
    assert loaded.keys() == trainable_state(trained).keys()
    assert all(torch.equal(v, loaded[k]) for k, v in trainable_state(trained).items())
    assert not all(torch.equal(v, loaded[k]) for k, v in trainable_state(tiny).items())
    cached = resolve_file(ref)
    assert cached.is_relative_to(hub.cache) and hub.downloaded == [ref]  # second time: from the cache


def test_beats_by_hub_reference_in_a_space(hub, tmp_path):
    cfg = BEATsConfig(patch_dim=32, width=80, depth=2, num_heads=4, mlp_width=160)
    official_cfg = TINY_BEATS_OFFICIAL
    state = BEATs(cfg).state_dict()
    (tmp_path / "space" / "beats").mkdir(parents=True)
    torch.save({"cfg": official_cfg, "model": state}, tmp_path / "space" / "beats" / BEATS_FILE)
    hub.add("someone/demo", tmp_path / "space", repo_type="space")
    model, loaded_cfg = load_beats(f"spaces/someone/demo@{SHA}/beats/{BEATS_FILE}")
    assert loaded_cfg == cfg
    assert torch.equal(model.encoder.pos_conv.weight, state["encoder.pos_conv.weight"])
    assert (hub.cache / "spaces--someone--demo" / "snapshots" / SHA / "beats" / BEATS_FILE).is_file()
    with pytest.raises(CheckpointError, match=r"the hub has no repo someone/demo \(or it is private"):
        load_beats(f"someone/demo/beats/{BEATS_FILE}")  # a model repo of that name does not exist


def test_missing_weight_files_are_one_line_naming_them(hub, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "remote").mkdir()
    hub.add("tsinghua-ee/Video-SALMONN", tmp_path / "remote")
    cases = {
        # on the hub, but no such file there
        f"tsinghua-ee/Video-SALMONN/{DELTA_FILE}": rf"^tsinghua-ee/Video-SALMONN/{DELTA_FILE}: "
        rf"tsinghua-ee/Video-SALMONN has no file {DELTA_FILE}; no such local file either$",
        # a local file name of the released delta: where it is published
        f"ckpt/{DELTA_FILE}": rf"^ckpt/{DELTA_FILE}: checkpoint file not found \(the video-SALMONN delta is on "
        rf"the hub: tsinghua-ee/Video-SALMONN/{DELTA_FILE}\)$",
        # no repo of that name: the relative path it may have meant is named too
        f"ckpt/MultiResQFormer/{DELTA_FILE}": r"the hub has no repo ckpt/MultiResQFormer .*; no such local file "
        r"either \(the video-SALMONN delta is on the hub",
    }
    for ref, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as err:
            load_delta(tiny, ref)
        assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError) as err:
        load_beats(BEATS_FILE)
    assert str(err.value).startswith(f"{BEATS_FILE}: checkpoint file not found (BEATs is published by Microsoft")
    assert "github.com/microsoft/unilm/tree/master/beats" in str(err.value) and "\n" not in str(err.value)


def test_local_path_wins_over_a_hub_reference(hub, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "tsinghua-ee" / "Video-SALMONN" / DELTA_FILE
    local.parent.mkdir(parents=True)
    export_official_delta(tiny, local)
    load_delta(tiny, f"tsinghua-ee/Video-SALMONN/{DELTA_FILE}")  # the hub has no such repo: never asked
    assert hub.downloaded == []


# ------------------------------------------------------------------------------------ videosalmonn download


def bert_vocab(folder: Path, words: int) -> None:
    """A BERT uncased vocabulary of `words` entries (the special tokens first), saved by BertTokenizer."""
    from transformers import BertTokenizer

    src = folder.parent / f".{folder.name}-src"
    src.mkdir(parents=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (src / "vocab.txt").write_text("\n".join(special + [f"w{i}" for i in range(words - len(special))]) + "\n")
    BertTokenizer.from_pretrained(str(src)).save_pretrained(str(folder))


def safetensors_shards(folder: Path, shards: dict[str, list[str]]) -> None:
    """`model-0000i-of-0000n.safetensors` holding the given keys, and their `model.safetensors.index.json`."""
    n, weight_map = len(shards), {}
    for i, keys in enumerate(shards.values(), 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file({k: torch.zeros(64) for k in keys}, str(folder / name))
        weight_map.update(dict.fromkeys(keys, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def released_hub(hub: EmulatedHub, root: Path) -> dict[str, Path]:
    """Every repo `video-salmonn-13b` names, in its real layout, with tiny files. Returns repo -> folder."""
    folders = {name: root / name.replace("/", "--") for name in ("llm", "ib", "whisper", "delta", "space")}
    for f in folders.values():
        f.mkdir(parents=True)
    llm = folders["llm"]  # Vicuna: .bin shards + index, a SentencePiece tokenizer
    (llm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (llm / "generation_config.json").write_text("{}")
    shutil.copy(PRESETS / "tiny" / "llm" / "tokenizer.model", llm / "tokenizer.model")
    (llm / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    for i in (1, 2, 3):
        torch.save({f"model.layers.{i}.w": torch.zeros(100 * i)}, llm / f"pytorch_model-0000{i}-of-00003.bin")
    index = {f"model.layers.{i}.w": f"pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)}
    (llm / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": index}))
    ib = folders["ib"]  # InstructBLIP: its LLM in shards of its own, the BERT tokenizer in qformer_tokenizer/
    (ib / "config.json").write_text(json.dumps({"model_type": "instructblip"}))
    bert_vocab(ib / "qformer_tokenizer", 30522)
    safetensors_shards(
        ib,
        {
            "vision": ["vision_model.a", "query_tokens"],
            "qformer": ["qformer.b"],
            "llm1": ["language_model.c"],
            "llm2": ["language_model.d"],
        },
    )
    whisper = folders["whisper"]
    (whisper / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    save_file(
        {"model.encoder.a": torch.zeros(8), "model.decoder.b": torch.zeros(8)}, str(whisper / "model.safetensors")
    )
    torch.save({"x": torch.zeros(3)}, folders["delta"] / DELTA_FILE)
    (folders["space"] / "beats").mkdir()
    torch.save({"cfg": {}, "model": {}}, folders["space"] / "beats" / BEATS_FILE)
    hub.add("lmsys/vicuna-13b-v1.5", llm)
    hub.add("Salesforce/instructblip-vicuna-13b", ib)
    hub.add("openai/whisper-large-v2", whisper)
    hub.add(RELEASED["delta"].repo_id, folders["delta"])
    hub.add(RELEASED["beats"].repo_id, folders["space"], repo_type="space")
    return folders


def sizes(folder: Path, *patterns: str) -> str:
    return size_text(
        sum(p.stat().st_size for p in folder.rglob("*") if any(fnmatch.fnmatch(p.name, g) for g in patterns))
    )


def printed(capsys) -> tuple[dict[str, str], list[str], str]:
    """({config key: its line}, the other stdout lines, stderr)."""
    out, err = capsys.readouterr()
    lines = out.splitlines()
    return (
        {ln.split(":")[0]: ln for ln in lines if ln.startswith("weights.")},
        [ln for ln in lines if not ln.startswith("weights.")],
        err,
    )


def test_download_fetches_every_component_and_prints_its_size(hub, tmp_path, capsys):
    folders = released_hub(hub, tmp_path / "remote")
    assert main(["download", "--model", BIG]) == 0
    lines, other, err = printed(capsys)
    expected = {  # key: (source, files, size of what must have come)
        "weights.llm": (
            "lmsys/vicuna-13b-v1.5",
            6,
            sizes(folders["llm"], "*.bin", "config.json", "generation_config.json", "*.index.json"),
        ),
        "weights.tokenizer": ("lmsys/vicuna-13b-v1.5", 2, sizes(folders["llm"], "tokenizer*")),
        "weights.instructblip": (
            "Salesforce/instructblip-vicuna-13b",
            4,  # config, index, the vision and Q-Former shards: never its LLM's
            sizes(folders["ib"], "config.json", "*.index.json", "model-00001-*", "model-00002-*"),
        ),
        "weights.qformer_tokenizer": (
            "Salesforce/instructblip-vicuna-13b qformer_tokenizer/",
            len(list((folders["ib"] / "qformer_tokenizer").iterdir())),
            sizes(folders["ib"] / "qformer_tokenizer", "*"),
        ),
        "weights.whisper": ("openai/whisper-large-v2", 2, sizes(folders["whisper"], "*")),
        "weights.beats": (str(RELEASED["beats"]), 1, sizes(folders["space"], BEATS_FILE)),
        "weights.delta": (str(RELEASED["delta"]), 1, sizes(folders["delta"], DELTA_FILE)),
    }
    assert list(lines) == list(expected), err
    for key, (source, files, size) in expected.items():
        assert lines[key].startswith(f"{key}: {source} (hub) -> {hub.cache}"), lines[key]
        assert lines[key].endswith(f": {files} file{'s' * (files != 1)}, {size}"), lines[key]
    fetched_ib = sorted(f.rsplit("/", 1)[1] for f in hub.downloaded if f.startswith("Salesforce/") and "model-" in f)
    assert fetched_ib == ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors"]
    assert {f"lmsys/vicuna-13b-v1.5/pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)} <= set(hub.downloaded)
    assert other == [
        f"not set in {BIG}, fetched from their release: run with --set weights.beats={RELEASED['beats']} "
        f"--set weights.delta={RELEASED['delta']}"
    ]
    assert err == ""

    # what came is what an offline run finds: huggingface_hub's own functions on that cache, no emulation
    import huggingface_hub

    from videosalmonn.download import download

    with pytest.MonkeyPatch.context() as m:
        m.setattr(huggingface_hub, "snapshot_download", huggingface_hub._snapshot_download.snapshot_download)
        m.setattr(huggingface_hub, "hf_hub_download", huggingface_hub.file_download.hf_hub_download)
        again: list[str] = []
        assert download(ModelConfig.from_name(BIG), again.append) == []
    assert again[:-1] == list(lines.values())


def test_download_names_each_component_it_cannot_fetch(hub, tmp_path, capsys):
    released_hub(hub, tmp_path / "remote")
    del hub.repos[("model", RELEASED["delta"].repo_id)]
    (tmp_path / "remote" / "whisper" / "model.safetensors").unlink()  # a repo without its weights
    assert main(["download", "--model", BIG]) == 1
    lines, other, err = printed(capsys)
    assert list(lines) == ["weights.llm", "weights.tokenizer", "weights.instructblip", "weights.qformer_tokenizer"] + [
        "weights.beats"
    ]
    assert other == []  # no "run with" line: it is not all there
    errors = err.splitlines()
    assert errors[0].startswith("error: weights.whisper: openai/whisper-large-v2: no weights found")
    assert errors[1] == (
        f"error: weights.delta: {RELEASED['delta']}: the hub has no repo {RELEASED['delta'].repo_id} (or it is "
        "private: log in with `hf auth login`); no such local file either"
    )
    assert errors[2] == f"2 component(s) of {BIG} not fetched (HF_HUB_OFFLINE=1: from the cache only)"
    assert "Traceback" not in err and len(errors) == 3


def test_download_offline_without_a_cache_is_a_clean_error(hf_cache, capsys):
    """huggingface_hub itself, HF_HUB_OFFLINE=1, an empty cache: one line per component, exit code 1."""
    assert main(["download", "--model", BIG]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    errors = err.splitlines()
    keys = ["llm", "tokenizer", "instructblip", "qformer_tokenizer", "whisper", "beats", "delta"]
    assert [e.split(":")[1].strip() for e in errors[:-1]] == [f"weights.{k}" for k in keys]
    assert all("not in the Hugging Face cache, and HF_HUB_OFFLINE=1 (unset it to download)" in e for e in errors[:-1])
    assert errors[-1] == f"7 component(s) of {BIG} not fetched (HF_HUB_OFFLINE=1: from the cache only)"
    assert not any(hf_cache.iterdir())


def test_download_of_a_random_model_fetches_nothing(capsys):
    assert main(["download", "--model", "tiny"]) == 0
    assert capsys.readouterr().out == "tiny: names no weights to download (every part is seeded random)\n"
