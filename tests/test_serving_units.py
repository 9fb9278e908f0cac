"""Serving pieces without a server: media sources and the allowed root, the request schema, streaming text."""

import base64
import os
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from conftest import ROOT

from videosalmonn.config import GenerationConfig
from videosalmonn.serving.media import MediaFiles, MediaRef, MediaRefused, probe_seconds
from videosalmonn.serving.schema import ApiError, conversation, generation_config, parse_request
from videosalmonn.serving.settings import ServeSettings
from videosalmonn.streaming import RowStreamer, StreamAborted, TextDeltas

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"
MB = 1 << 20


def data_url(data: bytes, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def refused(files: MediaFiles, source: str, kind: str = "video") -> MediaRefused:
    with pytest.raises(MediaRefused) as e:
        files.path(MediaRef(kind, source, "part"))
    return e.value


# ------------------------------------------------------------------------------------ media sources


def test_data_url_is_written_to_a_temporary_file_and_removed():
    with MediaFiles(MB, None) as files:
        path = files.path(MediaRef("video", data_url(CLIP.read_bytes()), "part"))
        assert Path(path).read_bytes() == CLIP.read_bytes() and path.endswith(".mp4")
        assert probe_seconds(path, "part") == pytest.approx(2.0, abs=0.05)
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_data_url_size_is_checked_before_decoding():
    files = MediaFiles(1000, None)
    big = refused(files, "data:video/mp4;base64," + "!" * 2000)  # not even valid base64: never decoded
    assert big.status == 413 and big.code == "media_too_large"
    assert refused(files, "data:video/mp4;base64,@@@@").code == "invalid_base64"
    assert refused(files, "data:video/mp4,rawtext").code == "invalid_data_url"
    assert refused(files, "data:video/mp4;base64,").code == "empty_media"


def test_raw_base64_input_audio():
    with MediaFiles(MB, None) as files:
        path = files.path(MediaRef("audio", base64.b64encode(b"RIFF....").decode(), "part", "wav"))
        assert path.endswith(".wav") and Path(path).read_bytes() == b"RIFF...."


def test_remote_urls_and_paths_without_root_are_refused():
    files = MediaFiles(MB, None)
    no_fetch = refused(files, "http://127.0.0.1/x.mp4")
    assert no_fetch.status == 400 and no_fetch.code == "fetch_not_allowed" and "--allow-fetch" in str(no_fetch)
    assert refused(files, "HTTPS://example.com/x.mp4").code == "fetch_not_allowed"
    assert refused(files, "ftp://host/x.mp4").code == "unsupported_url"
    no_root = refused(files, str(CLIP))
    assert no_root.status == 403 and "allowed-root" in str(no_root)


def test_allowed_root_resolves_symlinks_and_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "clip.mp4").write_bytes(CLIP.read_bytes())
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(CLIP.read_bytes())
    (root / "escape.mp4").symlink_to(outside)  # a symlink out of the root
    (root / "sub" / "inner.mp4").symlink_to(root / "clip.mp4")  # a symlink staying inside
    (tmp_path / "rootlink").symlink_to(root)  # the root itself through a symlink
    os.mkfifo(root / "fifo.mp4")
    with MediaFiles(MB, tmp_path / "rootlink") as files:
        for ok in (
            "clip.mp4",
            "sub/inner.mp4",
            "sub/../clip.mp4",
            str(root / "clip.mp4"),
            f"file://{root / 'clip.mp4'}",
            "file://localhost" + str(root / "clip.mp4"),
        ):
            assert Path(files.path(MediaRef("video", ok, "part"))).read_bytes() == CLIP.read_bytes(), ok
        for bad in (
            "escape.mp4",
            "../secret.mp4",
            "sub/../../secret.mp4",
            str(outside),
            "/etc/passwd",
            f"file://{outside}",
            "file:///etc/passwd",
            "..",
            "/",
        ):
            assert refused(files, bad).status == 403, bad
        assert refused(files, "fifo.mp4").code == "not_a_file"  # and no hang opening it
        assert refused(files, "sub").code == "not_a_file"
        assert refused(files, "missing.mp4").code == "file_not_found"
        assert refused(files, "file://otherhost/x.mp4").code == "invalid_url"
    small = MediaFiles(100, root)
    assert refused(small, "clip.mp4").status == 413


def test_an_opened_local_file_stays_the_checked_file(tmp_path):
    """The path handed to the decoder is the opened file: replacing the name by a symlink afterwards changes nothing."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "clip.mp4").write_bytes(CLIP.read_bytes())
    (tmp_path / "secret").write_bytes(b"secret")
    with MediaFiles(MB, root) as files:
        path = files.path(MediaRef("video", "clip.mp4", "part"))
        (root / "clip.mp4").unlink()
        (root / "clip.mp4").symlink_to(tmp_path / "secret")
        assert Path(path).read_bytes() == CLIP.read_bytes()


def test_playlists_and_non_media_are_refused_before_ffmpeg_follows_them(tmp_path):
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile://{CLIP}\n#EXT-X-ENDLIST\n")
    concat = tmp_path / "list.txt"
    concat.write_text(f"ffconcat version 1.0\nfile '{CLIP}'\n")
    for path in (playlist, concat, tmp_path / "list.txt"):
        with pytest.raises(MediaRefused) as e:
            probe_seconds(str(path), "part")
        assert e.value.code == "invalid_media"


# ------------------------------------------------------------------------------------ schema


def chat(**fields) -> dict:
    content = [
        {"type": "text", "text": "What happens?"},
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
    ]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], **fields}


def api_error(data) -> ApiError:
    with pytest.raises(ApiError) as e:
        conversation(parse_request(data), 1000)
    return e.value


def test_schema_accepts_openai_fields_and_the_extension():
    req = parse_request(
        chat(
            max_tokens=8,
            temperature=0,
            top_p=1,
            seed=3,
            stream=True,
            user="u",
            n=1,
            stream_options={"include_usage": True},
            stop=None,
            logprobs=False,
            videosalmonn={"start": 0.5, "end": 1.5, "video_audio": False},
        )
    )
    conv = conversation(req, 1000)
    assert [t.role for t in conv.turns] == ["user"] and conv.turns[0].text == "What happens?"
    assert [m.kind for m in conv.media] == ["video"] and conv.media[0].label == "messages.0.content.1.video_url"
    assert (conv.start, conv.end, conv.video_audio) == (0.5, 1.5, False)


@pytest.mark.parametrize(
    "data, code",
    [
        (chat(foo=1), "unknown_field"),
        (chat(max_tokens="8"), "invalid_value"),
        (chat(max_tokens=0), "invalid_value"),
        (chat(temperature=3), "invalid_value"),
        (chat(n=2), "unsupported_value"),
        (chat(presence_penalty=0.5), "unsupported_value"),
        (chat(tools=[{"type": "function"}]), "unsupported_field"),
        (chat(stop=["\n"]), "unsupported_field"),
        (chat(videosalmonn={"beams": 2}), "unknown_field"),
        (chat(videosalmonn={"start": 2, "end": 1}), "invalid_value"),
        ({**chat(), "messages": []}, "invalid_value"),
        (
            {
                **chat(),
                "messages": [
                    {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x", "extra": 1}}]}
                ],
            },
            "unknown_field",
        ),
        ({**chat(), "messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}, "invalid_value"),
        (
            {**chat(), "messages": chat()["messages"] + [{"role": "system", "content": "Be brief."}]},
            "invalid_conversation",
        ),
        ({**chat(), "messages": [{"role": "system", "content": "Be brief."}]}, "invalid_conversation"),
        ({**chat(), "messages": chat()["messages"] * 2}, "invalid_conversation"),
        (
            {**chat(), "messages": chat()["messages"] + [{"role": "assistant", "content": "A square."}]},
            "invalid_conversation",
        ),
        ({**chat(), "messages": [{"role": "user", "content": "no media"}]}, "no_media"),
        ({**chat(), "messages": [{"role": "user", "content": chat()["messages"][0]["content"] * 2}]}, "too_many_media"),
        (
            {
                **chat(),
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "x" * 1001}, chat()["messages"][0]["content"][1]],
                    }
                ],
            },
            "prompt_too_long",
        ),
        ([1, 2], "invalid_json"),
    ],
)
def test_schema_refuses_with_the_field_named(data, code):
    e = api_error(data)
    assert e.status == 400 and e.code == code, (e.code, e.message)
    assert e.body()["error"]["message"]


def test_multi_turn_and_media_in_a_later_turn():
    later = {
        "role": "user",
        "content": [
            {"type": "text", "text": "And the sound?"},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ],
    }
    conv = conversation(
        parse_request(
            {
                **chat(),
                "messages": chat()["messages"]
                + [{"role": "assistant", "content": [{"type": "text", "text": "A square moves."}]}, later],
            }
        ),
        1000,
    )
    assert [t.role for t in conv.turns] == ["user", "assistant", "user"]
    assert [m.kind for m in conv.media] == ["video", "audio"] and conv.media[1].format == "wav"


def test_generation_settings():
    base = GenerationConfig(max_new_tokens=512, num_beams=5, repetition_penalty=1.5)
    gen = generation_config(parse_request(chat()), base, 1024)
    assert gen == base  # the model's own setting
    assert generation_config(parse_request(chat(stream=True)), base, 1024).num_beams == 1
    greedy = generation_config(parse_request(chat(temperature=0, max_tokens=9)), base, 1024)
    assert (greedy.do_sample, greedy.num_beams, greedy.max_new_tokens) == (False, 5, 9)
    sampled = generation_config(parse_request(chat(temperature=0.7, top_p=0.9, seed=1)), base, 1024)
    assert (sampled.do_sample, sampled.num_beams, sampled.temperature, sampled.top_p, sampled.seed) == (
        True,
        1,
        0.7,
        0.9,
        1,
    )
    beams = generation_config(
        parse_request(chat(videosalmonn={"num_beams": 3, "length_penalty": 2.0, "repetition_penalty": 1.0})), base, 1024
    )
    assert (beams.num_beams, beams.length_penalty, beams.repetition_penalty) == (3, 2.0, 1.0)
    assert generation_config(parse_request(chat()), replace(base, max_new_tokens=4096), 1024).max_new_tokens == 1024
    for bad, code in (
        (chat(stream=True, videosalmonn={"num_beams": 2}), "beam_search_cannot_stream"),
        (chat(temperature=1.0, videosalmonn={"num_beams": 2}), "invalid_value"),
        (chat(max_tokens=2000), "max_tokens_too_large"),
        (chat(max_tokens=5, max_completion_tokens=6), "invalid_value"),
    ):
        with pytest.raises(ApiError) as e:
            generation_config(parse_request(bad), base, 1024)
        assert e.value.code == code


def test_one_request_cannot_hold_the_worker_with_a_huge_beam_search():
    """Issue 11 row 6: beam 16 x 1024 tokens is refused by the per-request cost cap; the released default fits."""
    base = GenerationConfig(max_new_tokens=512, num_beams=5, repetition_penalty=1.5)
    cap = ServeSettings().max_beam_tokens
    assert generation_config(parse_request(chat()), base, 1024, cap).num_beams == 5
    huge = chat(max_tokens=1024, videosalmonn={"num_beams": 16})
    with pytest.raises(ApiError) as e:
        generation_config(parse_request(huge), base, 1024, cap)
    assert (e.value.status, e.value.code) == (400, "request_too_costly") and "16 x max_tokens=1024" in str(e.value)
    assert generation_config(parse_request(chat(max_tokens=1024, videosalmonn={"num_beams": 2})), base, 1024, cap)


# ------------------------------------------------------------------------------------ streaming


def test_text_deltas_add_up_to_the_stripped_answer():
    words = {1: " Hello", 2: ",", 3: " wor", 4: "ld", 5: " ", 6: "\ufffd"}

    def decode(ids):
        text = "".join(words[i] for i in ids)
        return text.replace("\ufffd", "") if ids and ids[-1] != 6 else text  # 6 = half a character

    deltas = TextDeltas(decode, eos_id=0)
    pieces = [deltas.push(i) for i in (1, 2, 3, 4, 5, 6, 0, 3)]
    assert pieces == ["Hello", ",", " wor", "ld", "", "", "", ""]  # blanks/half chars held back; EOS ends
    assert deltas.rest("Hello, world") == "" and deltas.sent == "Hello, world"
    deltas.restart()  # a retried generation sends no repeat
    assert [deltas.push(i) for i in (1, 2)] == ["", ""]


def test_row_streamer_routes_rows_and_stops_when_nobody_waits():
    import torch

    rows = [TextDeltas(lambda ids: "".join(map(str, ids)), eos_id=0) for _ in range(2)]
    got = []
    stop = [False]
    streamer = RowStreamer(rows, lambda row, text: got.append((row, text)), lambda: stop[0])
    streamer.put(torch.zeros(2, 0, dtype=torch.long))
    streamer.put(torch.tensor([1, 2]))
    streamer.put(torch.tensor([0, 3]))
    assert got == [(0, "1"), (1, "2"), (1, "3")]
    stop[0] = True
    with pytest.raises(StreamAborted):
        streamer.put(torch.tensor([4, 4]))
