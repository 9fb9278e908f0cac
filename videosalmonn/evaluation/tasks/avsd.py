"""AVSD: audio-visual scene-aware dialogue (Charades videos); in SAVE per App. A, but the paper reports
no AVSD number (`paper_value` is None), so the protocol here is ours.

SAVEBench `avsd_textformat_subset.json`: 500 objects {"image_name": ["Charades_v1_480/<id>.mp4",
"audios/<id>.wav"], "conversation": [[question, answer], ...]} (494 with 10 turns, 5 with 9, 1 with 7).

Protocol, following the DSTC7/8 AVSD challenges: answer the *last* question of each dialogue given the
earlier turns with their human answers as history (`Sample.history`, to be sent as a conversation before
`Sample.prompt`); score CIDEr-D against the one human answer. `read(..., all_turns=True)` instead makes
one sample per turn (turn t gets turns < t as history) for a larger, slower evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videosalmonn.errors import InputError
from videosalmonn.evaluation.tasks.common import (SAVEBENCH_SOURCE, Sample, Task, get, load_json_list, media_fields,
                                                  media_root_for)
from videosalmonn.evaluation.tasks.scoring import cider_aggregate, corpus_only

MANIFEST = "avsd_textformat_subset.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None, all_turns: bool = False
         ) -> list[Sample]:
    root = media_root_for(manifest_path, media_root)
    samples = []
    for i, entry in enumerate(load_json_list(manifest_path)):
        where = f"{manifest_path}[{i}]"
        turns = _turns(get(entry, "conversation", where=where), where)
        media = media_fields(get(entry, "image_name", "image", where=where), root, where)
        for t in range(len(turns)) if all_turns else [len(turns) - 1]:
            question, answer = turns[t]
            samples.append(Sample(id=f"avsd-{i:03d}-t{t:02d}", prompt=question, question=question,
                                  references=(answer,), history=tuple(turns[:t]), **media))
    return samples


def _turns(value: Any, where: str) -> list[tuple[str, str]]:
    ok = isinstance(value, list) and value and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value)
    if not ok:
        raise InputError(f"{where}: 'conversation' must be a non-empty list of [question, answer] pairs")
    return [(q, a) for q, a in value]


TASK = Task(
    name="avsd",
    title="AVSD (Charades, last turn)",
    paper_metric="CIDEr-D (ours; the paper reports no AVSD result)",
    paper_value=None,
    source=f"{SAVEBENCH_SOURCE}; videos: Charades v1 480p (https://prior.allenai.org/projects/charades), audio "
           "tracks extracted to audios/<id>.wav; dialogues: DSTC7 AVSD "
           "(https://github.com/hudaAlamri/DSTC7-Audio-Visual-Scene-Aware-Dialog-AVSD-Challenge)",
    default_manifest=MANIFEST,
    read=read,
    score=corpus_only,
    aggregate=cider_aggregate,
)
