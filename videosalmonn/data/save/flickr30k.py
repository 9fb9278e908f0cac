"""IC reader: Flickr30k test (the standard 1k Karpathy test split).

SAVEBench `flickr30k_captions.json`: 1,000 objects {"image": "flickr30k/Images/<id>.jpg", "question":
"Write a short description about this image.", "answer": [5 captions]}. The prompt is the manifest's
question; images resolve against `media_root`.
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample, read_question_answer

NAME = "ic"
MANIFEST = "flickr30k_captions.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    return read_question_answer(manifest_path, media_root, NAME)
