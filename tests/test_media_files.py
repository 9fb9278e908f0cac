"""media/files.py: one suffix table for every reader, and the one "is this a media file" check."""

import json
import os

import pytest

from videosalmonn.data.manifest import read_manifest
from videosalmonn.data.save.common import media_fields
from videosalmonn.errors import MediaError
from videosalmonn.media.audio import load_audio
from videosalmonn.media.files import AUDIO_SUFFIXES, IMAGE_SUFFIXES, MIME_SUFFIXES, VIDEO_SUFFIXES, check_file, kind_of


def test_kind_of_by_suffix_any_case():
    assert kind_of("clips/7.mp4") == "video" and kind_of("A.MKV") == "video"
    assert kind_of("/x/y.JPEG") == "image" and kind_of("anim.gif") == "image" and kind_of("scan.tif") == "image"
    assert kind_of("s.flac") == "audio" and kind_of("voice.opus") == "audio" and kind_of("s.aac") == "audio"
    assert kind_of("notes.txt") is None and kind_of("no_suffix") is None


def test_suffix_sets_are_disjoint_and_cover_every_mime_suffix():
    assert not (VIDEO_SUFFIXES & IMAGE_SUFFIXES or VIDEO_SUFFIXES & AUDIO_SUFFIXES or IMAGE_SUFFIXES & AUDIO_SUFFIXES)
    assert all(kind_of(f"x{suffix}") is not None for suffix in MIME_SUFFIXES.values())
    assert {kind_of(f"x{s}") for m, s in MIME_SUFFIXES.items() if m.startswith("image/")} == {"image"}


def test_manifests_and_save_readers_agree(tmp_path):
    """An official manifest and a SAVE manifest read .gif/.opus the same way (once they did not)."""
    (tmp_path / "o.json").write_text(
        json.dumps(
            [
                {"image_name": "a.gif", "conversation": [{"from": "human", "value": "Q"}]},
                {"image_name": "b.opus", "conversation": [{"from": "human", "value": "Q"}]},
            ]
        )
    )
    gif, opus = read_manifest(tmp_path / "o.json")
    assert gif.image and not gif.video and opus.audio and not opus.video
    assert set(media_fields(["a.gif", "b.opus"], tmp_path, "here")) == {"image", "audio"}


def test_check_file_one_line_errors(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "ok.wav").write_bytes(b"RIFF")
    os.mkfifo(tmp_path / "fifo.wav")
    assert check_file(str(tmp_path / "ok.wav")) == tmp_path / "ok.wav"
    for path, problem in (
        (tmp_path / "gone.wav", "file not found"),
        (tmp_path, "is a directory"),
        (tmp_path / "empty.wav", "file is empty"),
        (tmp_path / "fifo.wav", "not a regular file"),
    ):
        with pytest.raises(MediaError) as e:
            check_file(path)
        assert problem in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_audio_loader_refuses_a_fifo_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "fifo.wav")
    with pytest.raises(MediaError, match="not a regular file"):
        load_audio(tmp_path / "fifo.wav")
