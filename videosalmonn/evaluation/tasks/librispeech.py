"""ASR: LibriSpeech test-clean, 2,620 utterances, WER (paper Table 1; video-SALMONN 13B: 2.6%, Table 2).

Read from the standard LibriSpeech layout (not a SAVEBench file):

    <LibriSpeech>/test-clean/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utt-id> <TEXT>"
    <LibriSpeech>/test-clean/<speaker>/<chapter>/<utt-id>.flac

`manifest_path` is the test-clean folder or the LibriSpeech folder that contains it; audio paths come from
the transcript's folder (`media_root` is not used). Prompt: App. A's "Transcribe the speech into text."
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.errors import InputError
from videosalmonn.evaluation.tasks.common import Sample, Task
from videosalmonn.evaluation.tasks.scoring import wer_aggregate, wer_score

PROMPT = "Transcribe the speech into text."
SPLIT = "test-clean"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[Sample]:
    root = Path(manifest_path)
    if (root / SPLIT).is_dir():
        root = root / SPLIT
    transcripts = sorted(root.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise InputError(f"{root}: no <speaker>/<chapter>/*.trans.txt files (expected LibriSpeech {SPLIT})")
    samples = []
    for path in transcripts:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not text:
                raise InputError(f"{path}:{n}: expected '<utterance-id> <transcript>'")
            audio = path.parent / f"{utt_id}.flac"
            samples.append(Sample(id=utt_id, prompt=PROMPT, references=(text,), audio=audio, question=PROMPT))
    return samples


TASK = Task(
    name="asr",
    title="ASR (LibriSpeech test-clean)",
    paper_metric="WER",
    paper_value=0.026,
    source="LibriSpeech test-clean: https://www.openslr.org/12 (test-clean.tar.gz, 346 MB)",
    default_manifest=None,
    read=read,
    score=wer_score,
    aggregate=wer_aggregate,
    lower_is_better=True,
)
