"""AVSR: How2 dev5, audio-visual speech recognition, WER (paper Table 1: 500 utterances; SAVEBench has
531; video-SALMONN 13B: 7.7%, Tables 3 and 12). WER after Whisper's normaliser.

Samples: data/save/how2.py (pre-cut clips, the manifest's question as the prompt).
"""

from __future__ import annotations

from videosalmonn.data.save import how2
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import wer_aggregate, wer_score

TASK = Task(
    name=how2.NAME,
    title="AVSR (How2 dev5)",
    paper_metric="WER",
    paper_value=0.077,
    source=f"{SAVEBENCH_SOURCE}; clips: How2 300h (https://github.com/srvk/how2-dataset), cut to "
    "<video_id>_<start>_<end>.mp4/.wav",
    default_manifest=how2.MANIFEST,
    read=how2.read,
    score=wer_score,
    aggregate=wer_aggregate,
    lower_is_better=True,
)
