"""IC: Flickr30k test (the standard 1k Karpathy test split), CIDEr (paper Table 1; 13B: 89.6, Table 2).

SAVEBench `flickr30k_captions.json`: 1,000 objects {"image": "flickr30k/Images/<id>.jpg", "question":
"Write a short description about this image.", "answer": [5 captions]}. The prompt is the manifest's
question; images resolve against `media_root`.
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Sample, Task, read_question_answer
from videosalmonn.evaluation.tasks.scoring import cider_aggregate, corpus_only

MANIFEST = "flickr30k_captions.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[Sample]:
    return read_question_answer(manifest_path, media_root, "ic")


TASK = Task(
    name="ic",
    title="IC (Flickr30k test)",
    paper_metric="CIDEr",
    paper_value=0.896,
    source=f"{SAVEBENCH_SOURCE}; images: Flickr30k (https://shannon.cs.illinois.edu/DenotationGraph/, "
           "flickr30k-images) placed as <media_root>/flickr30k/Images/<id>.jpg",
    default_manifest=MANIFEST,
    read=read,
    score=corpus_only,
    aggregate=cider_aggregate,
)
