"""SAVE-mini on disk: which media files a clip needs, and the manifests, each task in its SAVE layout.

    media_files(scene)                          -> {"video"|"audio"|"image": path relative to the world folder}
    write_manifests(out_dir, samples, spec)     -> the world.json dict (every file written atomically)

A world folder (DIR):

    DIR/world.json                          seed, clip and sample counts, chance levels, how to score each task
    DIR/media/<clip>.mp4 | .flac | .jpg     every clip's media (generate.py renders them)
    DIR/<split>.jsonl                       our training format (data/manifest.py): every sample of the split,
                                            plus (train) the unpaired extras of tasks.py
    DIR/<split>/<SAVEBench file name>       the JSON-list tasks, as `data.save.<task>.MANIFEST` names them, so
                                            `--savebench DIR/test` finds them; media paths relative to DIR/media
    DIR/<split>/LibriSpeech/test-clean/<speaker>/<chapter>/{<spk>-<ch>.trans.txt, <utt-id>.flac}   ASR
    DIR/<split>/audiocaps/test.csv          AAC (audio: DIR/media/<clip>.flac, found by "youtube id" = clip id)
    DIR/<split>/music-avqa/avqa-test.json   MUSIC-AVQA (videos: DIR/media/<video_id>.mp4)

Scoring a task: `videosalmonn eval run --task T --manifest DIR/<world.json eval.T.manifest> --media-root
DIR/media` (world.json lists the exact paths). ASR audio is rendered straight into its LibriSpeech folder, the
only media outside DIR/media, because the LibriSpeech reader finds audio next to the transcripts.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videosalmonn.checkpoint import atomic_write
from videosalmonn.data.save import avm, flickr30k, gqa, how2, nextqa, presentation_qa, textvqa, vggss
from videosalmonn.savemini import splits
from videosalmonn.savemini.scene import Scene
from videosalmonn.savemini.world import tag

FORMAT = "savemini-world/1"
MEDIA_DIR = "media"
SEPARATE_AUDIO = frozenset({"avsr", "avqa-presentation", "avssd", "avm"})  # [visual, audio] layouts
SAVE_FILES = {  # the JSON-list tasks: SAVEBench's own file names
    m.NAME: m.MANIFEST for m in (flickr30k, textvqa, gqa, nextqa, how2, presentation_qa, vggss, avm)
}
ASR_ROOT, AAC_FILE, MUSIC_FILE = "LibriSpeech", "audiocaps/test.csv", "music-avqa/avqa-test.json"
METRICS = {"asr": "WER", "avsr": "WER", "aac": "SPIDEr", "ic": "CIDEr"}  # the rest: accuracy


@dataclass(frozen=True)
class TaskSample:
    """One question about one clip, as every writer needs it (tasks.py builds them from scenes).

    `media` maps "video"/"audio"/"image" to paths relative to the world folder; `prompt` is exactly what the
    task's reader gives the model and `references` exactly what it scores against; `answer` is the training
    answer. `fields` holds layout extras (AVM "text", GQA "fullanswer", MUSIC-AVQA's template, LibriSpeech
    ids). `chance`: a uniform guess's expected score (None for WER and caption tasks). `eval=False`: a
    training-only extra (an unpaired view of a clip), written to <split>.jsonl only. `video_audio=False`: a
    video given without its sound track (video-only training sample).
    """

    id: str
    task: str
    split: str
    clip: str
    prompt: str
    question: str
    answer: str
    references: tuple[str, ...]
    media: dict[str, str]
    candidates: tuple[str, ...] = ()
    group: str = ""
    chance: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    video_audio: bool = True
    eval: bool = True


# ------------------------------------------------------------------------------------------------ media


def clip_index(scene: Scene) -> int:
    return int(scene.id.rsplit("-", 1)[1])


def librispeech_ids(scene: Scene) -> tuple[str, str, str]:
    """(speaker, chapter, utterance id) of an ASR clip: the speaker is its voice, the chapter its hundred."""
    speaker = str(100 + splits.VOICES.index(scene.speech[0].voice))
    chapter = str(clip_index(scene) // 100)
    return speaker, chapter, f"{speaker}-{chapter}-{clip_index(scene):06d}"


def media_files(scene: Scene) -> dict[str, str]:
    """What generate.py renders for `scene`: {"video": .mp4 (with the scene's sound track), "audio": .flac,
    "image": .jpg}, paths relative to the world folder. Audio clips: a .flac; images: a .jpg, plus a .flac when
    they come with sound (AVM spoken descriptions); videos: an .mp4, plus the separate .flac of the
    [video, audio] layouts (AVSR, AVQA, AVSSD, AVM)."""
    task, split = tag(scene, "task"), tag(scene, "split")
    base = f"{MEDIA_DIR}/{scene.id}"
    if scene.kind == "audio":
        if task == "asr":
            speaker, chapter, utt = librispeech_ids(scene)
            return {"audio": f"{split}/{ASR_ROOT}/test-clean/{speaker}/{chapter}/{utt}.flac"}
        return {"audio": f"{base}.flac"}
    if scene.kind == "image":
        return {"image": f"{base}.jpg", **({"audio": f"{base}.flac"} if scene.speech or scene.sounds else {})}
    return {"video": f"{base}.mp4", **({"audio": f"{base}.flac"} if task in SEPARATE_AUDIO else {})}


# -------------------------------------------------------------------------------------------- writers


def write_manifests(out_dir: str | Path, samples: Sequence[TaskSample], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Every manifest of the world, and world.json (returned): `spec` (what the world was made from, with its
    "seed"), the clip and sample counts per split (`["samples"][split][task]`), chance levels, and for each task
    the manifest and media root to score its test split with."""
    out = Path(out_dir)
    by_split: dict[str, list[TaskSample]] = defaultdict(list)
    for s in samples:
        by_split[splits.check_split(s.split)].append(s)
    evals: dict[str, dict[str, str]] = {}
    for split in splits.SPLITS:
        if by_split[split]:
            write_jsonl(out / f"{split}.jsonl", by_split[split])
        by_task: dict[str, list[TaskSample]] = defaultdict(list)
        for s in by_split[split]:
            if s.eval:
                by_task[s.task].append(s)
        for task, group in by_task.items():
            manifest = write_task(out / split, task, group)
            if split == "test":
                evals[task] = {"manifest": manifest.relative_to(out).as_posix(), "media_root": MEDIA_DIR}
    world = {
        "format": FORMAT,
        "seed": spec["seed"],
        "spec": dict(spec),
        "clips": {sp: len({s.clip for s in by_split[sp]}) for sp in splits.SPLITS},
        "samples": {sp: dict(sorted(Counter(s.task for s in by_split[sp] if s.eval).items())) for sp in splits.SPLITS},
        "training_lines": {sp: len(by_split[sp]) for sp in splits.SPLITS},
        "chance": chance_levels([s for s in by_split["test"] if s.eval]),
        "eval": dict(sorted(evals.items())),
        "rules": splits.describe_rules(),
    }
    write_text(out / "world.json", json.dumps(world, indent=2) + "\n")
    return world


def write_task(split_dir: Path, task: str, samples: list[TaskSample]) -> Path:
    """One task's file(s) in its SAVE layout; returns what `--manifest` takes."""
    if task == "asr":
        return write_librispeech(split_dir / ASR_ROOT, samples)
    if task == "aac":
        return write_audiocaps(split_dir / AAC_FILE, samples)
    if task == "music-avqa":
        path = split_dir / MUSIC_FILE
        write_json(path, [music_entry(s) for s in samples])
        return path
    if task not in SAVE_FILES:
        raise ValueError(f"no SAVE layout for task {task!r}")
    path = split_dir / SAVE_FILES[task]
    write_json(path, [json_entry(s) for s in samples])
    return path


def json_entry(s: TaskSample) -> dict[str, Any]:
    """The SAVEBench JSON-list entry of one sample (media relative to DIR/media)."""
    visual = next(k for k in ("video", "image") if k in s.media)
    media: str | list[str] = media_name(s.media[visual])
    if s.task in SEPARATE_AUDIO:
        media = [media, media_name(s.media["audio"])]
    key = "image_name" if s.task == "avqa-presentation" else "image"
    entry: dict[str, Any] = {key: media, "question": s.question}
    if s.task == "ocr":
        entry = {"dataset": "textvqa", **entry, "answer": list(s.references)}
    elif s.task == "ic":
        entry["answer"] = list(s.references)
    else:
        entry["answer"] = s.references[0]
    if s.candidates:
        entry["answer_candidates"] = list(s.candidates)
    for name in ("fullanswer", "text"):
        if name in s.fields:
            entry[name] = s.fields[name]
    return entry


def music_entry(s: TaskSample) -> dict[str, Any]:
    return {
        "video_id": s.clip,
        "question_id": s.fields["question_id"],
        "type": json.dumps(s.fields["type"]),
        "question_content": s.fields["question_content"],
        "templ_values": json.dumps(s.fields["templ_values"]),
        "question_deleted": 0,
        "anser": s.references[0],
    }


def write_librispeech(root: Path, samples: list[TaskSample]) -> Path:
    lines: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s in samples:
        speaker, chapter, utt = s.fields["speaker"], s.fields["chapter"], s.fields["utt_id"]
        lines[speaker, chapter].append(f"{utt} {s.references[0]}")
    for (speaker, chapter), rows in sorted(lines.items()):
        path = root / "test-clean" / speaker / chapter / f"{speaker}-{chapter}.trans.txt"
        write_text(path, "\n".join(sorted(rows)) + "\n")
    return root


def write_audiocaps(path: Path, samples: list[TaskSample]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("audiocap_id", "youtube_id", "start_time", "caption"))
    n = 0
    for s in samples:
        for caption in s.references:
            n += 1
            writer.writerow((n, s.clip, 0, caption))
    write_text(path, buffer.getvalue())
    return path


def jsonl_line(s: TaskSample) -> dict[str, Any]:
    """Our training format: media relative to the world folder (the .jsonl's folder)."""
    line: dict[str, Any] = {"id": s.id, "task": s.task, **s.media}
    if not s.video_audio:
        line["video_audio"] = False
    line["conversation"] = [{"role": "user", "content": s.prompt}, {"role": "assistant", "content": s.answer}]
    return line


def write_jsonl(path: Path, samples: list[TaskSample]) -> None:
    write_text(path, "".join(json.dumps(jsonl_line(s)) + "\n" for s in samples))


def chance_levels(samples: list[TaskSample]) -> dict[str, dict[str, Any]]:
    """Per task: `random` = the mean score of a uniform guess over each question's answers (None for WER and
    caption tasks: an empty answer scores WER 1.0), `majority` = the accuracy of always giving the most common
    answer."""
    by_task: dict[str, list[TaskSample]] = defaultdict(list)
    for s in samples:
        by_task[s.task].append(s)
    levels = {}
    for task, group in sorted(by_task.items()):
        metric = METRICS.get(task, "accuracy")
        chances = [s.chance for s in group]
        random_level = None if any(c is None for c in chances) else round(sum(chances) / len(chances), 4)
        majority = None
        if metric == "accuracy":
            majority = round(Counter(s.answer for s in group).most_common(1)[0][1] / len(group), 4)
        levels[task] = {"metric": metric, "random": random_level, "majority": majority, "samples": len(group)}
    return levels


def media_name(path: str) -> str:
    prefix = MEDIA_DIR + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{path}: SAVE manifests name media under {MEDIA_DIR}/")
    return path[len(prefix) :]


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1) + "\n")
