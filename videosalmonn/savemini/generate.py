"""`videosalmonn savemini make`: write a whole SAVE-mini world, in parallel, resumable, the same for the same seed.

    plan_world(seed, counts)  which clip is which task, kind and split (cheap, all of it up front)
        │  each clip, in worker processes (any order, any number of workers):
        ▼
    build_scene(plan, speech_seconds) ─► frames + sound track ─► DIR/media/<clip>.mp4 | .flac | .jpg  (atomic)
        │  the Scene, as one line of DIR/scenes.jsonl (appended by the parent only when its files exist)
        ▼
    build_samples(plans, scenes) ─► write_manifests(DIR, ...)  every task file in its SAVE layout + world.json

A rerun with the same arguments skips every clip already in scenes.jsonl (a killed run loses at most the clips
being written: their files are written to a temporary name and renamed). A rerun with other arguments is refused:
DIR/plan.json records them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from videosalmonn.errors import InputError
from videosalmonn.results import ResultsFile, json_text
from videosalmonn.savemini import manifests, tasks, world
from videosalmonn.savemini.frames import render_frames
from videosalmonn.savemini.scene import SAMPLE_RATE, Scene, Utterance, scene_from_dict, scene_to_dict
from videosalmonn.savemini.sound import audio_track
from videosalmonn.savemini.speech import synthesize
from videosalmonn.savemini.writer import write_audio, write_image, write_video

SCENES = "scenes.jsonl"
PLAN = "plan.json"


@dataclass(frozen=True)
class WorldSpec:
    """What a world is made from: the same spec always gives the same world."""

    seed: int = 0
    n_train: int = 8000
    n_val: int = 200
    n_test: int = 1800


@dataclass(frozen=True)
class MakeSummary:
    out: Path
    clips: int  # clips in the world
    rendered: int  # clips rendered by this run (the rest were already there)
    seconds: float  # wall time of this run
    bytes: int  # size of DIR on disk
    counts: dict  # split -> task -> samples


def make_world(out: str | Path, spec: WorldSpec, workers: int | None = None, progress: bool = True) -> MakeSummary:
    out = Path(out)
    started = time.perf_counter()
    _claim(out, spec)
    plans = world.plan_world(spec.seed, spec.n_train, spec.n_val, spec.n_test)
    scenes_file = ResultsFile(out / SCENES)
    done = scenes_file.done()
    todo = [p for p in plans if p.clip_id not in done]
    _remove_stale_temporaries(out / "media")
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    jobs = [(p, str(out)) for p in todo]
    if workers == 1 or len(jobs) < 2:
        _collect(map(_make_clip, jobs), scenes_file, _progress(len(plans), len(plans) - len(todo), progress))
    else:
        # forkserver: workers are forked from a clean server that imported this module once (spawn would import
        # torch again in each worker, ~5 s of CPU apiece; a plain fork of this process can inherit a lock held by
        # PyAV or another thread and hang). The pool starts before the progress bar's thread.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        with context.Pool(workers) as pool:
            bar = _progress(len(plans), len(plans) - len(todo), progress)
            _collect(pool.imap_unordered(_make_clip, jobs, chunksize=4), scenes_file, bar)
    by_id = {r["id"]: scene_from_dict(r["scene"]) for r in scenes_file.records}
    scenes = [by_id[p.clip_id] for p in plans]
    samples = [s for scene in scenes for s in tasks.build_samples(scene)]
    counts = manifests.write_manifests(out, samples, spec=asdict(spec))["samples"]
    return MakeSummary(
        out=out,
        clips=len(plans),
        rendered=len(todo),
        seconds=time.perf_counter() - started,
        bytes=_disk_bytes(out),
        counts=counts,
    )


def render_scene(scene: Scene, out: Path, speech: dict[Utterance, object] | None = None) -> dict[str, str]:
    """Render one scene's media files under `out` (the paths manifests.media_files names); returns them."""
    files = manifests.media_files(scene)
    frames = render_frames(scene) if scene.kind != "audio" else None
    audio = audio_track(scene, speech) if "audio" in files or scene.kind == "video" else None
    for rel in files.values():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".mp4":
            write_video(path, frames, audio)
        elif path.suffix in (".flac", ".wav"):
            write_audio(path, audio)
        else:
            write_image(path, frames[0])
    return files


def _make_clip(job) -> dict:
    """Worker: plan -> scene (sized to its real speech) -> media files -> the scenes.jsonl record."""
    plan, out = job
    speech: dict[Utterance, object] = {}

    def speech_seconds(utterance: Utterance) -> float:
        if utterance not in speech:
            speech[utterance] = synthesize(utterance)
        return len(speech[utterance]) / SAMPLE_RATE

    scene = world.build_scene(plan, speech_seconds)
    files = render_scene(scene, Path(out), speech)
    return {"id": plan.clip_id, "scene": scene_to_dict(scene), "files": files}


def _collect(results, scenes_file: ResultsFile, bar) -> None:
    with bar:
        for record in results:
            scenes_file.append(record)
            bar.update(1)


def _claim(out: Path, spec: WorldSpec) -> None:
    """DIR/plan.json: a new world writes it; a rerun must have the same spec (it resumes)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / PLAN
    wanted = {"format": "savemini-1", **asdict(spec)}
    if path.exists():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON ({e}); delete the directory to start again") from None
        if have != wanted:
            diff = ", ".join(f"{k} {have.get(k)!r} -> {v!r}" for k, v in wanted.items() if have.get(k) != v)
            raise InputError(f"{out}: holds another world ({diff}); use another --out or the same arguments")
        return
    if any(out.iterdir()):
        raise InputError(f"{out}: exists and is not a SAVE-mini world (no {PLAN}); use an empty or new directory")
    tmp = path.with_name(f".{PLAN}.tmp")
    tmp.write_text(json_text(wanted, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_stale_temporaries(media: Path) -> None:
    if media.is_dir():
        for tmp in media.rglob(".*.tmp*"):
            tmp.unlink(missing_ok=True)


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="clip", desc="savemini", disable=not enabled, file=sys.stderr, smoothing=0.1
    )
