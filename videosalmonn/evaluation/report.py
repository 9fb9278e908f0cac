"""`videosalmonn eval report DIR...`: run directories -> a markdown report laid out like the paper's Tables 2
and 3 (video-SALMONN 13B's numbers beside ours, with 95% CIs), a diagnostics table like Table 5, a JSON summary
and a PNG chart.

    paths = write_report(["runs/"], "runs/report")     # report.md, summary.json, chart.png

A row is a system (model + overrides) under one diagnostic setting; a cell is the task's paper metric. Units
are the paper's: WER and accuracies in %, CIDEr and SPIDEr x 100.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from videosalmonn.errors import InputError, VideoSalmonnError
from videosalmonn.evaluation.chart import Series, bar_chart
from videosalmonn.evaluation.rundir import find_runs, write_json_atomic, write_text_atomic
from videosalmonn.evaluation.settings import EvalSettings, select_samples
from videosalmonn.evaluation.tasks import TASKS

TABLES = [
    ("Single-modal tasks (paper Table 2)", ["asr", "aac", "video-qa", "ic", "ocr", "vqa"]),
    ("Audio-visual tasks (paper Table 3)", ["avsr", "avqa-ego4d", "avqa-presentation", "avssd", "avm"]),
    ("Other tasks (AVSD: no paper number; MUSIC-AVQA: paper App. G, zero-shot)", ["avsd", "music-avqa"]),
]
SHORT = {
    "asr": "ASR",
    "aac": "AAC",
    "video-qa": "Video QA",
    "ic": "IC",
    "ocr": "OCR",
    "vqa": "VQA",
    "avsr": "AVSR",
    "avqa-ego4d": "AVQA (E)",
    "avqa-presentation": "AVQA (P)",
    "avssd": "AVSSD",
    "avm": "AVM",
    "avsd": "AVSD",
    "music-avqa": "MUSIC-AVQA",
    "lrs2": "LRS2",
}
PAPER_ROW = "video-SALMONN 13B (paper)"
# video-SALMONN 13B under the paper's diagnostics, keyed like a run's (mask, zero_level). A string is shown as is.
PAPER_DIAGNOSTICS: dict[tuple[str | None, int | None], tuple[str, dict[str, float | str]]] = {
    (None, 1): ("paper Table 5: 0.5-s level only (level 1 zeroed)", {"asr": 0.026, "ic": 0.358, "video-qa": 0.144}),
    (None, 0): ("paper Table 5: 5-s level only (level 0 zeroed)", {"asr": "100+%", "ic": 0.230, "video-qa": 0.419}),
    ("audio", None): (
        "paper Tables 2-3: visual-only system (audio masked in training too)",
        {
            "video-qa": 0.448,
            "ic": 0.740,
            "ocr": 0.342,
            "vqa": 0.456,
            "avqa-ego4d": 0.350,
            "avqa-presentation": 0.465,
            "avssd": 0.235,
        },
    ),
}
LEVELS_NOTE = (
    "Level i is the i-th entry of `connector.levels` (video-salmonn-13b: 0 = 0.5-s windows, 1 = 5-s "
    "windows); a masked stream is multiplied by 0 at test time only."
)
FOOTNOTES = {
    "*": "partial: some selected samples have not been run yet (see the counts under 'Every metric')",
    "§": "partial: `--limit` ran only the first samples of the manifest (counts under 'Every metric'); not "
    "comparable with the paper's number",
    "†": "AVSSD scored by the offline string-match fallback, not the paper's LLM judge (pass --judge-url)",
    "‡": "unavailable (SPICE needs Java and the Stanford CoreNLP 3.6.0 jars); CIDEr-D shown instead",
}


@dataclass
class RunResult:
    dir: Path
    results: dict
    info: dict

    @property
    def task(self) -> str:
        return self.results["task"]

    @property
    def system(self) -> str:
        return self.results["system"]

    @property
    def diagnostics(self) -> str:
        return self.results["diagnostics"]["label"]

    @property
    def key(self) -> tuple[str | None, int | None]:
        d = self.results["diagnostics"]
        return d["mask"], d["zero_level"]

    @property
    def row(self) -> str:
        return f"{self.system} ({self.diagnostics})" if self.diagnostics else self.system

    def main(self) -> dict | None:
        return self.results["metrics"][0] if self.results["metrics"] else None

    @property
    def limit(self) -> int | None:
        """The run's `--limit` (None: the whole manifest)."""
        return self.info.get("settings", {}).get("limit")

    @cached_property
    def manifest_samples(self) -> int | None:
        """How many samples the task's manifest holds without `--limit` (None: no limit, or it cannot be read
        any more)."""
        if self.limit is None:
            return None
        try:
            settings = replace(EvalSettings.from_json(self.info["settings"]), limit=None)
            return len(select_samples(settings))
        except (VideoSalmonnError, OSError, KeyError, TypeError):
            return None

    def limited(self) -> str | None:
        """`limit 3 of 120` when `--limit` left samples of the manifest out, else None."""
        if self.limit is None:
            return None
        total = self.manifest_samples
        if total is not None and total <= self.limit:
            return None
        return f"limit {self.limit}" + (f" of {total}" if total is not None else "")


def load_runs(paths: list[str | Path]) -> tuple[list[RunResult], list[str]]:
    """Merged runs at or below `paths`; a later run of the same (system, diagnostics, task) replaces an earlier
    one, with a note."""
    chosen: dict[tuple[str, str], RunResult] = {}
    notes = []
    for run in find_runs(paths):
        if not run.results_file.is_file():
            raise InputError(f"{run.path}: not merged yet; run `videosalmonn eval merge {run.path}`")
        r = RunResult(run.path, json.loads(run.results_file.read_text(encoding="utf-8")), run.info())
        if (r.row, r.task) in chosen:
            notes.append(f"{r.task} / {r.row}: {r.dir} replaces {chosen[r.row, r.task].dir}")
        chosen[r.row, r.task] = r
    return list(chosen.values()), notes


def write_report(paths: list[str | Path], out: str | Path) -> dict[str, Path]:
    runs, notes = load_runs(paths)
    out = Path(out)
    files = {"markdown": out / "report.md", "json": out / "summary.json", "chart": out / "chart.png"}
    write_text_atomic(files["markdown"], markdown(runs, notes))
    write_json_atomic(files["json"], summary(runs, notes))
    chart(runs, files["chart"])
    return files


# ---------------------------------------------------------------------------------------------- markdown


def markdown(runs: list[RunResult], notes: list[str]) -> str:
    lines = [
        "# SAVE benchmark report",
        "",
        f"{len(runs)} run(s); paper numbers are video-SALMONN 13B (ICML 2024). Ours: value [95% CI]. "
        "WER and accuracies in %, CIDEr and SPIDEr x 100.",
        "",
    ]
    plain = [r for r in runs if not r.diagnostics]
    for title, tasks in TABLES:
        lines += [f"## {title}", "", *_task_table(tasks, plain), ""]
    diagnostic = [r for r in runs if r.diagnostics]
    if diagnostic:
        lines += [
            "## Diagnostics (paper Table 5; visual-only rows of Tables 2-3)",
            "",
            LEVELS_NOTE,
            "",
            *_diagnostics_table(diagnostic, plain),
            "",
        ]
    lines += ["## Every metric", "", *_all_metrics(runs), ""]
    lines += ["## Notes", "", *[f"- `{mark}` {text}" for mark, text in FOOTNOTES.items()]]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _task_table(tasks: list[str], runs: list[RunResult]) -> list[str]:
    header = [f"{SHORT[t]} {'↓' if TASKS[t].lower_is_better else '↑'}" for t in tasks]
    rows = [
        _row(["System", *header]),
        _row(["---"] * (len(tasks) + 1)),
        _row([PAPER_ROW, *[_paper_cell(t) for t in tasks]]),
    ]
    by_cell = {(r.row, r.task): r for r in runs}
    systems = [s for s in dict.fromkeys(r.row for r in runs) if any((s, t) in by_cell for t in tasks)]
    for system in systems:
        rows.append(_row([system, *[_cell(by_cell.get((system, t))) for t in tasks]]))
    return rows


def _diagnostics_table(diagnostic: list[RunResult], plain: list[RunResult]) -> list[str]:
    tasks = [t for _, ts in TABLES for t in ts if any(r.task == t for r in diagnostic)]
    rows = [
        _row(["Setting", *[SHORT[t] for t in tasks]]),
        _row(["---"] * (len(tasks) + 1)),
        _row([PAPER_ROW + ", both levels, audio and video", *[_paper_cell(t) for t in tasks]]),
    ]
    for key, (label, values) in PAPER_DIAGNOSTICS.items():
        if any(r.key == key for r in diagnostic):
            rows.append(_row([label, *[_paper_value(values.get(t), t) for t in tasks]]))
    by_cell = {(r.row, r.task): r for r in diagnostic + plain}
    for row in dict.fromkeys(r.row for r in plain + diagnostic):
        if any((row, t) in by_cell for t in tasks):
            rows.append(_row([row, *[_cell(by_cell.get((row, t))) for t in tasks]]))
    return rows


def _all_metrics(runs: list[RunResult]) -> list[str]:
    rows = [
        _row(
            [
                "Task",
                "System",
                "Metric",
                "Ours",
                "95% CI",
                "Paper",
                "Scored / selected",
                "Failed",
                "Missing media",
                "Not run yet",
                "Run",
                "Note",
            ]
        ),
        _row(["---"] * 12),
    ]
    for r in runs:
        c = r.results["counts"]
        limited = f" (partial: {r.limited()})" if r.limited() else ""
        counts = [
            f"{c['scored']} / {c['selected']}{limited}",
            str(c["failed"]),
            str(c["missing_media"]),
            str(c["pending"]),
        ]
        metrics = r.results["metrics"] or [
            {"name": "-", "value": None, "available": False, "note": "no sample answered", "details": {}}
        ]
        for i, m in enumerate(metrics):
            paper = _paper_cell(r.task) if i == 0 else ""
            ours = format_value(m["value"], m["name"])
            rows.append(_row([r.task, r.row, m["name"], ours, format_ci(m), paper, *counts, str(r.dir), m["note"]]))
    return rows


def _cell(r: RunResult | None) -> str:
    if r is None:
        return "-"
    m = r.main()
    if m is None:
        return "no answers"
    mark = "*" if not r.results["complete"] else ""
    mark += ("§" if r.limited() else "") + ("†" if "fallback" in m["name"] else "")
    if not m["available"]:
        cider = next((x for x in r.results["metrics"] if x["name"] == "CIDEr-D"), None)
        shown = f" (CIDEr-D {format_value(cider['value'], 'CIDEr-D')} {format_ci(cider)})" if cider else ""
        return f"n/a‡{shown}{mark}"
    return f"{format_value(m['value'], m['name'])} {format_ci(m)}{mark}"


def _paper_cell(task: str) -> str:
    return _paper_value(TASKS[task].paper_value, task)


def _paper_value(value: float | str | None, task: str) -> str:
    if value is None or isinstance(value, str):
        return value or "-"
    return format_value(value, TASKS[task].paper_metric)


def format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if _is_percent(metric) else f"{100 * value:.1f}"


def format_ci(m: dict) -> str:
    d = m["details"]
    if "ci95_low" not in d:
        return ""
    low, high = (format_value(d[k], m["name"]).rstrip("%") for k in ("ci95_low", "ci95_high"))
    return f"[{low}, {high}]"


def _is_percent(metric: str) -> bool:
    return metric.lower().startswith(("wer", "accuracy"))


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


# ---------------------------------------------------------------------------------------------- JSON, chart


def summary(runs: list[RunResult], notes: list[str]) -> dict:
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "paper": {name: {"metric": t.paper_metric, "value": t.paper_value} for name, t in TASKS.items()},
        "runs": [
            {
                "dir": str(r.dir),
                "task": r.task,
                "system": r.system,
                "diagnostics": r.results["diagnostics"],
                "complete": r.results["complete"],
                "limit": r.limit,
                "manifest_samples": r.manifest_samples,
                "partial": not r.results["complete"] or r.limited() is not None,
                "counts": r.results["counts"],
                "metrics": r.results["metrics"],
                "paper_value": r.results["paper_value"],
                "model": r.info["model"]["name"],
                "generation": r.info["generation"],
            }
            for r in runs
        ],
        "notes": notes,
    }


def chart(runs: list[RunResult], path: Path) -> Path:
    """The paper's number and each row's, per task that has a run, in the paper's units."""
    tasks = [t for _, ts in TABLES for t in ts if any(r.task == t for r in runs)]
    rows = list(dict.fromkeys(r.row for r in runs))
    by_cell = {(r.row, r.task): r for r in runs}
    series = [Series(PAPER_ROW, [None if TASKS[t].paper_value is None else 100 * TASKS[t].paper_value for t in tasks])]
    for row in rows:
        bars = [_bar_value(by_cell.get((row, t))) for t in tasks]
        series.append(Series(row, [value for value, _ in bars], [ci for _, ci in bars]))
    groups = [SHORT[t] + ("\nlower is better" if TASKS[t].lower_is_better else "") for t in tasks]
    return bar_chart(groups, series, path, title="SAVE: ours vs video-SALMONN 13B (paper); % or x100")


def _bar_value(r: RunResult | None) -> tuple[float | None, tuple[float, float] | None]:
    m = r.main() if r else None
    if m is None or not m["available"]:
        return None, None
    d = m["details"]
    ci = (100 * d["ci95_low"], 100 * d["ci95_high"]) if "ci95_low" in d else None
    return 100 * m["value"], ci
