"""AAC reader: AudioCaps test, from AudioCaps' own `test.csv` (not a SAVEBench file).

Columns audiocap_id, youtube_id, start_time, caption; five rows, i.e. five reference captions, per clip. Rows
are grouped by (youtube_id, start_time) into one sample with all its captions, in file order.

Audio files live in `media_root` (default: the CSV's folder) and are named by YouTube id. Accepted names,
tried in this order for each suffix (.wav, .flac, .ogg, .mp3, then the other audio suffixes of media/files.py):
    <youtube_id><suffix>                 e.g. --0w1YA1Hm4.wav
    Y<youtube_id><suffix>                AudioSet style
    <youtube_id>_<start_time><suffix>    e.g. --0w1YA1Hm4_30.wav (as given in the CSV)
The first existing file is used; if none exists the sample points at <youtube_id>.wav and the runner
reports it missing. Clips are YouTube downloads, so some are gone: the paper had 938 of the 975.
Prompt: App. A's "Please describe the audio."
"""

from __future__ import annotations

import csv
from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample, media_root_for
from videosalmonn.errors import InputError
from videosalmonn.media.files import AUDIO_SUFFIXES

NAME = "aac"
MANIFEST = None
PROMPT = "Please describe the audio."
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
PREFERRED = (".wav", ".flac", ".ogg", ".mp3")
SEARCH_ORDER = PREFERRED + tuple(sorted(AUDIO_SUFFIXES - set(PREFERRED)))


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    path = Path(manifest_path)
    if path.is_dir():
        path = path / "test.csv"
    if not path.is_file():
        raise InputError(f"{path}: AudioCaps test.csv not found")
    root = media_root_for(path, media_root)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
        clips: dict[tuple[str, str], list[str]] = {}
        for row in reader:
            clips.setdefault((row["youtube_id"], row["start_time"]), []).append(row["caption"])
    return [
        BenchmarkSample(
            id=f"{yid}_{start}",
            prompt=PROMPT,
            references=tuple(captions),
            audio=audio_path(root, yid, start),
            question=PROMPT,
        )
        for (yid, start), captions in clips.items()
    ]


def audio_path(root: Path, youtube_id: str, start_time: str) -> Path:
    """The first existing accepted file name (see the module docstring), else <youtube_id>.wav."""
    for suffix in SEARCH_ORDER:
        for stem in (youtube_id, f"Y{youtube_id}", f"{youtube_id}_{start_time}"):
            candidate = root / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return root / f"{youtube_id}.wav"
