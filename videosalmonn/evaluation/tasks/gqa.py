"""VQA: GQA test-dev balanced, 1,000 questions drawn with a fixed seed, containment accuracy
(paper Table 1; video-SALMONN 13B: 44.8%, Table 2).

Samples: data/save/gqa.py (the seeded 1k subset; `subset=None` keeps all). App. C: correct if the short
answer occurs word by word in the generated answer, and for yes/no questions the opposite word does not.
"""

from __future__ import annotations

from videosalmonn.data.save import gqa
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import containment_aggregate, containment_score

TASK = Task(
    name=gqa.NAME,
    title="VQA (GQA test-dev balanced, 1k subset)",
    paper_metric="accuracy",
    paper_value=0.448,
    source=f"{SAVEBENCH_SOURCE}; images: GQA images.zip (https://cs.stanford.edu/people/dorarad/gqa/download.html)",
    default_manifest=gqa.MANIFEST,
    read=gqa.read,
    score=containment_score,
    aggregate=containment_aggregate,
)
