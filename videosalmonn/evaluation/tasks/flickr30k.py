"""IC: Flickr30k test (the standard 1k Karpathy test split), CIDEr (paper Table 1; 13B: 89.6, Table 2).

Samples: data/save/flickr30k.py (the manifest's question as the prompt, 5 reference captions).
"""

from __future__ import annotations

from videosalmonn.data.save import flickr30k
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task
from videosalmonn.evaluation.tasks.scoring import cider_aggregate, corpus_only

TASK = Task(
    name=flickr30k.NAME,
    title="IC (Flickr30k test)",
    paper_metric="CIDEr",
    paper_value=0.896,
    source=f"{SAVEBENCH_SOURCE}; images: Flickr30k (https://shannon.cs.illinois.edu/DenotationGraph/, "
    "flickr30k-images) placed as <media_root>/flickr30k/Images/<id>.jpg",
    default_manifest=flickr30k.MANIFEST,
    read=flickr30k.read,
    score=corpus_only,
    aggregate=cider_aggregate,
)
