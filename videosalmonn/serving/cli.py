"""`videosalmonn serve` (OpenAI-compatible HTTP API) and `videosalmonn demo-ui` (Gradio page): parse, build, run."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from videosalmonn.cli import DEVICE_HELP, MODEL_HELP, print_notice
from videosalmonn.serving.settings import MIB, ServeSettings

DEFAULTS = ServeSettings()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from videosalmonn.pipeline import Pipeline
    from videosalmonn.serving.app import create_app

    settings = ServeSettings(
        model_name=args.served_model_name or args.model,
        allowed_root=args.allowed_root,
        max_batch_size=1 if args.no_batching else args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * MIB),
        max_media_bytes=int(args.max_media_mb * MIB),
        max_media_seconds=args.max_media_seconds,
        max_tokens=args.max_tokens,
        max_beam_tokens=args.max_beam_tokens,
        request_timeout_s=args.request_timeout,
        decode_workers=args.decode_workers,
        strict=args.strict,
        allow_fetch=tuple(args.allow_fetch),
        fetch_timeout_s=args.fetch_timeout,
    )
    pipeline = Pipeline.from_pretrained(args.model, list(args.set), device=args.device)
    print_notice(pipeline.notice)
    logging.getLogger(__name__).warning(
        "serving %s on http://%s:%d (batching %s)",
        settings.model_name,
        args.host,
        args.port,
        f"up to {settings.max_batch_size}" if settings.max_batch_size > 1 else "off",
    )
    uvicorn.run(
        create_app(pipeline, settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_demo_ui(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio  # noqa: F401  (before the model loads: without the demo extra, one line at once)

    from videosalmonn.demo.app import build_demo
    from videosalmonn.pipeline import Pipeline

    pipeline = Pipeline.from_pretrained(args.model, list(args.set), device=args.device)
    print_notice(pipeline.notice)
    build_demo(pipeline, args.model).queue().launch(
        server_name=args.host, server_port=args.port, share=False, show_error=True
    )
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny", help=MODEL_HELP)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set weights.delta=ckpt.pt (repeatable)",
    )
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP API (POST /v1/chat/completions)")
    _model_args(p)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", help="the model id clients send (default: --model)")
    p.add_argument(
        "--allowed-root", type=Path, help="read local media paths inside this directory only (default: no local paths)"
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULTS.max_batch_size,
        help=f"requests generated together (default {DEFAULTS.max_batch_size})",
    )
    p.add_argument("--no-batching", action="store_true", help="one request per generation (= --max-batch-size 1)")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULTS.batch_wait_ms,
        help=f"wait this long for more requests to join a batch (default {DEFAULTS.batch_wait_ms:g})",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULTS.max_queue,
        help=f"requests in the server at once, more get 503 (default {DEFAULTS.max_queue})",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULTS.max_body_bytes / MIB,
        help=f"largest request body (default {DEFAULTS.max_body_bytes // MIB})",
    )
    p.add_argument(
        "--max-media-mb",
        type=float,
        default=DEFAULTS.max_media_bytes / MIB,
        help=f"largest media item (default {DEFAULTS.max_media_bytes // MIB})",
    )
    p.add_argument(
        "--max-media-seconds",
        type=float,
        default=DEFAULTS.max_media_seconds,
        help=f"longest media (default {DEFAULTS.max_media_seconds:g})",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULTS.max_tokens,
        help=f"largest max_tokens a request may ask for (default {DEFAULTS.max_tokens})",
    )
    p.add_argument(
        "--max-beam-tokens",
        type=int,
        default=DEFAULTS.max_beam_tokens,
        help=f"largest num_beams x max_tokens of one request (default {DEFAULTS.max_beam_tokens})",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULTS.request_timeout_s,
        help=f"seconds per request, queueing included (default {DEFAULTS.request_timeout_s:g})",
    )
    p.add_argument(
        "--decode-workers",
        type=int,
        default=DEFAULTS.decode_workers,
        help=f"threads decoding media (default {DEFAULTS.decode_workers})",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse (400) request fields this server does not know, instead of ignoring them with an "
        "X-Videosalmonn-Ignored header",
    )
    p.add_argument(
        "--allow-fetch",
        nargs="+",
        action="extend",
        default=[],
        metavar="HOST",
        help="fetch http(s) media URLs from these hosts ('*': any host with public addresses only; a private, "
        "loopback or link-local address only for a host named here); default: no fetching",
    )
    p.add_argument(
        "--fetch-timeout",
        type=float,
        default=DEFAULTS.fetch_timeout_s,
        help=f"seconds per fetched URL, redirects included (default {DEFAULTS.fetch_timeout_s:g})",
    )
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo-ui", help="Gradio web page: upload media, ask, watch the answer stream in")
    _model_args(p)
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(func=cmd_demo_ui)
