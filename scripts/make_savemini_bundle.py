"""Write the SAVE-mini clips bundled with the package (videosalmonn/savemini/bundled/): a test sample per task.

    .venv/bin/python scripts/make_savemini_bundle.py [--seed 0]

It makes a small world (one task cycle of the test split, seed 0) in a temporary folder, takes the first test
sample of every task, copies its media (a video carries its own sound track, which is the same sound as its
separate .flac) and writes bundled/questions.jsonl: training-manifest lines (id, task, media, the exact prompt
and the answer) with media paths relative to the bundle. The result is deterministic for a seed; the files are
committed (under 2 MB) so the README quickstart and the tests need no generation step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from videosalmonn.savemini.generate import WorldSpec, make_world
from videosalmonn.savemini.world import TASKS

BUNDLE = Path(__file__).resolve().parents[1] / "videosalmonn" / "savemini" / "bundled"
MEDIA_KEYS = ("video", "image", "audio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BUNDLE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        make_world(world, WorldSpec(seed=args.seed, n_train=0, n_val=0, n_test=13), progress=False)
        lines = [json.loads(line) for line in (world / "test.jsonl").read_text(encoding="utf-8").splitlines()]
        chosen = [next(x for x in lines if x["task"] == task) for task in TASKS]
        answer = lambda x: x["conversation"][-1]["content"]  # noqa: E731
        avm = next(x for x in chosen if x["task"] == "avm")
        chosen.append(next(x for x in lines if x["task"] == "avm" and answer(x) != answer(avm)))  # Yes and No
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for sample in chosen:
            if sample.get("video"):
                sample.pop("audio", None)  # the video's own track is the same sound
            for key in MEDIA_KEYS:
                if key in sample:
                    src = world / sample[key]
                    shutil.copyfile(src, args.out / src.name)
                    sample[key] = src.name
        text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in chosen)
        (args.out / "questions.jsonl").write_text(text, encoding="utf-8")
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"{args.out}: {len(chosen)} samples, {size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
