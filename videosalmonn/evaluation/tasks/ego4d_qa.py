"""AVQA (E): Ego4D-QA, 899 audio-visual multiple-choice questions (the paper's Table 1 counts 2,000 for
both AVQA sets together), exact-match accuracy (video-SALMONN 13B: 49.8%, Tables 3 and 12).

Samples: data/save/ego4d_qa.py (each with the manifest's time span; the runner decides whether to cut).
"""

from __future__ import annotations

from videosalmonn.data.save import ego4d_qa
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import choice_aggregate, choice_score

TASK = Task(
    name=ego4d_qa.NAME,
    title="AVQA (E): Ego4D-QA",
    paper_metric="accuracy",
    paper_value=0.498,
    source=f"{SAVEBENCH_SOURCE}; videos: Ego4D (https://ego4d-data.org, licence required), clipped and named "
    "<video_uid>__<k>.mp4/.wav as in the manifest",
    default_manifest=ego4d_qa.MANIFEST,
    read=ego4d_qa.read,
    score=choice_score,
    aggregate=choice_aggregate,
)
