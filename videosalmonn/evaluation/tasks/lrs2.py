"""Lip reading: LRS2-BBC test, WER (paper App. F, Table 9: video-SALMONN audio + video 4.9% clean, 21.6% with 0 dB
Gaussian noise; audio alone 5.1% / 22.4%; Whisper large-v2 5.3% / 22.4%). WER after Whisper's normaliser.

Samples: data/save/lrs2.py. The conditions of Table 9 are run options:
    clean audio + video    eval run --task lrs2 --media-root LRS2/ --manifest LRS2/test.txt
    audio alone            ... --mask video (the visual stream multiplied by 0, as the paper's single-modal rows)
    0 dB Gaussian noise    eval add-noise --snr 0 --out noisy/ first, then ... --option noisy_audio=noisy/
"""

from __future__ import annotations

from videosalmonn.data.save import lrs2
from videosalmonn.evaluation.tasks.common import Task
from videosalmonn.evaluation.tasks.scoring import wer_aggregate, wer_score

TASK = Task(
    name=lrs2.NAME,
    title="Lip reading (LRS2 test)",
    paper_metric="WER",
    paper_value=0.049,
    source="LRS2-BBC: https://www.robots.ox.ac.uk/~vgg/data/lip_reading/lrs2.html (BBC licence agreement)",
    default_manifest=lrs2.MANIFEST,
    read=lrs2.read,
    score=wer_score,
    aggregate=wer_aggregate,
    lower_is_better=True,
)
