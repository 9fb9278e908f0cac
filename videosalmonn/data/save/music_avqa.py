"""MUSIC-AVQA reader: open-ended questions on music performance videos (not part of the SAVEBench files).

Read from MUSIC-AVQA's own `avqa-test.json` (https://github.com/GeWu-Lab/MUSIC-AVQA, data/json/): objects
{"video_id": "00000272", "question_id", "type": "[\"Audio-Visual\", \"Temporal\"]" (a JSON string),
"question_content": "Where is the <FL> sounding instrument?", "templ_values": "[\"first\"]" (a JSON
string), "question_deleted": 0/1, "anser": "left" (sic; "answer" also accepted)}. Each <...> placeholder
is filled, in order, with the next template value; questions marked deleted are skipped. Videos are
`<media_root>/<video_id>.mp4` (their own sound track is the audio). A sample's group is its question
modality (Audio / Visual / Audio-Visual, the first element of "type").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videosalmonn.data.save.common import BenchmarkSample, get, load_json_list, media_root_for
from videosalmonn.errors import InputError

NAME = "music-avqa"
MANIFEST = None
PLACEHOLDER = re.compile(r"<[^<>]+>")


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[BenchmarkSample]:
    root = media_root_for(manifest_path, media_root)
    samples = []
    for i, entry in enumerate(load_json_list(manifest_path)):
        where = f"{manifest_path}[{i}]"
        if int(entry.get("question_deleted", 0) or 0):
            continue
        question = render_question(
            get(entry, "question_content", where=where), _json_list(entry.get("templ_values", "[]"), where)
        )
        types = _json_list(entry.get("type", "[]"), where)
        video_id = str(get(entry, "video_id", where=where))
        qid = entry.get("question_id", i)
        samples.append(
            BenchmarkSample(
                id=f"music-avqa-{qid}",
                prompt=question,
                question=question,
                references=(str(get(entry, "anser", "answer", where=where)),),
                video=root / f"{video_id}.mp4",
                group=str(types[0]) if types else "",
            )
        )
    return samples


def render_question(template: str, values: Sequence[str]) -> str:
    """Fill each <placeholder> in order with the next template value ("<FL>" + ["first"] -> "first")."""
    values = list(values)
    if len(PLACEHOLDER.findall(template)) > len(values):
        raise InputError(f"question {template!r} has more placeholders than template values {values}")
    return PLACEHOLDER.sub(lambda _: str(values.pop(0)), template).strip()


def _json_list(value: Any, where: str) -> list:
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as e:
        raise InputError(f"{where}: expected a JSON list string, got {value!r}") from e
    if not isinstance(parsed, list):
        raise InputError(f"{where}: expected a JSON list, got {value!r}")
    return parsed
