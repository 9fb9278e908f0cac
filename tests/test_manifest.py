"""Manifest reading: our JSONL and the official JSON list, validated line by line."""

import json

import pytest

from videosalmonn.data.manifest import missing_media, read_manifest
from videosalmonn.errors import InputError


def write(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_jsonl_forms(tmp_path):
    m = write(
        tmp_path / "m.jsonl",
        [
            {"id": "a", "video": "v.mp4", "prompt": "Q?", "answer": "A.", "start": 1, "end": 4.5, "task": "qa"},
            {
                "id": "b",
                "image": "/abs/i.jpg",
                "audio": "s.wav",
                "conversation": [
                    {"role": "user", "content": "Q1"},
                    {"role": "assistant", "content": "A1"},
                    {"role": "user", "content": "Q2"},
                ],
            },
            {"id": "c", "video": "v.mp4", "video_audio": False, "prompt": "Q?"},
        ],
    )
    a, b, c = read_manifest(m)
    assert a.video == str(tmp_path / "v.mp4") and (a.start, a.end, a.task, a.answer) == (1.0, 4.5, "qa", "A.")
    assert a.prompt_turns[-1].text == "Q?" and a.video_audio
    assert b.image == "/abs/i.jpg" and b.audio == str(tmp_path / "s.wav") and b.answer is None
    assert [t.role for t in b.prompt_turns] == ["user", "assistant", "user"]
    assert not c.video_audio
    assert read_manifest(m, media_root="/data")[0].video == "/data/v.mp4"
    assert missing_media([a]) == [f"{m}:1: {tmp_path / 'v.mp4'}"]


def test_sample_to_request(tmp_path):
    m = write(
        tmp_path / "m.jsonl",
        [{"id": "a", "video": "v.mp4", "prompt": "Q?", "answer": "A.", "start": 1, "end": 4.5, "video_audio": False}],
    )
    (a,) = read_manifest(m)
    r = a.to_request()
    assert (r.video, r.start, r.end, r.video_audio, r.answer) == (str(tmp_path / "v.mp4"), 1.0, 4.5, False, None)
    assert r.turns() == list(a.prompt_turns) and a.to_request(with_answer=True).turns() == list(a.conversation)


def test_official_format(tmp_path):
    m = tmp_path / "o.json"
    m.write_text(
        json.dumps(
            [
                {
                    "image_name": ["./dummy/x.mp4", "./dummy/x.wav"],
                    "conversation": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}],
                },
                {"image_name": "./dummy/y.jpg", "conversation": [{"from": "human", "value": "Q"}]},
                {"image_name": "./dummy/z.flac", "conversation": [{"from": "human", "value": "Q"}]},
            ]
        )
    )
    av, image, audio = read_manifest(m)
    assert av.video.endswith("x.mp4") and av.audio.endswith("x.wav") and av.answer == "A"
    assert image.image.endswith("y.jpg") and image.video is None
    assert audio.audio.endswith("z.flac") and audio.video is None


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"video": "v.mp4", "promt": "x"}', "unknown key(s) promt"),
        ('{"video": "v.mp4"}', "no prompt or conversation"),
        ('{"prompt": "x"}', "no media"),
        ('{"video": "v.mp4", "image": "i.jpg", "prompt": "x"}', "a video or an image, not both"),
        ('{"video": "v.mp4", "prompt": "x", "start": 5, "end": 2}', "end (2.0) must be after start (5.0)"),
        ('{"video": "v.mp4", "prompt": ""}', "prompt must be a non-empty string"),
        ('{"video": "v.mp4", "conversation": [{"role": "assistant", "content": "x"}]}', "must alternate"),
        ('{"video": "v.mp4", "prompt": "x", "video_audio": "no"}', "video_audio must be true or false"),
        ('{"video": "v.mp4", "prompt": "x"', "not valid JSON"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "ok.mp4", "prompt": "fine"}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        read_manifest(m)
    assert f"{m}:2: " in str(e.value) and message in str(e.value)


def test_whole_file_errors(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="holds no samples"):
        read_manifest(tmp_path / "empty.jsonl")
    write(tmp_path / "dup.jsonl", [{"id": "x", "audio": "a.wav", "prompt": "p"}] * 2)
    with pytest.raises(InputError, match="'x' appears more than once"):
        read_manifest(tmp_path / "dup.jsonl")
