"""AVSR: How2 dev5, audio-visual speech recognition, WER (paper Table 1: 500 utterances; SAVEBench has
531; video-SALMONN 13B: 7.7%, Tables 3 and 12).

SAVEBench `how2_test.json`: {"image": ["<video_id>_<start>_<end>.mp4", "... .wav"], "question": "Can you
transcribe the speech into text, paying attention to the video?", "answer": transcript}. The clips are
already cut (no span). The prompt is the manifest's question; WER after Whisper's normaliser.
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Sample, Task, read_question_answer
from videosalmonn.evaluation.tasks.scoring import wer_aggregate, wer_score

MANIFEST = "how2_test.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[Sample]:
    return read_question_answer(manifest_path, media_root, "avsr")


TASK = Task(
    name="avsr",
    title="AVSR (How2 dev5)",
    paper_metric="WER",
    paper_value=0.077,
    source=f"{SAVEBENCH_SOURCE}; clips: How2 300h (https://github.com/srvk/how2-dataset), cut to "
           "<video_id>_<start>_<end>.mp4/.wav",
    default_manifest=MANIFEST,
    read=read,
    score=wer_score,
    aggregate=wer_aggregate,
    lower_is_better=True,
)
