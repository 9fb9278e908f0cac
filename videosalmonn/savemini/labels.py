"""What a frame shows, as classification targets read from the Scene: the labels that train the `mini` visual tower.

No small pretrained image encoder installs offline, so `mini`'s EVA + image Q-Former are trained on SAVE-mini frames
(`videosalmonn/savemini/towers.py`) to tell what the tasks ask about, then frozen. The targets of a frame at time t
come from the scene's own parameters (like every SAVE-mini label), one row per colour since a scene's colours are
all different:

    present  (8,)  float   an object of this colour is on screen
    shape    (8,)  long    its shape (SHAPES index)                          IGNORE where absent
    flash    (8,)  float   it is flashing                                    (weighted by present)
    x, y     (8,)  long    the third of the frame its centre is in (0, 1, 2) IGNORE where absent
    size     (8,)  long    its size class (SIZES index)                      IGNORE where absent
    background ()  long    BACKGROUNDS index
    text       ()  float   a word or number is on screen
    chars    (12,) long    its characters (CHARS index + 1; 0 ends the text) IGNORE without text
    text_colour () long    its colour                                         IGNORE without text
"""

from __future__ import annotations

import numpy as np

from videosalmonn.savemini.frames import FRAME_SIZE, object_state
from videosalmonn.savemini.scene import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
MAX_CHARS = 12
IGNORE = -100
COLOUR_NAMES = tuple(COLOURS)
BACKGROUND_NAMES = tuple(BACKGROUNDS)
SIZE_NAMES = tuple(SIZES)

# head name -> (rows, classes): classes 1 = a binary target (BCE), else a softmax over `classes`
HEADS: dict[str, tuple[int, int]] = {
    "present": (len(COLOURS), 1),
    "shape": (len(COLOURS), len(SHAPES)),
    "flash": (len(COLOURS), 1),
    "x": (len(COLOURS), 3),
    "y": (len(COLOURS), 3),
    "size": (len(COLOURS), len(SIZES)),
    "background": (1, len(BACKGROUNDS)),
    "text": (1, 1),
    "chars": (MAX_CHARS, len(CHARS) + 1),
    "text_colour": (1, len(COLOURS)),
}


def frame_targets(scene: Scene, t: float) -> dict[str, np.ndarray]:
    """The targets of the frame at time t (an image: t = 0), shaped (rows,) per head of HEADS."""
    n = len(COLOURS)
    out = {
        "present": np.zeros(n, np.float32),
        "shape": np.full(n, IGNORE, np.int64),
        "flash": np.zeros(n, np.float32),
        "x": np.full(n, IGNORE, np.int64),
        "y": np.full(n, IGNORE, np.int64),
        "size": np.full(n, IGNORE, np.int64),
        "background": np.array([BACKGROUND_NAMES.index(scene.background)], np.int64),
        "text": np.zeros(1, np.float32),
        "chars": np.full(MAX_CHARS, IGNORE, np.int64),
        "text_colour": np.full(1, IGNORE, np.int64),
    }
    for o in scene.objects:
        state = object_state(o, t)
        if state is None:
            continue
        c = COLOUR_NAMES.index(o.colour)
        out["present"][c] = 1.0
        out["shape"][c] = SHAPES.index(o.shape)
        out["flash"][c] = float(state.flashing)
        out["x"][c] = _third(state.centre[0])
        out["y"][c] = _third(state.centre[1])
        out["size"][c] = SIZE_NAMES.index(o.size)
    words = [w for w in scene.texts if w.appear <= t < w.disappear]
    if words:
        out["text"][0] = 1.0
        out["chars"][:] = encode_text(words[0].text)
        out["text_colour"][0] = COLOUR_NAMES.index(words[0].colour)
    return out


def encode_text(text: str) -> np.ndarray:
    """(MAX_CHARS,) long: CHARS index + 1 per character, then 0 (the end), then IGNORE."""
    text = text.lower()
    if len(text) > MAX_CHARS or any(ch not in CHARS for ch in text):
        raise ValueError(f"on-screen text {text!r}: only {MAX_CHARS} characters of a-z 0-9 are labelled")
    ids = np.full(MAX_CHARS, IGNORE, np.int64)
    ids[: len(text)] = [CHARS.index(ch) + 1 for ch in text]
    if len(text) < MAX_CHARS:
        ids[len(text)] = 0
    return ids


def decode_text(ids: np.ndarray) -> str:
    """The inverse of `encode_text` on predicted ids (up to the first 0)."""
    out = []
    for i in ids:
        if i <= 0:
            break
        out.append(CHARS[i - 1])
    return "".join(out)


def _third(pixels: float) -> int:
    return min(2, max(0, int(3 * pixels / FRAME_SIZE)))
