"""AVSD: audio-visual scene-aware dialogue (Charades videos); in SAVE per App. A, but the paper reports
no AVSD number (`paper_value` is None), so the protocol here is ours.

Protocol, following the DSTC7/8 AVSD challenges: answer the *last* question of each dialogue given the
earlier turns with their human answers as history (data/save/avsd.py; `BenchmarkSample.turns()` sends them
as a conversation before the prompt); score CIDEr-D against the one human answer. The reader option
`all_turns=True` makes one sample per turn for a larger, slower evaluation.
"""

from __future__ import annotations

from videosalmonn.data.save import avsd
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import cider_aggregate, corpus_only

TASK = Task(
    name=avsd.NAME,
    title="AVSD (Charades, last turn)",
    paper_metric="CIDEr-D (ours; the paper reports no AVSD result)",
    paper_value=None,
    source=f"{SAVEBENCH_SOURCE}; videos: Charades v1 480p (https://prior.allenai.org/projects/charades), audio "
    "tracks extracted to audios/<id>.wav; dialogues: DSTC7 AVSD "
    "(https://github.com/hudaAlamri/DSTC7-Audio-Visual-Scene-Aware-Dialog-AVSD-Challenge)",
    default_manifest=avsd.MANIFEST,
    read=avsd.read,
    score=corpus_only,
    aggregate=cider_aggregate,
)
