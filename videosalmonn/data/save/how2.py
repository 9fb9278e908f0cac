"""AVSR reader: How2 dev5 (audio-visual speech recognition).

SAVEBench `how2_test.json`: {"image": ["<video_id>_<start>_<end>.mp4", "... .wav"], "question": "Can you
transcribe the speech into text, paying attention to the video?", "answer": transcript}. The clips are
already cut (no span). The prompt is the manifest's question.
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample, read_question_answer

NAME = "avsr"
MANIFEST = "how2_test.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    return read_question_answer(manifest_path, media_root, NAME)
