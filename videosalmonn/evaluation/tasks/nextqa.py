"""Video QA: NExT-QA test, 1,000 questions as in-context multiple choice, exact-match accuracy
(paper Table 1; video-SALMONN 13B: 49.6%, Table 2; zero-shot: the multiple-choice format is unseen).

Samples: data/save/nextqa.py (the prompt lists the options). Scoring is exact match with the reference
option (App. C).
"""

from __future__ import annotations

from videosalmonn.data.save import nextqa
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import choice_aggregate, choice_score

TASK = Task(
    name=nextqa.NAME,
    title="Video QA (NExT-QA test, multiple choice)",
    paper_metric="accuracy",
    paper_value=0.496,
    source=f"{SAVEBENCH_SOURCE}; videos: NExT-QA NExTVideo (https://github.com/doc-doc/NExT-QA)",
    default_manifest=nextqa.MANIFEST,
    read=nextqa.read,
    score=choice_score,
    aggregate=choice_aggregate,
)
