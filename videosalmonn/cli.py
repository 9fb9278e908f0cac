"""`videosalmonn <command>`: thin entry points over the library (each command parses, calls, prints).

User mistakes (missing files, bad media, bad settings) and a full disk end with one line on stderr and exit code 2
(a full disk also names the file; what was written before stays whole, so a rerun continues). A batch
command (`infer --manifest`, `eval run`) whose samples did not all get an answer exits 1 after a summary line with
the count (each failed sample has an error record; a rerun retries it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from videosalmonn.errors import DISK_FULL, DiskFullError, InputError, VideoSalmonnError

EXIT_USER_ERROR = 2
EXIT_SAMPLES_FAILED = 1
MODEL_HELP = (
    "preset name (mini, tiny, video-salmonn-13b), a model YAML file, a directory holding model.yaml (save_pretrained, "
    "export), or the hub id of one (owner/name)"
)
DEVICE_HELP = "cpu, cuda, cuda:1, mps (default: cuda if available, else cpu)"
# The optional libraries a command imports, by the pyproject.toml extra that installs them: a missing one ends the
# command with one line naming the extra (tests/test_dependencies.py checks the map against pyproject.toml).
EXTRA_OF_MODULE = {
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "pydantic": "serve",
    "gradio": "demo",
    "jiwer": "eval",
    "pycocoevalcap": "eval",
    "whisper_normalizer": "eval",
    "matplotlib": "inspect",
}
COMMAND_GROUPS = (
    "videosalmonn.training.cli",
    "videosalmonn.evaluation.cli",
    "videosalmonn.serving.cli",
    "videosalmonn.savemini.cli",
    "videosalmonn.estimate",
    "videosalmonn.download",
    "videosalmonn.inspection",
)


def cmd_check_official(args: argparse.Namespace) -> int:
    from videosalmonn.official.parity import check_official
    from videosalmonn.official.tolerance import POWER_TOLERANCE, TOLERANCE

    def progress(line: str) -> None:
        print(f"check-official: {line}", file=sys.stderr, flush=True)

    progress(f"{args.directory}: building the golden model, then every case (a few minutes on 2 CPU cores)")
    report = check_official(args.directory, progress=progress)
    print(json.dumps(report.values, indent=1))
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if report.ok:
        print(
            f"OK: {len(report.values)} stages within {TOLERANCE:g} (BEATs fbank: {POWER_TOLERANCE:g} of each "
            "frame's peak power), all ids identical",
            file=sys.stderr,
        )
        return 0
    print(f"FAILED: {len(report.failed)} of {len(report.values)} stages", file=sys.stderr)
    for line in report.failed:
        print(f"  {line}", file=sys.stderr)
    return 1


def cmd_infer(args: argparse.Namespace) -> int:
    from videosalmonn.config import ModelConfig
    from videosalmonn.pipeline import Pipeline, resolve_device

    if args.manifest:
        if args.video or args.image or args.audio or args.prompt:
            raise InputError("--manifest replaces --video/--image/--audio/--prompt")
        if not args.out:
            raise InputError("--manifest needs --out OUT.jsonl")
        return _infer_manifest(args)
    if not (args.video or args.image or args.audio):
        raise InputError("give --video, --image or --audio (or --manifest)")
    if not args.prompt:
        raise InputError("give --prompt")
    cfg = ModelConfig.from_name(args.model, _overrides(args))  # a config mistake first, then the files
    device = resolve_device(args.device)
    check_media_args(args.video, args.audio, args.image)  # before the model is built (a 13B load takes minutes)
    pipe = Pipeline.from_pretrained(cfg, device=device)
    answer = pipe.answer(args.prompt, video=args.video, audio=args.audio, image=args.image)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
    else:
        print(answer.text)
        for line in answer.coverage.cut + answer.notes:
            print(f"note: {line}", file=sys.stderr)
    print_notice(answer.notice)
    return 0


def print_notice(notice: str | None) -> None:
    """The pipeline's one-line notice (random weights) on stderr, after the answer (an error stays one line)."""
    if notice:
        print(f"notice: {notice}", file=sys.stderr, flush=True)


def check_media_args(video: str | None, audio: str | None, image: str | None) -> None:
    """Each given file exists and is a regular non-empty file, and an image is not given as --video (or the
    reverse): one line naming the file, before anything is loaded."""
    from videosalmonn.media.files import check_file, kind_of

    for flag, path in (("--video", video), ("--audio", audio), ("--image", image)):
        if path is None:
            continue
        check_file(path)
        kind = kind_of(path)
        if flag == "--video" and kind in ("image", "audio"):
            raise InputError(f"{path}: an {kind} file (by its suffix), given as --video; give it as --{kind}")
        if flag == "--image" and kind in ("video", "audio"):
            raise InputError(f"{path}: a {kind} file (by its suffix), given as --image; give it as --{kind}")
        if flag == "--audio" and kind == "image":
            raise InputError(f"{path}: an image file (by its suffix), given as --audio; give it as --image")


def _infer_manifest(args: argparse.Namespace) -> int:
    from videosalmonn.data.manifest import missing_media, read_manifest
    from videosalmonn.infer_manifest import run_manifest
    from videosalmonn.pipeline import Pipeline

    samples = read_manifest(args.manifest, args.media_root)
    missing = missing_media(samples)
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise InputError(f"{len(missing)} media file(s) not found: {'; '.join(missing[:5])}{more}")
    pipe = Pipeline.from_pretrained(args.model, _overrides(args), device=args.device)
    summary = run_manifest(pipe, samples, args.out, args.batch_size)
    print_notice(pipe.notice)
    print(
        f"{summary.answered} answered, {summary.failed} failed, {summary.skipped} already in {args.out}",
        file=sys.stderr,
    )
    if summary.given_up:
        print(given_up_line(summary.given_up, args.out), file=sys.stderr)
    if summary.unanswered:
        print(
            f"{summary.unanswered} of {len(samples)} samples have no answer (see `error` in {args.out})",
            file=sys.stderr,
        )
    return EXIT_SAMPLES_FAILED if summary.unanswered else 0


def given_up_line(ids: list[str], out: str) -> str:
    from videosalmonn.results import MAX_ATTEMPTS

    more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
    return (
        f"{len(ids)} sample(s) failed {MAX_ATTEMPTS} times and were not run again: {', '.join(ids[:5])}{more} "
        f"(their last error is in {out})"
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.set) + ([f"media.limits={args.limits}"] if args.limits else [])


def positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videosalmonn", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("infer", help="answer a question about a video, an image and/or an audio file")
    p.add_argument("--model", default="tiny", help=MODEL_HELP)
    p.add_argument("--video", help="video file (its own audio track is used unless --audio is given)")
    p.add_argument("--image", help="image file")
    p.add_argument("--audio", help="audio file (alone, or with --video / --image)")
    p.add_argument("--prompt", help="the question or instruction")
    p.add_argument("--manifest", help="answer every sample of a JSONL (or official JSON) manifest instead")
    p.add_argument("--out", help="with --manifest: results JSONL (appended; a rerun resumes)")
    p.add_argument("--media-root", help="with --manifest: base of relative media paths (default: its folder)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="with --manifest: samples generated together")
    p.add_argument("--json", action="store_true", help="print one JSON object: answer and what was used")
    p.add_argument("--limits", choices=["official", "none"], help="official: drop audio after 30 s, video after 60 s")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set weights.delta=ckpt.pt (repeatable)",
    )
    p.add_argument("--device", help=DEVICE_HELP)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("check-official", help="reproduce a golden directory of official numbers")
    p.add_argument("directory", help="a directory in the layout of ../shared/golden/official_v1")
    p.set_defaults(func=cmd_check_official)

    # Command groups living next to their library code: each module has `register(subparsers)`.
    for module in COMMAND_GROUPS:
        importlib.import_module(module).register(sub)
    return parser


def _quiet_libraries() -> None:
    """Keep third-party progress bars and deprecation chatter out of the output (shown again with -v)."""
    import warnings

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The one line for an optional library that is not installed; None for any other missing module (a bug)."""
    module = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"{module} is not installed: it comes with the {extra} extra, pip install 'videosalmonn[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        _quiet_libraries()
    try:
        return args.func(args)
    except VideoSalmonnError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as e:
        line = missing_extra(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a full disk under a writer that does not say so itself (a library's file, a lock)
        if e.errno not in DISK_FULL:
            raise
        print(f"error: {DiskFullError(e.filename or 'a file being written')}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
