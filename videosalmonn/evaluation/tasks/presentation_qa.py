"""AVQA (P): Presentation-QA, 963 multiple-choice questions on talk recordings (new in the paper),
exact-match accuracy (video-SALMONN 13B: 70.5%, Tables 3 and 12).

Samples: data/save/presentation_qa.py.
"""

from __future__ import annotations

from videosalmonn.data.save import presentation_qa
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import choice_aggregate, choice_score

TASK = Task(
    name=presentation_qa.NAME,
    title="AVQA (P): Presentation-QA",
    paper_metric="accuracy",
    paper_value=0.705,
    source=f"{SAVEBENCH_SOURCE}; videos: the presentation dataset of https://arxiv.org/abs/2403.14168 "
    "(per the SAVEBench README), cut into the clips named in the manifest",
    default_manifest=presentation_qa.MANIFEST,
    read=presentation_qa.read,
    score=choice_score,
    aggregate=choice_aggregate,
)
