"""A grouped bar chart drawn with Pillow (a dependency already; matplotlib would be one more for one picture).

    bar_chart(["ASR\\nlower is better", "AVQA (E)"],
              [Series("paper", [2.6, 49.8]), Series("tiny", [98.0, None], [(95.0, 101.0), None])],
              "chart.png", title="SAVE")

A group label may have a second line (after a newline). Values are drawn on a 0..100 axis (the paper's
units: %, or CIDEr/SPIDEr x 100); a bar above 100 is cut at the top and labelled "<value>+". Whiskers show
95% confidence intervals.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from videosalmonn.results import write_atomic

COLOURS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
AXIS_MAX = 100.0
BAR_W, GROUP_GAP, PLOT_H = 26, 30, 300
LEFT, TOP, LABEL_H = 56, 48, 40


@dataclass
class Series:
    label: str
    values: list[float | None]  # one per group; None: no bar
    cis: list[tuple[float, float] | None] = field(default_factory=list)


def bar_chart(groups: list[str], series: list[Series], path: str | Path, title: str = "") -> Path:
    font, small, tiny = (ImageFont.load_default(size=n) for n in (13, 10, 9))
    group_w = len(series) * BAR_W + GROUP_GAP
    legend_h = 18 * len(series) + 10
    width = max(480, LEFT + len(groups) * group_w + 20)
    height = TOP + PLOT_H + LABEL_H + legend_h
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((LEFT, 12), title, fill="black", font=font)
    _axis(draw, width, small)
    for g, name in enumerate(groups):
        x0 = LEFT + g * group_w + GROUP_GAP // 2
        for k, s in enumerate(series):
            value = s.values[g]
            if value is not None:
                ci = s.cis[g] if g < len(s.cis) else None
                _bar(draw, x0 + k * BAR_W, value, ci, COLOURS[k % len(COLOURS)], tiny)
        for n, line in enumerate(name.split("\n")):
            draw.text(
                (x0 + len(series) * BAR_W / 2, TOP + PLOT_H + 6 + 13 * n), line, fill="black", font=small, anchor="ma"
            )
    for k, s in enumerate(series):
        y = TOP + PLOT_H + LABEL_H + 18 * k
        draw.rectangle([LEFT, y, LEFT + 12, y + 12], fill=COLOURS[k % len(COLOURS)])
        draw.text((LEFT + 18, y), s.label, fill="black", font=small)
    png = io.BytesIO()
    img.save(png, format="PNG")
    write_atomic(path, png.getvalue())
    return Path(path)


def _y(value: float) -> float:
    return TOP + PLOT_H * (1 - min(max(value, 0.0), AXIS_MAX) / AXIS_MAX)


def _axis(draw: ImageDraw.ImageDraw, width: int, font) -> None:
    for tick in range(0, int(AXIS_MAX) + 1, 20):
        y = _y(tick)
        draw.line([LEFT, y, width - 10, y], fill="#dddddd" if tick else "black")
        draw.text((LEFT - 6, y), str(tick), fill="black", font=font, anchor="rm")
    draw.line([LEFT, TOP, LEFT, TOP + PLOT_H], fill="black")


def _bar(draw: ImageDraw.ImageDraw, x: float, value: float, ci: tuple[float, float] | None, colour: str, font) -> None:
    draw.rectangle([x + 1, _y(value), x + BAR_W - 2, _y(0)], fill=colour)
    if ci is not None:
        mid = x + BAR_W / 2
        draw.line([mid, _y(ci[0]), mid, _y(ci[1])], fill="black", width=1)
        for end in ci:
            draw.line([mid - 3, _y(end), mid + 3, _y(end)], fill="black")
    label = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    draw.text(
        (x + BAR_W / 2, _y(value) - 2), label + ("+" if value > AXIS_MAX else ""), fill="black", font=font, anchor="md"
    )
