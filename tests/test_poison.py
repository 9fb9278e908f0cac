"""Hostile input and faults (issue 11): a poison sample fails alone and is given up after MAX_ATTEMPTS, a rerun of
`infer --manifest` retries failed samples, a deeply nested manifest line is `file:line: reason`, and text that is
not valid Unicode in a server request is a 400 (tiny preset, small generated files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEMO_VIDEO, ROOT, needs_media

from videosalmonn.cli import main
from videosalmonn.results import MAX_ATTEMPTS

CLIP = ROOT / "tests" / "assets" / "clip2s.mp4"
POISON = "What is this? \\ud800"  # a lone surrogate once json.loads has read it: the tokenizer raises TypeError


def write_manifest(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good(i: str, prompt: str = "What happens?") -> str:
    return json.dumps({"id": i, "video": str(CLIP), "prompt": prompt})


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def infer(manifest: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["infer", "--model", "tiny", "--device", "cpu", "--manifest", str(manifest), "--out", str(out), *extra])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- row 4


@pytest.mark.slow
def test_poison_sample_fails_alone_is_retried_then_given_up(tmp_path, capsys):
    manifest = write_manifest(
        tmp_path / "in.jsonl", [good("a"), f'{{"id": "b", "video": "{CLIP}", "prompt": "{POISON}"}}', good("c")]
    )
    out = tmp_path / "out.jsonl"
    code, err = infer(manifest, out, capsys, "--batch-size", "3")  # one batch: it falls back to one by one
    assert code == 1 and "2 answered, 1 failed, 0 already in" in err and "Traceback" not in err
    assert "1 of 3 samples have no answer" in err
    first = {r["id"]: r for r in records(out)}
    assert "answer" in first["a"] and "answer" in first["c"]
    assert first["b"]["error"].startswith("TypeError") and first["b"]["attempts"] == 1
    assert first["b"]["prompt"] == "What is this? \ud800"  # written as a JSON escape, read back the same

    code, err = infer(manifest, out, capsys)  # a rerun retries the failed sample only
    assert code == 1 and "0 answered, 1 failed, 2 already in" in err
    assert [(r["id"], r.get("attempts")) for r in records(out)][3:] == [("b", 2)]

    with out.open("a", encoding="utf-8") as f:  # as if it failed MAX_ATTEMPTS times
        for n in range(3, MAX_ATTEMPTS + 1):
            f.write(json.dumps({"id": "b", "error": "TypeError: ...", "attempts": n}) + "\n")
    before = out.read_text(encoding="utf-8")
    code, err = infer(manifest, out, capsys)
    assert code == 1 and "0 answered, 0 failed, 2 already in" in err
    assert f"1 sample(s) failed {MAX_ATTEMPTS} times and were not run again: b" in err
    assert out.read_text(encoding="utf-8") == before  # not looped on


@needs_media
@pytest.mark.slow
def test_poison_sample_in_eval_run_fails_alone(tmp_path, capsys):
    from test_eval_runner import how2

    from videosalmonn.evaluation.runner import run_eval
    from videosalmonn.evaluation.settings import EvalSettings

    assert DEMO_VIDEO.is_file()
    manifest = how2(tmp_path, 3)
    entries = json.loads(manifest.read_text())
    entries[1]["question"] = "Transcribe \ud800 it"
    manifest.write_text(json.dumps(entries))  # ensure_ascii: the surrogate is a \ud800 escape
    settings = EvalSettings(task="avsr", manifest=str(manifest), media_root=str(tmp_path))
    summary = run_eval(settings, tmp_path / "run", batch_size=3)
    assert (summary.answered, summary.failed) == (2, 1)
    shard = records(tmp_path / "run" / "samples.rank0.jsonl")
    failed = [r for r in shard if "error" in r]
    assert len(failed) == 1 and failed[0]["error"].startswith("TypeError") and failed[0]["attempts"] == 1
    assert summary.results["counts"]["failed"] == 1  # merged, with the surrogate written as an escape

    args = ["eval", "run", "--task", "avsr", "--model", "tiny", "--device", "cpu"]
    args += ["--manifest", str(manifest), "--media-root", str(tmp_path), "--out", str(tmp_path / "run")]
    for _ in range(2, MAX_ATTEMPTS + 1):
        assert main(args) == 1
        assert "0 answered, 1 failed, 2 already done" in capsys.readouterr().err
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "0 answered, 0 failed, 2 already done" in err and f"failed {MAX_ATTEMPTS} times" in err
    attempts = [r["attempts"] for r in records(tmp_path / "run" / "samples.rank0.jsonl") if "error" in r]
    assert attempts == list(range(1, MAX_ATTEMPTS + 1))


# ---------------------------------------------------------------------------------------------- row 15


@pytest.mark.slow
def test_infer_manifest_rerun_retries_error_records(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "in.jsonl", [good("a"), good("b")])
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"id": "a", "prompt": "What happens?", "error": "out of memory (MemoryError)", "attempts": 1}) + "\n"
    )
    code, err = infer(manifest, out, capsys)
    assert code == 0, err
    assert "2 answered, 0 failed, 0 already in" in err
    assert [("answer" in r, r["id"]) for r in records(out)] == [(False, "a"), (True, "a"), (True, "b")]


# ---------------------------------------------------------------------------------------------- row 11


def test_deeply_nested_manifest_line_names_file_and_line(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "deep.jsonl", [good("a"), "[" * 100_000 + "]" * 100_000])
    code, err = infer(manifest, tmp_path / "out.jsonl", capsys)
    assert code == 2 and "deep.jsonl:2: not valid JSON (nested too deeply)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    official = tmp_path / "deep.json"
    official.write_text("[" * 100_000 + "]" * 100_000)
    code, err = infer(official, tmp_path / "out.jsonl", capsys)
    assert code == 2 and "deep.json: not valid JSON (nested too deeply)" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- row 9


@pytest.mark.slow
def test_server_refuses_text_that_is_not_unicode_with_400():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from videosalmonn.pipeline import Pipeline
    from videosalmonn.serving import ServeSettings, create_app

    settings = ServeSettings(model_name="tiny", allowed_root=CLIP.parent, max_tokens=4)
    app = create_app(Pipeline.from_pretrained("tiny", device="cpu"), settings)

    def chat(content: str) -> str:
        return '{"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": ' + content + "}]}"

    def parts(text: str) -> str:
        return '[{"type": "text", "text": "' + text + '"}, {"type": "video_url", "video_url": {"url": "clip2s.mp4"}}]'

    bodies = {
        "text part": chat(parts(POISON)),
        "string content": chat(f'"{POISON}"'),
        "key": '{"model": "tiny", "\\udfff": 1, "messages": []}',
        "raw surrogate bytes": chat('"\xed\xa0\x80"').encode("latin-1"),
    }
    with TestClient(app, raise_server_exceptions=False) as client:  # a bug is a 500, as in the server
        for name, body in bodies.items():
            r = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (name, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_text" and "not valid Unicode" in error["message"], (name, error)
        ok = chat(parts("Hi"))
        assert client.post("/v1/chat/completions", content=ok).status_code == 200  # still serving
