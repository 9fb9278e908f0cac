"""What one evaluation run is: a task, a model, where the data lies, diagnostics; and the samples it covers.

    settings = EvalSettings(task="avsr", model="video-salmonn-13b", media_root="/data/how2",
                            savebench="/data/SAVEBench", mask="audio")
    task = settings.resolve_task()              # the registry's Task, or AVSSD with an LLM judge
    samples = select_samples(settings, task)    # the manifest read, task options applied, --limit applied

Every field of `EvalSettings` but `limit` and `allow_missing` fixes what the outputs mean, so a run directory
resumes only with the same values (`identity`).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from videosalmonn.data.save import BenchmarkSample
from videosalmonn.errors import InputError
from videosalmonn.evaluation.tasks import TASKS, Task

SAVEBENCH_ENV = "VIDEOSALMONN_SAVEBENCH"  # default folder of the SAVEBench manifests
JUDGE_KEY_ENV = "OPENAI_API_KEY"  # sent as a bearer token to --judge-url when set
MASKS = {"audio": (1.0, 0.0), "video": (0.0, 1.0)}  # Request.modality_mask: [visual, audio] multipliers
SPAN_MODES = ("auto", "cut", "whole")
VIDEO_OWN_AUDIO = {"music-avqa", "lrs2"}  # tasks whose audio is the video's own sound track
# Tasks read from the dataset's own layout (Task.default_manifest None): the default manifest in --media-root.
OWN_LAYOUT = {"asr": ".", "aac": "test.csv", "music-avqa": "avqa-test.json", "lrs2": "test.txt"}
NOT_IDENTITY = ("limit", "allow_missing", "savebench")


@dataclass(frozen=True)
class EvalSettings:
    task: str
    model: str = "tiny"
    """A preset name or a YAML config file (as for `videosalmonn infer --model`)."""
    media_root: str | None = None
    manifest: str | None = None
    """Replaces the task's default manifest (a file of the same layout)."""
    savebench: str | None = None
    """Folder of the SAVEBench manifests (default: $VIDEOSALMONN_SAVEBENCH, else --media-root)."""
    overrides: tuple[str, ...] = ()
    """Dotted model config overrides (`--set`)."""
    task_options: tuple[str, ...] = ()
    """`key=value` keyword arguments of the task's reader, e.g. `all_turns=true` (AVSD), `subset=null` (OCR)."""
    limit: int | None = None
    """Only the first N samples (after the task's own subset)."""
    mask: str | None = None
    """Diagnostics: "audio" or "video" (the visual stream: video or image) is multiplied by 0."""
    zero_level: int | None = None
    """Diagnostics: this resolution level's connector output is zeroed (`evaluation.diagnostics.zeroed_levels`)."""
    spans: str = "auto"
    """Time spans of a manifest (Ego4D-QA "duration"): cut, use the whole file, or auto (see runner.request_for)."""
    video_audio: bool | None = None
    """Use a video's own sound track when the manifest gives no audio file (None: only for VIDEO_OWN_AUDIO)."""
    judge_url: str | None = None
    judge_model: str = "gpt-3.5-turbo"
    judge_allow_http: bool = False
    """Send $OPENAI_API_KEY to a --judge-url over plain http to another host (default: https or loopback only)."""
    allow_missing: bool = False
    """Run the samples whose media exist; the others are counted as missing, not scored."""
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; tasks: {', '.join(sorted(TASKS))}")
        if self.mask is not None and self.mask not in MASKS:
            raise InputError(f"--mask {self.mask!r}: expected one of {', '.join(MASKS)}")
        if self.spans not in SPAN_MODES:
            raise InputError(f"--spans {self.spans!r}: expected one of {', '.join(SPAN_MODES)}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be positive, got {self.limit}")
        if self.judge_url and self.task != "avssd":
            raise InputError(f"--judge-url applies to the avssd task only, not {self.task}")

    # ------------------------------------------------------------------------------------------ derived

    def zeroed_levels(self) -> tuple[int, ...]:
        return () if self.zero_level is None else (self.zero_level,)

    def modality_mask(self) -> tuple[float, float] | None:
        return MASKS[self.mask] if self.mask else None

    def diagnostics(self) -> dict[str, Any]:
        return {"mask": self.mask, "modality_mask": self.modality_mask(), "zero_level": self.zero_level}

    def diagnostics_label(self) -> str:
        parts = ([f"{self.mask} masked"] if self.mask else []) + (
            [f"level {self.zero_level} zeroed"] if self.zero_level is not None else []
        )
        return ", ".join(parts)

    def uses_video_audio(self) -> bool:
        return self.video_audio if self.video_audio is not None else self.task in VIDEO_OWN_AUDIO

    def identity(self) -> dict[str, Any]:
        """What must match for a run directory to be resumed (paths made absolute)."""
        out = {k: v for k, v in asdict(self).items() if k not in NOT_IDENTITY}
        out["manifest"] = str(self.manifest_path())
        out["media_root"] = str(Path(self.media_root).resolve()) if self.media_root else None
        out["overrides"] = list(self.overrides)
        out["task_options"] = list(self.task_options)
        return out

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "overrides": list(self.overrides), "task_options": list(self.task_options)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalSettings:
        return cls(**{**data, "overrides": tuple(data["overrides"]), "task_options": tuple(data["task_options"])})

    # ------------------------------------------------------------------------------------------ data

    def manifest_path(self) -> Path:
        """--manifest, else the task's SAVEBench file (in --savebench, $VIDEOSALMONN_SAVEBENCH or --media-root),
        else the dataset's own layout inside --media-root."""
        if self.manifest:
            return Path(self.manifest).resolve()
        task = TASKS[self.task]
        if task.default_manifest is None:
            if not self.media_root:
                raise InputError(f"{self.task}: give --media-root (the {task.title} folder) or --manifest")
            return (Path(self.media_root) / OWN_LAYOUT[self.task]).resolve()
        folder = self.savebench or os.environ.get(SAVEBENCH_ENV) or self.media_root
        if not folder:
            raise InputError(
                f"{self.task}: give --savebench (the folder holding {task.default_manifest}), "
                f"${SAVEBENCH_ENV}, or --manifest"
            )
        return (Path(folder) / task.default_manifest).resolve()

    def resolve_task(self) -> Task:
        """The registry's task; AVSSD scored by the LLM judge at --judge-url when one is given."""
        task = TASKS[self.task]
        if self.judge_url:
            from videosalmonn.evaluation.judge import OpenAIChatClient
            from videosalmonn.evaluation.tasks import vggss

            client = OpenAIChatClient(
                self.judge_url,
                self.judge_model,
                api_key=os.environ.get(JUDGE_KEY_ENV),
                allow_http_key=self.judge_allow_http,
            )
            task = vggss.with_judge(client)
        return task

    def reader_options(self, task: Task) -> dict[str, Any]:
        """--option key=value (values parsed as YAML) -> keyword arguments of `task.read`, checked by name."""
        names = [p for p in inspect.signature(task.read).parameters if p not in ("manifest_path", "media_root")]
        options = {}
        for item in self.task_options:
            key, sep, raw = item.partition("=")
            if not sep or key.strip() not in names:
                have = f"takes key=value options {', '.join(names)}" if names else "takes no options"
                raise InputError(f"--option {item!r}: {self.task} {have}")
            options[key.strip()] = yaml.safe_load(raw)
        return options


def select_samples(settings: EvalSettings, task: Task | None = None) -> list[BenchmarkSample]:
    """The samples a run covers, in manifest order: the task's reader (+ options), then the first --limit."""
    task = task or TASKS[settings.task]
    path = settings.manifest_path()
    if not path.exists():
        raise InputError(f"{path}: manifest not found; {task.title} comes from {task.source}")
    samples = task.read(path, settings.media_root, **settings.reader_options(task))
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise InputError(f"{path}: sample id {s.id!r} occurs twice")
        seen.add(s.id)
    return samples[: settings.limit] if settings.limit else samples


def samples_missing_media(samples: list[BenchmarkSample]) -> dict[str, list[str]]:
    """Sample id -> its media files that do not exist (only samples with at least one)."""
    out = {}
    for s in samples:
        gone = [str(p) for p in s.media if not p.is_file()]
        if gone:
            out[s.id] = gone
    return out
