"""One SAVE-mini clip as data: what is on screen, what sounds, what is said, and when.

A `Scene` is the whole truth about a clip. The sampler (world.py) draws it from a seed, the renderers (frames.py,
sound.py, speech.py) turn it into pixels and samples, and the task builders (tasks.py) read every label from it,
never from a rendering or a model. Everything is plain frozen data, so a scene is hashable, comparable and
round-trips through JSON (`scene_to_dict` / `scene_from_dict`) into the world's `scenes.jsonl`.

Conventions, shared by every module:
    time      seconds from the start of the clip
    position  (x, y) in [0, 1] of the frame, (0, 0) top left, the centre of the object
    size      radius as a fraction of the frame height (an object's bounding half-height)
    colour    a name of COLOURS (RGB in COLOURS); backgrounds are names of BACKGROUNDS
    audio     16 kHz mono float32 in [-1, 1] (SAMPLE_RATE)
    video     FRAME_SIZE pixels square, FPS frames per second, each frame rendered at t = i / FPS

Visible events last at least MIN_VISIBLE seconds so that a 2 Hz frame sampler always sees them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SAMPLE_RATE = 16_000
FRAME_SIZE = 224
FPS = 10
MIN_VISIBLE = 0.6  # s: an appearance, a flash or a word on screen lasts at least this (2 Hz sampling sees it)
FLASH_SECONDS = 0.6  # s: a flash turns the object white for this long, starting at the flash onset

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (245, 225, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 20),
    "pink": (250, 130, 200),
    "cyan": (40, 220, 230),
}
FLASH_COLOUR = (255, 255, 255)
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "grey": (70, 70, 70),
    "navy": (15, 20, 60),
    "brown": (60, 40, 25),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "ring")
SIZES: dict[str, float] = {"small": 0.08, "medium": 0.13, "large": 0.19}  # radius / frame height

SOUND_KINDS = ("tone", "chord", "noise", "clicks", "melody")
TIMBRES = ("sine", "square", "sawtooth", "triangle", "bell", "pluck", "organ")
NOISE_KINDS = ("white", "pink", "brown")


@dataclass(frozen=True)
class VisualObject:
    """A coloured shape: it appears, moves in a straight line, grows or shrinks, flashes, and disappears.

    Its radius goes linearly from `size` at `appear` to `size * grow` at `disappear`; its centre from `start` to
    `end`. At each time in `flashes` it is drawn in FLASH_COLOUR for FLASH_SECONDS. Later objects are drawn on
    top of earlier ones; the world keeps objects from covering each other.
    """

    id: str  # unique in the scene, e.g. "o0"
    shape: str  # SHAPES
    colour: str  # COLOURS
    size: str  # SIZES
    appear: float
    disappear: float
    start: tuple[float, float]
    end: tuple[float, float]
    grow: float = 1.0
    flashes: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """How questions and answers call it: "the red circle"."""
        return f"the {self.colour} {self.shape}"


@dataclass(frozen=True)
class OnScreenText:
    """A word or number drawn on screen (DejaVu Sans Bold), centred at `position`, from `appear` to `disappear`."""

    text: str
    colour: str  # COLOURS
    appear: float
    disappear: float
    position: tuple[float, float]
    height: float = 0.16  # glyph height as a fraction of the frame height


@dataclass(frozen=True)
class SoundEvent:
    """A non-speech sound from `onset` for `duration` seconds, at `level` (peak amplitude, 0..1).

    kind    tone: one note `notes[0]`; chord: `notes` together; melody: `notes` one after another, equal length;
            clicks: `count` clicks evenly spaced over the duration; noise: a burst of `noise` colour.
    notes   MIDI note numbers (60 = middle C)
    source  the id of the VisualObject that makes it (it flashes at the onset), or "" for an off-screen sound
    """

    kind: str  # SOUND_KINDS
    onset: float
    duration: float
    timbre: str = "sine"  # TIMBRES (tone, chord, melody)
    notes: tuple[int, ...] = ()
    count: int = 0  # clicks
    noise: str = "white"  # NOISE_KINDS (noise)
    level: float = 0.5
    source: str = ""


@dataclass(frozen=True)
class Utterance:
    """A sentence spoken by espeak-ng from `onset`: `voice` is an espeak voice with variant ("en-us+f3"), `rate`
    words per minute, `pitch` 0..99. The spoken text is exactly `text` (the ASR label)."""

    text: str
    voice: str
    rate: int
    pitch: int
    onset: float


@dataclass(frozen=True)
class Scene:
    """One clip. `kind`: "video" (frames and a sound track), "audio" (sound only) or "image" (one still frame,
    rendered at t = 0, and a sound track when it has speech or sounds: AVM's spoken descriptions). `duration` is
    the clip length in seconds (the sound track's; 0 for an image without sound). `noise_snr_db`: background
    noise of colour `noise` at this SNR relative to the speech (or to the sounds when nothing is said); None:
    no background noise."""

    id: str
    kind: str
    duration: float
    background: str = "black"
    objects: tuple[VisualObject, ...] = ()
    texts: tuple[OnScreenText, ...] = ()
    sounds: tuple[SoundEvent, ...] = ()
    speech: tuple[Utterance, ...] = ()
    noise: str = "white"
    noise_snr_db: float | None = None
    seed: int = 0  # the renderers' own randomness (noise samples), so rendering is deterministic
    tags: tuple[str, ...] = field(default=())  # free labels for splits and tasks, e.g. ("heldout-combo",)

    def object(self, object_id: str) -> VisualObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(f"scene {self.id} has no object {object_id!r}")

    def visible(self, t: float) -> tuple[VisualObject, ...]:
        """The objects on screen at time t."""
        return tuple(o for o in self.objects if o.appear <= t < o.disappear)


# --------------------------------------------------------------------------------------------- JSON


def scene_to_dict(scene: Scene) -> dict[str, Any]:
    return asdict(scene)


def scene_from_dict(d: dict[str, Any]) -> Scene:
    """The inverse of `scene_to_dict` (lists back to tuples)."""
    d = dict(d)
    d["objects"] = tuple(
        VisualObject(**{**o, "start": tuple(o["start"]), "end": tuple(o["end"]), "flashes": tuple(o["flashes"])})
        for o in d.get("objects", ())
    )
    d["texts"] = tuple(OnScreenText(**{**t, "position": tuple(t["position"])}) for t in d.get("texts", ()))
    d["sounds"] = tuple(SoundEvent(**{**s, "notes": tuple(s["notes"])}) for s in d.get("sounds", ()))
    d["speech"] = tuple(Utterance(**u) for u in d.get("speech", ()))
    d["tags"] = tuple(d.get("tags", ()))
    return Scene(**d)
