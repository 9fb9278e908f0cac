"""`videosalmonn eval prepare`: before a run, which media of a task exist, which are missing, and where the
dataset comes from. Nothing is downloaded (most SAVE media need a licence or a YouTube download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videosalmonn.evaluation.settings import EvalSettings, samples_missing_media, select_samples
from videosalmonn.evaluation.tasks import Task

LAYOUTS = {
    "asr": "--media-root is LibriSpeech/ or LibriSpeech/test-clean/: <speaker>/<chapter>/<speaker>-<chapter>"
    ".trans.txt and <utterance-id>.flac beside it",
    "aac": "--media-root holds AudioCaps test.csv and the clips as <youtube_id>.wav (or Y<youtube_id>.wav, "
    "<youtube_id>_<start_time>.wav; .flac/.ogg/.mp3 too), or give --manifest test.csv",
    "music-avqa": "--media-root holds avqa-test.json (or give --manifest) and the videos as <video_id>.mp4",
    "lrs2": "--media-root is LRS2/: test.txt (or give --manifest) and main/<folder>/<utterance>.mp4 + .txt",
}
SAVE_LAYOUT = (
    "--savebench is the folder of {manifest} (or give --manifest); its relative media paths resolve "
    "against --media-root"
)
SHOW_MISSING = 20


@dataclass
class Preparation:
    task: Task
    manifest: Path
    media_root: str | None
    samples: int
    files: int
    missing: dict[str, list[str]]  # sample id -> its files that do not exist

    @property
    def ready(self) -> bool:
        return not self.missing

    def lines(self) -> list[str]:
        gone = sum(len(v) for v in self.missing.values())
        layout = LAYOUTS.get(self.task.name) or SAVE_LAYOUT.format(manifest=self.task.default_manifest)
        out = [
            f"task        {self.task.name}: {self.task.title}",
            f"manifest    {self.manifest} ({self.samples} samples)",
            f"media root  {self.media_root or '(the manifest folder)'}",
            f"media       {self.files} files: {self.files - gone} present, {gone} missing "
            f"({len(self.missing)} of {self.samples} samples incomplete)",
            f"source      {self.task.source}",
            f"layout      {layout}",
        ]
        if self.missing:
            out.append(f"missing{f' (first {SHOW_MISSING})' if len(self.missing) > SHOW_MISSING else ''}:")
            for sample_id, files in list(self.missing.items())[:SHOW_MISSING]:
                out += [f"  {sample_id}  {f}" for f in files]
        return out


def prepare(settings: EvalSettings) -> Preparation:
    task = settings.resolve_task()
    samples = select_samples(settings, task)
    return Preparation(
        task,
        settings.manifest_path(),
        settings.media_root,
        len(samples),
        sum(len(s.media) for s in samples),
        samples_missing_media(samples),
    )
