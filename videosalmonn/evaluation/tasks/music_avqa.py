"""MUSIC-AVQA (paper App. G, zero-shot): open-ended questions on music performance videos, accuracy
(video-SALMONN: 52.6%, Table 10). Not part of the SAVEBench files; samples: data/save/music_avqa.py.

The paper does not say how answers were scored; the answers are single words (yes/no, counts, left/right,
instruments), so we use the VQA rule of App. C (metrics.containment_correct: the answer occurs word by
word; for yes/no the opposite does not; number words count as digits). Accuracy is also reported per
question modality (Audio / Visual / Audio-Visual, the sample's group).
"""

from __future__ import annotations

from videosalmonn.data.save import music_avqa
from videosalmonn.evaluation.tasks.common import Task
from videosalmonn.evaluation.tasks.scoring import containment_aggregate, containment_score

TASK = Task(
    name=music_avqa.NAME,
    title="MUSIC-AVQA test (App. G)",
    paper_metric="accuracy",
    paper_value=0.526,
    source="MUSIC-AVQA: questions data/json/avqa-test.json from https://github.com/GeWu-Lab/MUSIC-AVQA; videos "
    "from https://gewu-lab.github.io/MUSIC-AVQA/ as <video_id>.mp4",
    default_manifest=music_avqa.MANIFEST,
    read=music_avqa.read,
    score=containment_score,
    aggregate=containment_aggregate,
)
