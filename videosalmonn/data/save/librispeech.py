"""ASR reader: LibriSpeech test-clean, from the standard LibriSpeech layout (not a SAVEBench file):

    <LibriSpeech>/test-clean/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utt-id> <TEXT>"
    <LibriSpeech>/test-clean/<speaker>/<chapter>/<utt-id>.flac

`manifest_path` is the test-clean folder or the LibriSpeech folder that contains it; audio paths come from
the transcript's folder (`media_root` is not used). Prompt: App. A's "Transcribe the speech into text."
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.errors import InputError

NAME = "asr"
MANIFEST = None
PROMPT = "Transcribe the speech into text."
SPLIT = "test-clean"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
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
            samples.append(BenchmarkSample(id=utt_id, prompt=PROMPT, references=(text,), audio=audio, question=PROMPT))
    return samples
