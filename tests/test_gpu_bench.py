"""bench/gpu.py on a machine without CUDA: it says so in one line; its CPU-side parts (arguments, the random
weights and clip it writes, one measured run, the extrapolation, the official check's end-to-end stages) work
here with the tiny preset. It has never run on a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import GOLDEN, needs_golden

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def gpu():
    sys.path.insert(0, str(BENCH))
    import gpu

    yield gpu
    sys.path.remove(str(BENCH))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the bench would run")
def test_without_cuda_it_says_so_in_one_line():
    out = subprocess.run([sys.executable, str(BENCH / "gpu.py")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "bench/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine (nothing measured)"
    ]


def test_arguments(gpu):
    args = gpu.parse_args([])
    assert (args.llm_depth, args.seconds, args.quantization, args.skip_official) == (
        8,
        30.0,
        ["none", "int8", "nf4"],
        False,
    )
    args = gpu.parse_args(["--llm-depth", "2", "--quantization", "nf4", "--seconds", "5", "--json"])
    assert (args.llm_depth, args.quantization, args.seconds, args.json) == (2, ["nf4"], 5.0, True)
    for bad in (["--llm-depth", "41"], ["--quantization", "int4"], ["--seconds", "0"]):
        with pytest.raises(SystemExit):
            gpu.parse_args(bad)


@pytest.mark.slow  # writes a tiny model and a 2-s clip, loads it twice in fresh processes: ~35 s
def test_the_whole_driver_runs_on_the_cpu_with_the_tiny_preset(gpu, tmp_path, capsys):
    """The driver as a GPU machine runs it, with the tiny preset on the CPU (hidden --device/--model): the weights
    it writes (real layouts, LLM as safetensors) load with every coverage check; each quantisation is measured in
    its own process with every stage, token counts and a 40-layer extrapolation; the report prints."""
    import json

    cmd = [sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--model", "tiny", "--skip-official"]
    cmd += ["--llm-depth", "2", "--seconds", "2", "--new-tokens", "3", "--quantization", "none", "int8"]
    out = subprocess.run([*cmd, "--keep", str(tmp_path), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    none, int8 = r["runs"]
    assert "error" not in none and "error" not in int8, r["runs"]
    assert list(none["stages"]) == ["load", "decode", "encoders", "connector", "prefill", "generate"]
    assert all(s["seconds"] > 0 and s["peak_bytes"] is None for s in none["stages"].values())
    assert none["media_tokens"] > 0 and none["prompt_tokens"] > none["media_tokens"] and 1 <= none["new_tokens"] <= 3
    assert (none["backend"], int8["backend"]) == ("none", "int8") and int8["layer_bytes"] < none["layer_bytes"]
    assert none["at_40_layers"]["prefill_s"] == pytest.approx(none["stages"]["prefill"]["seconds"] * 20)
    assert r["rows"] == [] and r["official"] is None  # no GPU peaks to compare with the estimate here
    root = tmp_path / "tiny-depth2-2s"
    assert any(k.startswith("vicuna/model-") and k.endswith(".safetensors") for k in r["inputs"]["sizes"])
    assert (root / "clip" / "clip.mkv").is_file() and (root / "instructblip" / "qformer_tokenizer").is_dir()
    assert gpu.write_inputs(root, gpu.parse_args(["--seconds", "2"]), "tiny") == r["inputs"]  # written once
    gpu.report(r)
    printed = capsys.readouterr().out
    assert "int8 (int8)" in printed and "official check: skipped" in printed


def test_extrapolation_to_40_layers(gpu):
    stage = {"seconds": 1.0, "peak_bytes": 100}
    run = {
        "depth": 8,
        "prompt_tokens": 10,
        "new_tokens": 2,
        "layer_bytes": 1000,
        "kv_bytes_per_token_per_layer": 10,
        "tokens_per_s": 20.0,
        "stages": {"prefill": {"seconds": 0.5, "peak_bytes": 300}, "load": stage},
    }
    full = gpu.extrapolate(run)
    assert full["peak_bytes"] == 300 + 32 * (1000 + 10 * 12)
    assert full["prefill_s"] == 0.5 * 5 and full["tokens_per_s"] == 4.0


@needs_golden
@pytest.mark.slow  # the golden cases end to end: ~25 s
def test_official_check_it_runs_on_cuda_passes_here_on_the_cpu(gpu):
    out = gpu.check_official_on("cpu", GOLDEN)
    assert out["failed"] == [] and out["stages"] == len(out["values"]) > 60 and out["max_float_error"] <= 1e-4
    for case in ("av", "video_only", "audioimage"):
        for stage in ("greedy20_ids", "beam20_ids", "instructblip_query_out", "media_embeds", "greedy_path_logits"):
            assert f"{case}/{stage}/end_to_end" in out["values"], (case, stage)
    assert {"av/eva_out/end_to_end", "av/whisper_encoder_out/end_to_end", "av/beam_default_ids/end_to_end"} <= set(
        out["values"]
    )
