"""Video QA: NExT-QA test, 1,000 questions as in-context multiple choice, exact-match accuracy
(paper Table 1; video-SALMONN 13B: 49.6%, Table 2; zero-shot: the multiple-choice format is unseen).

SAVEBench `nextqa_test.json`: 1,000 objects {"image": "<folder>/<video>.mp4" (video only), "question"
(lower case, no "?"), "answer", "answer_candidates": [5 options]}. The prompt is
`multiple_choice_prompt(question, candidates)`; scoring is exact match with the reference option
(App. C). No separate audio file: a runner may use the video's own sound track. Videos resolve against
`media_root` (NExT-QA's NExTVideo/).
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Sample, Task, read_multiple_choice
from videosalmonn.evaluation.tasks.scoring import choice_aggregate, choice_score

MANIFEST = "nextqa_test.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[Sample]:
    return read_multiple_choice(manifest_path, media_root, "video-qa")


TASK = Task(
    name="video-qa",
    title="Video QA (NExT-QA test, multiple choice)",
    paper_metric="accuracy",
    paper_value=0.496,
    source=f"{SAVEBENCH_SOURCE}; videos: NExT-QA NExTVideo (https://github.com/doc-doc/NExT-QA)",
    default_manifest=MANIFEST,
    read=read,
    score=choice_score,
    aggregate=choice_aggregate,
)
