"""Lip-reading reader: LRS2-BBC (paper App. F, Table 9), the dataset's own layout:

    <LRS2>/test.txt                    one sample id per line, "<folder>/<utterance>" (anything after it ignored)
    <LRS2>/main/<folder>/<utterance>.mp4    the face track with its speech
    <LRS2>/main/<folder>/<utterance>.txt    "Text:  THE TRANSCRIPT" on its first line (then word timings)

`manifest_path` is test.txt (or another list of the same layout); the clips are in `media_root` (default: the
list's folder), or in its `main/` when it has one. The audio is the video's own track; `noisy_audio` is a folder of
`<id>.wav` files to use instead (`videosalmonn eval add-noise`: the 0 dB Gaussian-noise condition). Prompt: the
AVSR one (How2's SAVEBench question).
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.errors import InputError

NAME = "lrs2"
MANIFEST = None
PROMPT = "Can you transcribe the speech into text, paying attention to the video?"
CLIPS = "main"
TEXT_PREFIX = "Text:"


def read(
    manifest_path: str | Path, media_root: str | Path | None = None, noisy_audio: str | None = None
) -> list[BenchmarkSample]:
    path = Path(manifest_path)
    root = Path(media_root) if media_root else path.parent
    root = root / CLIPS if (root / CLIPS).is_dir() else root
    noisy = Path(noisy_audio) if noisy_audio else None
    samples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        sample_id = line.split()[0]
        transcript = root / f"{sample_id}.txt"
        if not transcript.is_file():
            raise InputError(f"{path}:{n}: {transcript} not found (the transcript of {sample_id})")
        first = transcript.read_text(encoding="utf-8").splitlines()[:1]
        if not first or not first[0].startswith(TEXT_PREFIX):
            raise InputError(f"{transcript}: expected a first line 'Text:  <transcript>'")
        samples.append(
            BenchmarkSample(
                id=sample_id,
                prompt=PROMPT,
                references=(first[0][len(TEXT_PREFIX) :].strip(),),
                video=root / f"{sample_id}.mp4",
                audio=None if noisy is None else noisy / f"{sample_id}.wav",
                question=PROMPT,
            )
        )
    return samples
