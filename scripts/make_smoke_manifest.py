"""Write the tiny-smoke training manifests from the official demo media (../shared/media).

    .venv/bin/python scripts/make_smoke_manifest.py [--media ../shared/media] [--out configs/train]

Writes two files next to each other. They name the media files only: `configs/train/tiny-smoke.yaml` finds them in
`${VIDEOSALMONN_SHARED:-../shared}/media` (each source's `media_root`), so the manifests hold no machine's paths
and the tracked copies are what this script writes on any machine (it rewrites a file only when it differs, so
running it leaves a clone's `git status` clean; `--check` only compares).
  tiny-smoke.jsonl          our JSONL: video + audio file, a video with its own sound track, a multi-turn dialogue,
                            an image alone, an image + speech, speech alone (`<asr>` prompt pool key), audio alone
  tiny-smoke-official.json  the official format (spec §1.1): a video alone (video-only: the mixing rules pair it
                            with an unrelated audio sample) and a [video, audio] pair
Together they exercise every rule of the mixed training scheme (spec §5.2). The answers describe the demo media
(a jazz band on stage; the book cover "Mom's Family Calendar"; LibriSpeech 1272-128104-0000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEO, WAV, IMAGE, FLAC = "4405327307.mp4", "4405327307.wav", "761183272.jpg", "1272-128104-0000.flac"
TRANSCRIPT = "Mister Quilter is the apostle of the middle classes and we are glad to welcome his gospel."


def conversation(*pairs: tuple[str, str]) -> list[dict]:
    return [t for q, a in pairs for t in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]


def ours(m) -> list[dict]:
    return [
        {
            "id": "concert-0-4",
            "video": m(VIDEO),
            "audio": m(WAV),
            "start": 0.0,
            "end": 4.0,
            "task": "av-caption",
            "conversation": conversation(
                (
                    "Describe the video together with the audio.",
                    "A jazz band plays on a stage lit in blue and red while a man in a suit sings.",
                )
            ),
        },
        {
            "id": "concert-4-8-own-track",
            "video": m(VIDEO),
            "start": 4.0,
            "end": 8.0,
            "task": "video-qa",
            "conversation": conversation(("What instruments can you see?", "A piano, a double bass and drums.")),
        },
        {
            "id": "concert-8-12-dialogue",
            "video": m(VIDEO),
            "audio": m(WAV),
            "start": 8.0,
            "end": 12.0,
            "task": "avsd",
            "conversation": conversation(
                ("Where is this?", "On a stage with coloured lights."),
                ("How many musicians are on the stage?", "Four, and one of them sings."),
            ),
        },
        {
            "id": "cover",
            "image": m(IMAGE),
            "task": "ocr",
            "conversation": conversation(("What is the title on the cover?", "Mom's Family Calendar.")),
        },
        {
            "id": "cover-speech",
            "image": m(IMAGE),
            "audio": m(FLAC),
            "task": "image-speech",
            "conversation": conversation(("What does the speaker say?", TRANSCRIPT)),
        },
        {"id": "librispeech", "audio": m(FLAC), "task": "asr", "conversation": conversation(("<asr>", TRANSCRIPT))},
        {
            "id": "concert-audio-12-16",
            "audio": m(WAV),
            "start": 12.0,
            "end": 16.0,
            "task": "audio-caption",
            "conversation": conversation(
                ("Describe the audio.", "A man sings with a jazz band and the audience applauds.")
            ),
        },
    ]


def official(m) -> list[dict]:
    def conv(q: str, a: str) -> list[dict]:
        return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]

    return [
        {
            "image_name": m(VIDEO),
            "conversation": conv(
                "Describe the video in detail.", "Musicians in suits perform jazz on a stage with coloured lights."
            ),
        },
        {
            "image_name": [m(VIDEO), m(WAV)],
            "conversation": conv("What is the man in the suit doing?", "He sings into a microphone."),
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--media",
        default=str(Path(os.environ.get("VIDEOSALMONN_SHARED", ROOT.parent / "shared")) / "media"),
        help="folder with the official demo media (checked; the manifests name the files only)",
    )
    parser.add_argument("--out", default=str(ROOT / "configs" / "train"), help="folder for the two manifests")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a manifest differs")
    args = parser.parse_args(argv)
    media, out = Path(args.media).resolve(), Path(args.out).resolve()
    missing = [n for n in (VIDEO, WAV, IMAGE, FLAC) if not (media / n).is_file()]
    if missing:
        print(f"error: {media}: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    differ = []
    for path, text in manifests(out).items():
        if path.is_file() and path.read_text() == text:
            print(f"{path}: up to date")
            continue
        differ.append(path)
        if args.check:
            print(f"{path}: differs from what this script writes", file=sys.stderr)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        print(f"{path}: written")
    return 1 if args.check and differ else 0


def manifests(out: Path) -> dict[Path, str]:
    """The two manifest files and their text (media named by file name only)."""
    return {
        out / "tiny-smoke.jsonl": "".join(json.dumps(x) + "\n" for x in ours(str)),
        out / "tiny-smoke-official.json": json.dumps(official(str), indent=1) + "\n",
    }


if __name__ == "__main__":
    sys.exit(main())
