"""SAVE benchmark files (paper Table 1, plus AVSD and MUSIC-AVQA) -> `BenchmarkSample`s: one reader per task.

    from videosalmonn.data.save import READERS
    samples = READERS["video-qa"](savebench_dir / "nextqa_test.json", media_root)

Evaluation (evaluation/tasks/) adds the scoring; training reads the same files as training data. Each module
names its task (`NAME`), its SAVEBench file (`MANIFEST`; None: the dataset's own layout) and defines `read`.
"""

from __future__ import annotations

from videosalmonn.data.save import (
    audiocaps,
    avm,
    avsd,
    ego4d_qa,
    flickr30k,
    gqa,
    how2,
    librispeech,
    lrs2,
    music_avqa,
    nextqa,
    presentation_qa,
    textvqa,
    vggss,
)
from videosalmonn.data.save.common import BenchmarkSample, multiple_choice_prompt

__all__ = ["READERS", "BenchmarkSample", "multiple_choice_prompt"]

READERS = {
    m.NAME: m.read
    for m in (
        librispeech,
        audiocaps,
        flickr30k,
        textvqa,
        gqa,
        nextqa,
        how2,
        ego4d_qa,
        presentation_qa,
        vggss,
        avm,
        avsd,
        music_avqa,
        lrs2,
    )
}
