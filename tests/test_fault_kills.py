"""The fault test (issue 11, item 6): a tiny training run, a tiny `eval run` and a tiny `infer --manifest` are each
killed with SIGKILL at seeded random points, several times, and resumed each time; nothing is lost or corrupted.
Training ends with bit-identical weights to an uninterrupted run and every checkpoint verifies; eval and infer end
with every sample exactly once and the same records (and metrics) as an uninterrupted run.

Each run is the real command (`videosalmonn.cli.main`) in a forked child (imports already done: ~1 s to start, not
~10), killed with a real SIGKILL (`Process.kill`) a random time after its output first grows."""

from __future__ import annotations

import json
import multiprocessing
import random
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, needs_media
from test_eval_runner import librispeech
from test_train_faults import write_config

from videosalmonn.cli import main

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"
KILLS = 3  # per run
SEED = 11

pytestmark = pytest.mark.usefixtures("one_thread")


def _child(argv: list[str], log: str) -> None:
    sys.stdout = sys.stderr = open(log, "a", buffering=1)  # noqa: SIM115 (the child's whole life)
    sys.exit(main(argv))


def run_with_kills(argv, grows: Path, rng: random.Random, log: Path, within: float = 0.8) -> list[float]:
    """Run `videosalmonn argv` (a list, or a function giving each attempt's) until it exits 0, killing it KILLS
    times, each a seeded random 0-`within` s after `grows` (a file it writes) is seen growing. The delays of the
    kills that landed (a run may finish before its kill). `within` is about one record's time: a fast machine
    answers a tiny sample in ~0.15 s, and a delay of several records' time lets the run finish before its kill."""
    fork = multiprocessing.get_context("fork")
    kills: list[float] = []
    for attempt in range(KILLS + 1):
        size = grows.stat().st_size if grows.exists() else -1
        child = fork.Process(target=_child, args=(argv() if callable(argv) else argv, str(log)))
        child.start()
        if attempt < KILLS:
            deadline = time.monotonic() + 60
            while child.is_alive() and (grows.stat().st_size if grows.exists() else -1) == size:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
            delay = rng.uniform(0.0, within)
            child.join(delay)
            if child.is_alive():
                child.kill()  # SIGKILL
                child.join()
                assert child.exitcode == -9
                kills.append(delay)
                continue
        child.join(120)
        assert child.exitcode == 0, log.read_text()[-3000:]
        return kills
    raise AssertionError("unreachable")


def lines(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), raw[-80:]
    return [json.loads(line) for line in raw.decode().splitlines()]


def last_per_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


@needs_media
@pytest.mark.slow
def test_training_killed_at_random_points_ends_with_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    from videosalmonn.training.config import load_train_config
    from videosalmonn.training.loop import train
    from videosalmonn.training.verify import check_checkpoint

    steps = ["steps=12", "checkpoint.every=1"]
    (tmp_path / "ref").mkdir()
    reference = write_config(tmp_path / "ref", tmp_path / "ref/run", tmp_path / "ref/features")
    train(load_train_config(reference, steps))
    (tmp_path / "cut").mkdir()
    config = write_config(tmp_path / "cut", tmp_path / "cut/run", tmp_path / "cut/features")
    ref, cut = tmp_path / "ref/run/checkpoints", tmp_path / "cut/run/checkpoints"

    def argv():  # --resume once a checkpoint exists (a run killed before its first one starts over)
        return ["train", "--config", str(config), *steps] + (["--resume"] if list(cut.glob("step-*")) else [])

    kills = run_with_kills(argv, tmp_path / "cut/run/metrics.csv", random.Random(f"{SEED}-train"), tmp_path / "log")
    assert len(kills) >= 2, kills  # most land (a run may finish before its last kill)

    names = sorted(p.name for p in cut.glob("step-*"))
    assert names == [f"step-{s:06d}" for s in range(1, 13)] and not list(cut.glob(".step-*"))
    for name in names:
        check_checkpoint(cut / name)  # every file matches its recorded sha256
    final = [json.loads((c / "step-000012/state.json").read_text())["trainable_sha256"] for c in (ref, cut)]
    assert final[0] == final[1]
    a, b = load_file(ref / "step-000012/trainable.safetensors"), load_file(cut / "step-000012/trainable.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical


@needs_media
@pytest.mark.slow
def test_eval_run_killed_at_random_points_loses_nothing(tmp_path):
    root = librispeech(tmp_path / "data", 8)
    args = ["eval", "run", "--task", "asr", "--media-root", str(root), "--batch-size", "1", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "cut"
    kills = run_with_kills(
        [*args, "--out", str(out)], out / "samples.rank0.jsonl", random.Random(f"{SEED}-eval"), tmp_path / "log", 0.2
    )
    assert len(kills) >= 2, kills  # most land (a run may finish before its last kill)

    shard = lines(out / "samples.rank0.jsonl")
    ids = [f"1272-128104-{i:04d}" for i in range(8)]
    assert sorted(r["id"] for r in shard) == ids  # every sample answered exactly once: none lost, none redone
    merged = lines(out / "samples.jsonl")
    assert merged == lines(tmp_path / "ref/samples.jsonl")
    results, expected = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "ref"))
    assert results["metrics"] == expected["metrics"] and results["complete"]


@pytest.mark.slow
def test_infer_manifest_killed_at_random_points_loses_nothing(tmp_path):
    manifest = tmp_path / "in.jsonl"
    ids = [f"s{i}" for i in range(8)]
    manifest.write_text("".join(json.dumps({"id": i, "video": str(CLIP), "prompt": f"What {i}?"}) + "\n" for i in ids))
    args = ["infer", "--model", "tiny", "--device", "cpu", "--manifest", str(manifest), "--batch-size", "1"]
    assert main([*args, "--out", str(tmp_path / "ref.jsonl")]) == 0
    out = tmp_path / "cut.jsonl"
    kills = run_with_kills([*args, "--out", str(out)], out, random.Random(f"{SEED}-infer"), tmp_path / "log", 0.2)
    assert len(kills) >= 2, kills  # most land (a run may finish before its last kill)

    records = lines(out)
    assert sorted(r["id"] for r in records) == ids and "error" not in str(records)  # each once, no error
    assert last_per_id(records) == last_per_id(lines(tmp_path / "ref.jsonl"))
