"""Peak memory of `videosalmonn infer` (tiny preset) on the hostile inputs of issue 11, each in a fresh process.

    .venv/bin/python scripts/hostile_memory.py [--dir DIR] [--h264-minutes 30] [--flac-hours 3]

Writes the inputs small (the generators of tests/test_media_budget.py): a pixel bomb (2 frames of 16000² PNG in a
.mov), a 16-bit 13000² PNG, headerless raw H.264 (64x64, no duration in any header), an mp4 with frames at 0 s and
10 h, a 3-hour FLAC, the demo mp4 cut in half; and, for scale, a 2-s clip (one ordinary answer).
Each runs `videosalmonn.cli.main(["infer", ...])` in a child that then reads its own peak RSS (VmHWM in
/proc/self/status: the child's alone, unlike getrusage after fork). Prints a markdown table: input, file size,
outcome (answered, with what `cut` reports, or the one-line error), peak RSS and its excess over the model alone
(a child that only builds the tiny Pipeline).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CHILD = """
import contextlib, io, json, sys
from videosalmonn.cli import main
err, out = io.StringIO(), io.StringIO()
try:
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        if sys.argv[1:] == ["model"]:  # the model alone: what every row is measured against
            from videosalmonn.pipeline import Pipeline
            rc = 0 if Pipeline.from_pretrained("tiny", device="cpu") else 1
        else:
            rc = main(sys.argv[1:])
except BaseException as e:  # a traceback: what the issue saw
    rc, err = f"{type(e).__name__}", io.StringIO(f"{type(e).__name__}: {str(e)[:200]}")
peak = int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM")).split()[1])
lines = err.getvalue().replace(chr(13), chr(10)).splitlines()
errors = [x for x in lines if x.startswith("error")]
print(json.dumps({"rc": rc, "error": errors[-1] if errors else err.getvalue()[-300:], "answer": out.getvalue(),
                  "notes": [x for x in lines if x.startswith("note:")], "peak_kib": peak}))
"""


def make_inputs(base: Path, h264_minutes: int, flac_hours: int) -> list[tuple[str, str, Path, float]]:
    """(name, infer flag, path, seconds it took to write)."""
    from conftest import DEMO_VIDEO
    from PIL import Image
    from test_media_budget import write_big_mov, write_headerless_video, write_silent_flac, write_sparse_mp4

    def png16(path: Path) -> Path:
        Image.new("I;16", (13000, 13000)).save(path)
        return path

    def half(path: Path) -> Path:
        data = DEMO_VIDEO.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    plan = [
        ("the tiny model alone (Pipeline.from_pretrained)", "model", lambda p: ROOT / "tests/assets", "-"),
        ("baseline: 2-s clip (tests/assets)", "--video", lambda p: ROOT / "tests/assets/clip2s.mp4", "clip2s.mp4"),
        ("pixel bomb: 2 frames of 16000² PNG in .mov", "--video", lambda p: write_big_mov(p, 16000), "bomb.mov"),
        ("16-bit 13000² PNG", "--image", png16, "big16.png"),
        (
            f"headerless raw H.264, {h264_minutes} min of 64x64",
            "--video",
            lambda p: write_headerless_video(p, h264_minutes * 60),
            "raw.h264",
        ),
        ("mp4 with frames at 0 s and 10 h", "--video", lambda p: write_sparse_mp4(p, 10 * 3600), "sparse.mp4"),
        (
            f"{flac_hours}-hour FLAC (8 kHz silence)",
            "--audio",
            lambda p: write_silent_flac(p, flac_hours * 3600),
            "long.flac",
        ),
        ("truncated mp4 (the demo clip cut in half)", "--video", half, "half.mp4"),
    ]
    inputs = []
    for name, flag, make, file in plan:
        start = time.monotonic()
        path = make(base / file)
        inputs.append((name, flag, Path(path), time.monotonic() - start))
        if Path(path).is_file():
            print(f"{path}: {Path(path).stat().st_size / 1e3:.0f} KB, {inputs[-1][3]:.1f} s to write", file=sys.stderr)
    return inputs


def measure(flag: str, path: Path) -> dict:
    argv = ["model"] if flag == "model" else ["infer", "--model", "tiny", "--device", "cpu", flag, str(path)]
    argv += [] if flag == "model" else ["--prompt", "What is this?"]
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"rc": done.returncode}
    return {**result, "seconds": time.monotonic() - start}


def outcome(r: dict) -> str:
    if r["rc"] == 0:
        cut = "; ".join(n.removeprefix("note: ") for n in r["notes"])
        return "answered (exit 0)" + (f", cut reported: {cut}" if cut else "")
    text = r.get("error", "").replace("|", "\\|").strip()
    return f"exit {r['rc']}: `{text}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="write the inputs here (default: a temporary directory)")
    parser.add_argument("--h264-minutes", type=int, default=30)
    parser.add_argument("--flac-hours", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.dir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        rows = []
        for name, flag, path, _ in make_inputs(base, args.h264_minutes, args.flac_hours):
            r = measure(flag, path)
            r["error"] = r.get("error", "").replace(f"{base}/", "")  # the table names the files alone
            rows.append((name, path.stat().st_size if path.is_file() else 0, r))
            print(f"{name}: {json.dumps(r)[:400]}", file=sys.stderr)
    baseline = rows[0][2]["peak_kib"] / 1024
    print("| input | file size | outcome | peak RSS | above the model alone | time |")
    print("|---|---|---|---|---|---|")
    for name, size, r in rows:
        peak, kb = r.get("peak_kib", 0) / 1024, f"{size / 1e3:,.0f} KB" if size else "-"
        print(f"| {name} | {kb} | {outcome(r)} | {peak:,.0f} MB | {peak - baseline:+,.0f} MB | {r['seconds']:.1f} s |")
    worst = max(r.get("peak_kib", 0) for _, _, r in rows[2:]) / 1024 - baseline
    print(f"\nworst hostile input: {worst:+,.0f} MB above the tiny model alone ({baseline:,.0f} MB)")


if __name__ == "__main__":
    main()
