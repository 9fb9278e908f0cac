"""The SAVE benchmark tasks (paper Table 1) plus AVSD and MUSIC-AVQA, one file each, in a registry. A task is
its reader (videosalmonn/data/save/, shared with training) plus how to score it and what the paper reports.

    from videosalmonn.evaluation.tasks import TASKS
    task = TASKS["video-qa"]
    samples = task.read(savebench_dir / task.default_manifest, media_root)
    scores = [task.score(s, p) for s, p in zip(samples, predictions)]
    results = task.aggregate(samples, predictions, scores)        # [MetricResult, ...], paper metric first

`Task.default_manifest` is a file name in the SAVEBench folder; None means the dataset's own layout
(LibriSpeech, AudioCaps, MUSIC-AVQA: see `Task.source`). AVSSD's registry entry uses the offline
string-match judge; `vggss.with_judge(client)` gives the paper's LLM-judged task.
"""

from __future__ import annotations

from videosalmonn.evaluation.tasks import (
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
from videosalmonn.evaluation.tasks.common import Task

__all__ = ["TASKS", "Task"]

TASKS: dict[str, Task] = {
    m.TASK.name: m.TASK
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
