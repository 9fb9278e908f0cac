"""Write docs/savemini-frames.png: a contact sheet of SAVE-mini clips, one row per visual task, frames across time.

    .venv/bin/python scripts/make_savemini_sheet.py [--seed 0]

Scenes come from the sampler (the first test clip of every task with a picture; no speech is synthesised: the
clip lengths use a fixed 0.3 s per word, so rows show the world's look, not a particular world's exact clips).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videosalmonn.savemini.frames import FONT_PATH, render_frame
from videosalmonn.savemini.scene import FRAME_SIZE
from videosalmonn.savemini.world import build_scene, plan_world

OUT = Path(__file__).resolve().parents[1] / "docs" / "savemini-frames.png"
COLUMNS = 5
THUMB = 160
LABEL = 175


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    plans = [p for p in plan_world(args.seed, 0, 0, 13) if p.kind != "audio"]
    seen, rows = set(), []
    for plan in plans:
        if plan.task in seen:
            continue
        seen.add(plan.task)
        scene = build_scene(plan, lambda u: 0.3 * len(u.text.split()))
        times = [0.0] if scene.kind == "image" else np.linspace(0, scene.duration, COLUMNS + 2)[1:-1]
        rows.append((f"{plan.task}\n{scene.kind}, {scene.duration:.1f} s", times, scene))
    font = ImageFont.truetype(str(FONT_PATH), 14)
    sheet = Image.new("RGB", (LABEL + COLUMNS * (THUMB + 4), len(rows) * (THUMB + 20)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (label, times, scene) in enumerate(rows):
        y = r * (THUMB + 20)
        draw.multiline_text((6, y + THUMB // 2 - 14), label, fill=(0, 0, 0), font=font)
        for c, t in enumerate(times):
            frame = Image.fromarray(render_frame(scene, float(t))).resize((THUMB, THUMB), Image.BILINEAR)
            x = LABEL + c * (THUMB + 4)
            sheet.paste(frame, (x, y))
            draw.text((x, y + THUMB + 2), f"t = {t:.1f} s", fill=(80, 80, 80), font=font)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"{args.out}: {len(rows)} rows, frames {FRAME_SIZE}^2 shown at {THUMB}^2")


if __name__ == "__main__":
    main()
