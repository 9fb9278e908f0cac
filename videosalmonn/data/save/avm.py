"""AVM reader: audio-visual matching, "does the audio belong with the picture?".

SAVEBench `audiovisualmatching_combined.json`: 1,000 objects {"image": [visual, audio], "question",
"answer": "Yes"/"No", "text": the caption/label the audio was made from}:
* 500 VGGSS: a VGGSound .mp4 + .wav, "Is the audio compatible with the video?"  -> group "vggss"
* 500 SpokenCOCO: a COCO val2014 .jpg + a spoken caption .wav, one of three questions -> group "spokencoco"
(506 Yes / 494 No). The prompt is the manifest question. Media resolve against `media_root`.
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import BenchmarkSample, read_question_answer

NAME = "avm"
MANIFEST = "audiovisualmatching_combined.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    return read_question_answer(
        manifest_path, media_root, NAME, group=lambda media: "vggss" if "video" in media else "spokencoco"
    )
