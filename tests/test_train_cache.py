"""The feature cache: cached features are the on-the-fly ones bit for bit, collation matches the encoder on a whole
batch, and a stale cache (other preprocessing, other encoder weights, an edited media file) is never read."""

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from conftest import DEMO_FLAC, DEMO_IMAGE, DEMO_VIDEO, DEMO_WAV, needs_media

from videosalmonn.collate import collate_media
from videosalmonn.errors import InputError
from videosalmonn.training.cache import FeatureCache, fingerprint
from videosalmonn.training.config import DataConfig, ModelRef, SourceConfig, TrainConfig
from videosalmonn.training.data import TrainCollator, TrainData
from videosalmonn.training.features import collate_features
from videosalmonn.training.loop import build_model, prepare_data

pytestmark = [needs_media, pytest.mark.usefixtures("one_thread")]


def manifest(path, flac=DEMO_FLAC, only_speech=False):
    rows = [
        {
            "id": "clip",
            "video": str(DEMO_VIDEO),
            "audio": str(DEMO_WAV),
            "start": 2.0,
            "end": 4.5,
            "prompt": "Describe the video.",
            "answer": "A band plays.",
        },
        {"id": "cover", "image": str(DEMO_IMAGE), "prompt": "What is the title?", "answer": "A calendar."},
        {"id": "speech", "audio": str(flac), "prompt": "Transcribe.", "answer": "Mister Quilter."},
        {
            "id": "cover-speech",
            "image": str(DEMO_IMAGE),
            "audio": str(flac),
            "prompt": "What is said?",
            "answer": "Mister Quilter.",
        },
    ]
    rows = rows[2:3] if only_speech else rows
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp, flac=DEMO_FLAC, only_speech=False, limits="none"):
    data = {
        "sources": (SourceConfig(str(manifest(tmp / "m.jsonl", flac, only_speech))),),
        "feature_cache": str(tmp / "cache"),
    }
    model = ModelRef("tiny", (f"media.limits={limits}",))
    return TrainConfig(output_dir=str(tmp / "run"), model=model, data=DataConfig(**data))


def uncached(data: TrainData) -> TrainData:
    """The same training set reading media and running the encoders instead of the cache."""
    other = copy.copy(data)
    other.cache = None
    return other


def built(tmp_path_factory, limits: str):
    tmp = tmp_path_factory.mktemp(f"cache-{limits}")
    cfg = config(tmp, limits=limits)
    accelerator = Accelerator(cpu=True)
    model, encoder, tokenizer, itok, featurizer = build_model(cfg, accelerator)
    data = prepare_data(cfg, cfg.model_config(), tokenizer, itok, featurizer, accelerator)
    return cfg, accelerator, data, tokenizer, itok, featurizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield built(tmp_path_factory, "none")
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def setup_official(tmp_path_factory):
    """`media.limits: official`: the audio keeps the official padding to whole 30-s chunks."""
    yield built(tmp_path_factory, "official")
    AcceleratorState._reset_state(reset_partial_state=True)


def setup_of(request, limits: str):
    return request.getfixturevalue("setup" if limits == "none" else "setup_official")


# the demo audio: a 2.5-s span (5 slots of 25 encoder frames) and a 5.855-s speech clip (12 slots)
AUDIO_ROWS = {"none": {125, 300}, "official": {1500}}


@pytest.mark.slow
@pytest.mark.parametrize("limits", ["none", "official"])
def test_cached_features_equal_on_the_fly(request, limits):
    cfg, _, cached, tokenizer, itok, featurizer = setup_of(request, limits)
    on_the_fly = uncached(cached)
    builder = TrainCollator(cfg.model_config(), tokenizer, None, featurizer)
    examples = {}
    for position in range(200):  # one example of every (sample, rule) the stream produces
        example = cached.example(position)
        examples.setdefault((example.index, example.rule), example)
    rules = {rule for _, rule in examples}
    for example in examples.values():
        a = cached.load(example).cached
        b = builder.features(on_the_fly.load(example))
        for name in ("visual", "whisper", "beats"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or torch.equal(x, y), (example.rule, name)
    assert {"paired", "image-single-task", "image-combined", "as-written"} <= rules
    rows = {cached.load(e).cached.whisper.shape[0] for e in examples.values() if e.audio is not None}
    assert rows == AUDIO_ROWS[limits]  # the cache holds the audio's own slots (official: whole 30-s chunks)


@pytest.mark.parametrize("limits", ["none", "official"])
def test_collated_features_match_the_encoder_on_the_batch(request, limits):
    cfg, _, data, tokenizer, itok, featurizer = setup_of(request, limits)
    model_cfg = cfg.model_config()
    examples = [data.example(p) for p in range(4)]
    loaded = [uncached(data).load(e) for e in examples]
    ours = collate_features([data.load(e).cached for e in examples], [e.modality_mask for e in examples], model_cfg)
    ids, mask = itok([e.instruction for e in examples])
    media = collate_media(
        [x.visual.frames if x.visual else None for x in loaded],
        [e.is_image for e in examples],
        [x.audio.features if x.audio else None for x in loaded],
        ids,
        mask,
        [e.modality_mask for e in examples],
    )
    reference = featurizer.encoder(media)
    for name in ("visual", "whisper", "beats", "visual_slots", "audio_slots", "is_image", "modality_mask"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name), atol=1e-5, rtol=1e-5, msg=name)
    assert int(ours.audio_slots.max()) * 25 in AUDIO_ROWS[limits]


def test_stale_cache_is_detected(tmp_path, setup):
    cfg, _, data, tokenizer, itok, featurizer = setup
    root = cfg.data.feature_cache
    old = tmp_path / "old-cache"  # format 1 stored every started 30-s chunk (1500 rows each): never misread
    old.mkdir()
    index = json.loads((Path(root) / "index.json").read_text())
    index["fingerprint"]["format"] = 1
    (old / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"stale feature cache.*format \(1 -> 2\)"):
        FeatureCache.open(old, fingerprint(cfg.model_config(), featurizer.encoder, featurizer.dtype, itok))
    other_media = cfg.model_config().replace("media.frame_sampling=official")
    with pytest.raises(InputError, match=r"stale feature cache.*media.frame_sampling \(\"uniform\" -> \"official\"\)"):
        FeatureCache.open(root, fingerprint(other_media, featurizer.encoder, featurizer.dtype, itok))
    encoder = copy.deepcopy(featurizer.encoder)
    with torch.no_grad():
        next(encoder.parameters()).add_(1e-3)
    with pytest.raises(InputError, match=r"stale feature cache.*encoder_weights_sha256"):
        FeatureCache.open(root, fingerprint(cfg.model_config(), encoder, featurizer.dtype, itok))


def test_edited_media_and_missing_entries(tmp_path, setup):
    _, accelerator, _, tokenizer, itok, featurizer = setup
    flac = tmp_path / "speech.flac"
    shutil.copy(DEMO_FLAC, flac)
    cfg = config(tmp_path, flac, only_speech=True)
    first = prepare_data(cfg, cfg.model_config(), tokenizer, itok, featurizer, accelerator)
    entries = len(first.cache.entries)
    shutil.copy(DEMO_WAV, flac)  # same path, other content (and size)
    strict = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, build_cache=False))
    with pytest.raises(InputError, match=r"1 cache entries missing, e.g. .*m.jsonl:1 \(audio\)"):
        prepare_data(strict, cfg.model_config(), tokenizer, itok, featurizer, accelerator)
    again = prepare_data(cfg, cfg.model_config(), tokenizer, itok, featurizer, accelerator)
    assert len(again.cache.entries) == entries + 1  # the edited file got a new key; nothing stale was read
    assert isinstance(again, TrainData)
