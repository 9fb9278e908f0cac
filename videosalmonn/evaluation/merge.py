"""The last step of a run: the shard files -> samples.jsonl (every selected sample once, in manifest order) and
results.json (the task's metrics with 95% CIs, and how many samples were scored, failed, missing or not run).

Run by whichever process finishes last, or at any time by `videosalmonn eval merge DIR` (`merge_run`); it only
reads the shards, so it can be repeated. Failed and missing samples are counted, never scored as wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videosalmonn.data.save import BenchmarkSample
from videosalmonn.evaluation.bootstrap import bootstrap_ci
from videosalmonn.evaluation.metrics import MetricResult
from videosalmonn.evaluation.rundir import RunDir, write_json_atomic, write_text_atomic
from videosalmonn.evaluation.settings import EvalSettings, samples_missing_media, select_samples
from videosalmonn.evaluation.tasks import Task
from videosalmonn.results import json_line as results_json_line

FORMAT = "videosalmonn-eval/1"
BOOTSTRAP = {"resamples": 1000, "seed": 0, "confidence": 0.95}  # bootstrap.py's defaults, recorded


def merge_run(out: str | Path) -> dict:
    """Rebuild samples.jsonl and results.json of a run directory from its shards (`videosalmonn eval merge`)."""
    run = RunDir(out)
    settings = EvalSettings.from_json(run.info()["settings"])
    task = settings.resolve_task()
    samples = select_samples(settings, task)
    return merge(run, settings, task, samples, samples_missing_media(samples))


def merge(
    run: RunDir, settings: EvalSettings, task: Task, samples: list[BenchmarkSample], missing: dict[str, list[str]]
) -> dict:
    """Every selected sample once, in manifest order, into samples.jsonl; the metrics into results.json."""
    with run.merge_lock():
        records = run.records()
        answered = [s for s in samples if s.id in records and "error" not in records[s.id]]
        metrics = score(task, answered, records)
        within_set = set_scores(answered, records, metrics)
        merged = []
        for s in samples:
            if s.id in missing:
                merged.append({**base_record(s), "error": "media not found", "missing_media": missing[s.id]})
            elif s.id in records:
                merged.append({**records[s.id], **within_set.get(s.id, {})})
        write_text_atomic(run.samples_file, "".join(json_line(r) for r in merged))
        results = results_json(settings, task, samples, records, missing, metrics)
        write_json_atomic(run.results_file, results)
    return results


def score(task: Task, answered: list[BenchmarkSample], records: dict[str, dict]) -> list[MetricResult]:
    """The task's metrics over the answered samples (stored per-sample scores reused), each with a 95% CI."""
    if not answered:
        return []
    outputs = [records[s.id]["output"] for s in answered]
    return [with_ci(m) for m in task.aggregate(answered, outputs, [records[s.id]["score"] for s in answered])]


def set_scores(
    answered: list[BenchmarkSample], records: dict[str, dict], metrics: list[MetricResult]
) -> dict[str, dict]:
    """Corpus metrics (CIDEr-D) have no stand-alone per-sample score (the records' `score` is null); the merged
    file gets each sample's value within the evaluated set instead, from the first metric that has them."""
    if any(records[s.id]["score"] is not None for s in answered):
        return {}
    source = next((m for m in metrics if m.available and m.per_sample and len(m.per_sample) == len(answered)), None)
    if source is None:
        return {}
    return {s.id: {"score_in_set": {source.name: v}} for s, v in zip(answered, source.per_sample)}


def results_json(
    settings: EvalSettings,
    task: Task,
    samples: list[BenchmarkSample],
    records: dict[str, dict],
    missing: dict[str, list[str]],
    metrics: list[MetricResult],
) -> dict:
    answered = sum(1 for s in samples if s.id in records and "error" not in records[s.id])
    failed = [s for s in samples if s.id in records and "error" in records[s.id] and s.id not in missing]
    pending = len(samples) - len(missing) - answered - len(failed)
    return {
        "format": FORMAT,
        "task": task.name,
        "title": task.title,
        "paper_metric": task.paper_metric,
        "paper_value": task.paper_value,
        "lower_is_better": task.lower_is_better,
        "system": system_label(settings),
        "model": settings.model,
        "overrides": list(settings.overrides),
        "diagnostics": {**settings.diagnostics(), "label": settings.diagnostics_label()},
        "complete": pending == 0,
        "counts": {
            "selected": len(samples),
            "scored": answered,
            "failed": len(failed),
            "missing_media": len(missing),
            "pending": pending,
        },
        "metrics": [metric_json(m) for m in metrics],
        "failures": {s.id: records[s.id]["error"] for s in failed[:20]},
        "bootstrap": BOOTSTRAP,
    }


def with_ci(result: MetricResult) -> MetricResult:
    """Add a 95% CI where the task gave none but the metric is the mean of its per-sample values (CIDEr-D,
    SPIDEr: each sample's score with the IDF of the whole set, which the bootstrap then holds fixed)."""
    if not result.available or "ci95_low" in result.details or not result.per_sample:
        return result
    if abs(sum(result.per_sample) / len(result.per_sample) - result.value) > 1e-6:
        return result
    low, high = bootstrap_ci(result.per_sample)
    return MetricResult(
        result.name,
        result.value,
        note=result.note,
        per_sample=result.per_sample,
        details={
            **result.details,
            "ci95_low": low,
            "ci95_high": high,
            "ci_method": "per-sample bootstrap, IDF fixed on the whole set",
        },
    )


def metric_json(m: MetricResult) -> dict:
    return {"name": m.name, "value": m.value, "available": m.available, "note": m.note, "details": dict(m.details)}


def system_label(settings: EvalSettings) -> str:
    return settings.model + (f" [{', '.join(settings.overrides)}]" if settings.overrides else "")


def base_record(sample: BenchmarkSample) -> dict:
    out: dict[str, Any] = {"id": sample.id, "prompt": sample.prompt}
    if sample.history:
        out["history"] = [list(turn) for turn in sample.history]
    return {**out, "reference": list(sample.references)}


def json_line(record: dict) -> str:
    return results_json_line(record)
