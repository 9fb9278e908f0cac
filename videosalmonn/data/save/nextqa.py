"""Video QA reader: NExT-QA test as in-context multiple choice.

SAVEBench `nextqa_test.json`: 1,000 objects {"image": "<folder>/<video>.mp4" (video only), "question"
(lower case, no "?"), "answer", "answer_candidates": [5 options]}. The prompt is
`multiple_choice_prompt(question, candidates)`. No separate audio file: a runner may use the video's own
sound track. Videos resolve against `media_root` (NExT-QA's NExTVideo/).
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample, read_multiple_choice

NAME = "video-qa"
MANIFEST = "nextqa_test.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    return read_multiple_choice(manifest_path, media_root, NAME)
