"""Long media in bounded memory (issue 13 item 4): decoded, encoded and through the connector piece by piece,
with the outputs of the whole-clip path.

The streamed pieces are the whole path's own computations (frame batches of `frame_batch` from the first frame,
one encoder call per 30-s chunk), so frames and features are compared with torch.equal. The connector's spans
change the row count of its matrix products, so its output is compared within 1e-6 (on the Intel Xeon here it
is bit-identical; `bench/long_media.py` reports it).
"""

from __future__ import annotations

import pytest
import torch
from conftest import DEMO_IMAGE, GOLDEN, needs_golden
from make_fixtures import CLIP2S, write_video

import videosalmonn.pipeline as P
from videosalmonn.collate import collate_media
from videosalmonn.config import ModelConfig
from videosalmonn.media import video as V
from videosalmonn.media.features import audio_features, audio_windows
from videosalmonn.model import build_connector
from videosalmonn.pipeline import Pipeline
from videosalmonn.types import AVFeatures, Request

pytestmark = pytest.mark.usefixtures("one_thread")

SECONDS = 40  # longer than one batch of 32 frames (16 s) and than one 30-s audio chunk
FPS = 5


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """40 s, 64x48 at 5 fps (200 frames, GOP of 5 s: the sampler seeks), 40 s of AAC audio."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    options = {"threads": "1", "g": str(5 * FPS), "preset": "ultrafast"}
    return write_video(path, size=(64, 48), fps=FPS, n_frames=SECONDS * FPS, options=options, audio_seconds=SECONDS)


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained("tiny", ["media.image_size=28"], device="cpu")  # small frames: quick


@pytest.fixture
def stream_everything(monkeypatch):
    """The Pipeline streams media longer than 5 s (default: 60 s)."""
    monkeypatch.setattr(P, "STREAMED_SECONDS", 5.0)


# ------------------------------------------------------------------------------------------------ frames


@pytest.mark.parametrize("policy", ["official", "uniform"])
def test_frame_batches_are_the_loaded_frames(long_video, policy):
    whole = V.load_video(long_video, policy, size=32)
    stream = V.stream_video(long_video, policy)
    batches = list(stream.batches(7, 32))
    assert [len(b) for b in batches] == [7] * (len(whole.frames) // 7) + [len(whole.frames) % 7]
    assert torch.equal(torch.cat(batches), whole.frames)
    done = stream.sampled
    assert done.frames is None and stream.frames == len(whole.frames) == 2 * SECONDS
    assert (done.times, done.clips, done.notes, done.decoder) == (whole.times, whole.clips, whole.notes, "index")
    assert done.decoded_frames == whole.decoded_frames


def test_frames_stay_uint8_until_their_batch(long_video, monkeypatch):
    calls = []
    transform = V.transform_frames

    def spy(frames, size=V.DEFAULT_SIZE):
        assert str(frames.dtype).endswith("uint8")  # RGB bytes (a numpy stack)
        calls.append(len(frames))
        return transform(frames, size)

    monkeypatch.setattr(V, "transform_frames", spy)
    batches = V.stream_video(long_video, "official").batches(32, 32)
    first = next(batches)
    assert first.shape == (32, 3, 32, 32) and calls == [32]  # one batch transformed, nothing decoded ahead
    assert sum(len(b) for b in batches) == 2 * SECONDS - 32 and max(calls) == 32


def test_a_wrong_packet_index_mid_stream_goes_on_frame_by_frame(long_video, monkeypatch):
    whole = V.load_video(long_video, "official", size=32)
    feed, packets = V._feed, []

    def failing(*args):
        packets.append(1)
        if len(packets) == 60:  # after some batches are out
            raise V._IndexMismatch
        return feed(*args)

    monkeypatch.setattr(V, "_feed", failing)
    stream = V.stream_video(long_video, "official")
    assert torch.equal(torch.cat(list(stream.batches(8, 32))), whole.frames)
    assert stream.sampled.decoder == "sequential" and stream.sampled.times == whole.times


def test_a_stream_whose_given_frames_were_wrong_says_so(long_video, monkeypatch):
    sequential = V._sequential

    def other_choice(plan):  # the frame-by-frame index chooses another first frame
        plan = sequential(plan)
        plan.sel.pts[0] = plan.sel.pts[1]
        return plan

    feed, packets = V._feed, []

    def failing(*args):
        packets.append(1)
        if len(packets) == 60:
            raise V._IndexMismatch
        return feed(*args)

    monkeypatch.setattr(V, "_sequential", other_choice)
    monkeypatch.setattr(V, "_feed", failing)
    with pytest.raises(V.StreamDiverged, match="packet index was wrong before frame"):
        list(V.stream_video(long_video, "official").batches(8, 32))


# ------------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("padding", [False, True])
def test_audio_windows_are_the_chunks_of_audio_features(padding):
    samples = torch.randn(16000 * 75) * 0.1  # 75 s: chunks of 30, 30 and 15 s
    whole = audio_features(samples, chunk_padding=padding)
    windows = list(audio_windows(samples, chunk_padding=padding, chunks=2))
    assert [w.mel.shape[0] for w in windows] == [2, 1]
    assert torch.equal(torch.cat([w.mel for w in windows]), whole.mel)
    assert all(torch.equal(a, b) for a, b in zip([f for w in windows for f in w.fbank], whole.fbank))
    assert [w.slots for w in windows] == ([120, 60] if padding else [120, 30])
    assert sum(w.slots for w in windows) == whole.slots  # 150 own slots; 180 with the official chunk padding


# --------------------------------------------------------------------------------------------- encoders


def test_encode_sample_equals_the_encoder_on_the_whole_clip(pipe, long_video):
    clip = pipe.load(Request("What happens?", video=str(long_video)))  # 40 s: loaded whole
    assert clip.features is None and clip.frames.shape[0] == 2 * SECONDS
    ids, mask = pipe.instruction_tokenizer(["What happens?"])
    feats = audio_features(clip.waveform, chunk_padding=False)
    whole = pipe.model.encoder(collate_media([clip.frames], [False], [feats], ids, mask))
    encoder = pipe.model.encoder
    windows = audio_windows(clip.waveform, chunk_padding=False, chunks=encoder.chunk_batch)
    streamed = encoder.encode_sample(clip.frames.split(encoder.frame_batch), False, windows, ids, mask)
    for name in AVFeatures.__dataclass_fields__:
        assert torch.equal(getattr(streamed, name), getattr(whole, name)), name
    with pytest.raises(ValueError, match="frame batches must hold 32 frames"):
        encoder.encode_sample(clip.frames.split(20), False, (), ids, mask)


# -------------------------------------------------------------------------------------------- connector


def features(b: int, frames: list[int], slots: list[int], image: list[bool]) -> AVFeatures:
    tv, ta = max(frames), max(slots)
    return AVFeatures(
        torch.randn(b, tv, 32, 32),
        torch.tensor(frames),
        torch.tensor(image),
        torch.randn(b, ta * 25, 32),
        torch.randn(b, ta * 25, 32),
        torch.tensor(slots),
        torch.ones(b, 2),
    )


@pytest.mark.parametrize("span", [10, 20, 60])
def test_connector_spans_give_the_whole_clips_tokens(span):
    conn = build_connector(ModelConfig.from_name("tiny"), 64).eval()
    f = features(3, [250, 97, 1], [240, 131, 77], [False, False, True])  # an image over its audio too
    with torch.no_grad():
        whole = conn(f)
        conn.span_slots = span
        spans = conn(f)
    assert spans.embeds.shape == whole.embeds.shape == (3, 750, 64)
    assert torch.equal(spans.lengths, whole.lengths)
    torch.testing.assert_close(spans.embeds, whole.embeds, atol=1e-6, rtol=0)
    for a, b in zip(spans.levels, whole.levels):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(spans.window_mask, whole.window_mask))


def test_the_connector_span_is_whole_windows_of_60_s():
    conn = build_connector(ModelConfig.from_name("tiny"), 64)
    assert conn.span_slots == 120 and conn.span_slots % conn.cfg.window_multiple == 0


# --------------------------------------------------------------------------------------------- pipeline


def unstreamed(pipe, request, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(P, "STREAMED_SECONDS", float("inf"))
        return pipe.load(request)


@pytest.mark.parametrize("kind", ["video", "image + audio", "audio"])
def test_pipeline_streams_long_media_to_the_same_answer(pipe, long_video, stream_everything, monkeypatch, kind):
    media = {
        "video": dict(video=str(long_video)),
        "image + audio": dict(image=str(DEMO_IMAGE), audio=str(long_video)),
        "audio": dict(audio=str(long_video)),
    }[kind]
    if kind == "image + audio" and not DEMO_IMAGE.is_file():
        pytest.skip(f"demo image not found at {DEMO_IMAGE}")
    request = Request("What happens?", **media)
    monkeypatch.setattr(pipe.model.connector, "span_slots", 20)  # spans of 10 s
    whole, streamed = unstreamed(pipe, request, monkeypatch), pipe.load(request)
    assert streamed.features is not None and streamed.waveform is None
    assert (streamed.frames is None) == (kind != "image + audio")  # an image's one frame is kept (for display)
    assert streamed.coverage == whole.coverage and streamed.frame_times == whole.frame_times
    a, _ = pipe.prepare([request], [whole])
    b, counts = pipe.prepare([request], [streamed])
    assert b.media is None and counts == [240]  # 80 slots x 3 tokens
    with torch.no_grad():
        assert torch.equal(pipe.model.encode(a).embeds, pipe.model.encode(b).embeds)
    (x,), (y,) = pipe.answer_batch([request], clips=[whole]), pipe.answer_batch([request], clips=[streamed])
    assert x.token_ids == y.token_ids and x.media_tokens == y.media_tokens == 240


def test_a_batch_with_a_streamed_clip_answers_as_one_by_one(pipe, long_video, stream_everything):
    short = Request("Describe it.", video=str(CLIP2S))
    long = Request("What happens?", video=str(long_video))
    clips = [pipe.load(long), pipe.load(short)]
    assert clips[0].features is not None and clips[1].features is None  # 2 s: loaded whole
    together = pipe.answer_batch([long, short], clips=clips)
    alone = [pipe.answer_batch([r], clips=[c])[0] for r, c in zip([long, short], clips)]
    assert [a.token_ids for a in together] == [a.token_ids for a in alone]


def test_a_clip_encoded_for_another_question_is_refused(pipe, long_video, stream_everything):
    clip = pipe.load(Request("What happens?", video=str(long_video)))
    with pytest.raises(ValueError, match="encoded for another instruction"):
        pipe.prepare([Request("Who speaks?", video=str(long_video))], [clip])


def test_a_wrong_packet_index_falls_back_to_loading_whole(pipe, long_video, stream_everything, monkeypatch):
    def diverged(self, n, size):
        raise V.StreamDiverged(self.plan.path, "the packet index was wrong before frame 3")
        yield  # a generator, as `batches` is

    monkeypatch.setattr(V.VideoStream, "batches", diverged)
    clip = pipe.load(Request("What happens?", video=str(long_video)))
    assert clip.features is None and clip.frames.shape[0] == 2 * SECONDS


@needs_golden
@pytest.mark.slow
def test_streamed_golden_cases_give_the_official_greedy_ids(stream_everything):
    """The golden checkpoint on the golden cases (23.7-s demo video, 10-s audio), streamed: the official ids."""
    from videosalmonn.official.golden import GoldenDir
    from videosalmonn.official.parity import case_request, golden_pipeline, golden_runs

    golden = GoldenDir(GOLDEN)
    pipe = golden_pipeline(golden)
    for case in golden.cases():
        request = case_request(golden, case)
        clip = pipe.load(request)
        assert clip.features is not None, case.name
        gen = golden_runs(case, pipe.cfg.llm.max_text_tokens)["greedy20"]
        with torch.no_grad():
            (answer,) = pipe.answer_batch([request], gen, [clip])
        assert answer.token_ids == case.expected["greedy20"]["ids"][0], case.name
