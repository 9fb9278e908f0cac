"""AVSD reader: audio-visual scene-aware dialogue (Charades videos).

SAVEBench `avsd_textformat_subset.json`: 500 objects {"image_name": ["Charades_v1_480/<id>.mp4",
"audios/<id>.wav"], "conversation": [[question, answer], ...]} (494 with 10 turns, 5 with 9, 1 with 7).

One sample per dialogue: its *last* question, with the earlier turns and their human answers as
`BenchmarkSample.history` (given as a conversation before the prompt), the one human answer as reference.
`read(..., all_turns=True)` instead makes one sample per turn (turn t gets turns < t as history).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videosalmonn.data.save.common import BenchmarkSample, get, load_json_list, media_fields, media_root_for
from videosalmonn.errors import InputError

NAME = "avsd"
MANIFEST = "avsd_textformat_subset.json"


def read(
    manifest_path: str | Path, media_root: str | Path | None = None, all_turns: bool = False
) -> list[BenchmarkSample]:
    root = media_root_for(manifest_path, media_root)
    samples = []
    for i, entry in enumerate(load_json_list(manifest_path)):
        where = f"{manifest_path}[{i}]"
        turns = _turns(get(entry, "conversation", where=where), where)
        media = media_fields(get(entry, "image_name", "image", where=where), root, where)
        for t in range(len(turns)) if all_turns else [len(turns) - 1]:
            question, answer = turns[t]
            samples.append(
                BenchmarkSample(
                    id=f"avsd-{i:03d}-t{t:02d}",
                    prompt=question,
                    question=question,
                    references=(answer,),
                    history=tuple(turns[:t]),
                    **media,
                )
            )
    return samples


def _turns(value: Any, where: str) -> list[tuple[str, str]]:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value)
    )
    if not ok:
        raise InputError(f"{where}: 'conversation' must be a non-empty list of [question, answer] pairs")
    return [(q, a) for q, a in value]
