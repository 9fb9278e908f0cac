"""ASR: LibriSpeech test-clean, 2,620 utterances, WER (paper Table 1; video-SALMONN 13B: 2.6%, Table 2).

Samples: data/save/librispeech.py (the standard LibriSpeech layout, not a SAVEBench file).
"""

from __future__ import annotations

from videosalmonn.data.save import librispeech
from videosalmonn.evaluation.tasks.common import Task
from videosalmonn.evaluation.tasks.scoring import wer_aggregate, wer_score

TASK = Task(
    name=librispeech.NAME,
    title="ASR (LibriSpeech test-clean)",
    paper_metric="WER",
    paper_value=0.026,
    source="LibriSpeech test-clean: https://www.openslr.org/12 (test-clean.tar.gz, 346 MB)",
    default_manifest=librispeech.MANIFEST,
    read=librispeech.read,
    score=wer_score,
    aggregate=wer_aggregate,
    lower_is_better=True,
)
