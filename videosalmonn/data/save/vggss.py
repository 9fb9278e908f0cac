"""AVSSD reader: audio-visual sound source detection on VGGSS.

SAVEBench `testdata_formatted.json`: {"image": [".../video/<ytid>_<start>.mp4", ".../<ytid>_<start>.wav"],
"question": "What is the source of the sound?", "answer": one sentence naming a VGGSound class, e.g.
"The source of this sound in this scene is people belly laughing."}. The README calls the first item an
image; all 847 are .mp4 videos.
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample, read_question_answer

NAME = "avssd"
MANIFEST = "testdata_formatted.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    return read_question_answer(manifest_path, media_root, NAME)
