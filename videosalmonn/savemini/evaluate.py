"""Score a model on every SAVE-mini task: `videosalmonn eval run` for each task of a world, one model load.

    summary = evaluate_world("runs/savemini", "tiny", "runs/savemini-eval/tiny", limit=20)

Each task gets its own resumable run directory OUT/<task> (exactly what `videosalmonn eval run --task T --manifest
WORLD/<world.json eval.T.manifest> --media-root WORLD/media` writes, so `videosalmonn eval report OUT/*` works on
them), and OUT/summary.json + OUT/summary.md put every task's main metric beside the world's chance level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import InputError
from videosalmonn.results import json_text

WORLD_FILE = "world.json"


@dataclass(frozen=True)
class TaskScore:
    task: str
    metric: str
    value: float | None
    chance: float | None  # a uniform guess among the options (None: open answers)
    scored: int
    selected: int
    failed: int


def world_tasks(world: str | Path) -> dict:
    """world.json's `eval` table (task -> manifest, media root, relative to the world) and `chance` table."""
    path = Path(world) / WORLD_FILE
    if not path.is_file():
        raise InputError(
            f"{world}: not a SAVE-mini world (no {WORLD_FILE}; make one with `videosalmonn savemini make`)"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    return info


def evaluate_world(
    world: str | Path,
    model: str,
    out: str | Path,
    *,
    tasks: tuple[str, ...] = (),
    overrides: tuple[str, ...] = (),
    limit: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    pipe=None,
) -> list[TaskScore]:
    from videosalmonn.evaluation.runner import run_eval
    from videosalmonn.evaluation.settings import EvalSettings
    from videosalmonn.pipeline import Pipeline

    world, out = Path(world), Path(out)
    info = world_tasks(world)
    table = info["eval"]
    unknown = [t for t in tasks if t not in table]
    if unknown:
        raise InputError(f"{world}: no task {', '.join(unknown)} (it has {', '.join(sorted(table))})")
    if pipe is None:
        pipe = Pipeline.from_pretrained(model, overrides, device)
    scores = []
    for task in tasks or tuple(table):
        entry = table[task]
        settings = EvalSettings(
            task=task,
            model=model,
            manifest=str(world / entry["manifest"]),
            media_root=str(world / entry["media_root"]),
            overrides=tuple(overrides),
            limit=limit,
            task_options=("subset=null",) if task in ("ocr", "vqa") else (),
        )
        s = run_eval(settings, out / task, batch_size=batch_size, pipe=pipe, progress=progress)
        scores.append(_score(task, s.results, info["chance"].get(task, {})))
    _write_summary(out, world, model, scores, limit)
    return scores


def _score(task: str, results: dict | None, chance: dict) -> TaskScore:
    if results is None:
        raise InputError(f"{task}: the run is not merged (other processes still running?)")
    main = next((m for m in results["metrics"] if m["available"]), results["metrics"][0])
    c = results["counts"]
    return TaskScore(
        task=task,
        metric=main["name"],
        value=main["value"] if main["available"] else None,
        chance=chance.get("random"),
        scored=c["scored"],
        selected=c["selected"],
        failed=c["failed"],
    )


def summary_markdown(world: Path, model: str, scores: list[TaskScore], limit: int | None) -> str:
    from videosalmonn.evaluation.report import format_value

    rows = [
        f"SAVE-mini test split of `{world}`, model `{model}`" + (f", first {limit} samples per task" if limit else ""),
        "",
        "| task | metric | score | chance | samples |",
        "|---|---|---|---|---|",
    ]
    for s in scores:
        value = format_value(s.value, s.metric)
        chance = "-" if s.chance is None else f"{100 * s.chance:.1f}%"
        rows.append(f"| {s.task} | {s.metric} | {value} | {chance} | {s.scored} / {s.selected} |")
    return "\n".join(rows) + "\n"


def _write_summary(out: Path, world: Path, model: str, scores: list[TaskScore], limit: int | None) -> None:
    from videosalmonn.checkpoint import atomic_write

    data = {"world": str(world), "model": model, "limit": limit, "tasks": [s.__dict__ for s in scores]}
    text = json_text(data, indent=1) + "\n"
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    md = summary_markdown(world, model, scores, limit)
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
