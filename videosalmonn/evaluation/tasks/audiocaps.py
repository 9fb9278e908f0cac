"""AAC: AudioCaps test, SPIDEr (paper Table 1: 938 clips; video-SALMONN 13B: 49.7, Table 2).

Samples: data/save/audiocaps.py (AudioCaps' own test.csv, five reference captions per clip, audio files
found by YouTube id in `media_root`). Prompt: App. A's "Please describe the audio."
"""

from __future__ import annotations

from videosalmonn.data.save import audiocaps
from videosalmonn.evaluation.tasks.common import Task
from videosalmonn.evaluation.tasks.scoring import corpus_only, spider_aggregate

TASK = Task(
    name=audiocaps.NAME,
    title="AAC (AudioCaps test)",
    paper_metric="SPIDEr",
    paper_value=0.497,
    source="AudioCaps test.csv: https://github.com/cdjkim/audiocaps (dataset/test.csv); audio: the YouTube "
    "clips it names (10 s from start_time), downloaded by the user",
    default_manifest=audiocaps.MANIFEST,
    read=audiocaps.read,
    score=corpus_only,
    aggregate=spider_aggregate,
)
