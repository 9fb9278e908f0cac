"""`videosalmonn train | cache-features | export`: thin entry points over `videosalmonn.training`.

videosalmonn train --config configs/train/tiny-smoke.yaml [steps=50 optim.lr=1e-3 ...] [--resume]
torchrun --standalone --nproc_per_node 2 -m videosalmonn train --config ...       # DDP (gloo on CPU)
accelerate launch --config_file configs/accelerate/fsdp.yaml -m videosalmonn train --config ...
videosalmonn cache-features --manifest data.jsonl --out features/ [--model tiny] [--set k=v]
videosalmonn cache-features --config configs/train/NAME.yaml [--out features/]
videosalmonn export runs/NAME/checkpoints/latest --official-delta runs/NAME/delta.pt --merged runs/NAME/merged
videosalmonn export runs/NAME/checkpoints/latest --hf runs/NAME/hf [--push owner/name] --peft runs/NAME/adapter

A checkpoint may be named by its step-XXXXXX/ directory, the run's checkpoints/latest or the run's output_dir.
"""

from __future__ import annotations

import argparse
import os
import sys


def cmd_train(args: argparse.Namespace) -> int:
    from videosalmonn.errors import VideoSalmonnError
    from videosalmonn.training.checkpointing import resolve_checkpoint
    from videosalmonn.training.config import load_train_config
    from videosalmonn.training.loop import train

    try:
        cfg = load_train_config(args.config, args.overrides)
        resume = resolve_checkpoint(args.resume_from) if args.resume_from else args.resume
        summary = train(cfg, resume=resume)
    except VideoSalmonnError:
        if int(os.environ.get("RANK", "0")) != 0:
            return 2  # the first process prints the one-line error
        raise
    if summary.losses and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"done: step {summary.steps}, loss {summary.losses[0]:.4f} -> {summary.losses[-1]:.4f}, "
            f"checkpoint {summary.checkpoint}"
        )
    return 0


def cmd_cache_features(args: argparse.Namespace) -> int:
    from videosalmonn.errors import VideoSalmonnError
    from videosalmonn.training.loop import cache_features

    if not args.manifest and not args.config:
        raise VideoSalmonnError("give --manifest (one or more) or --config")
    try:
        cache_features(args.config, args.manifest, args.out, args.model, args.set, args.prompt_pool)
    except VideoSalmonnError:
        if int(os.environ.get("RANK", "0")) != 0:
            return 2
        raise
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from videosalmonn.checkpoint import local_sources, save_pretrained
    from videosalmonn.errors import VideoSalmonnError
    from videosalmonn.hub import upload_folder
    from videosalmonn.llm.tokenizer import load_tokenizer
    from videosalmonn.training.export import export_merged, export_official, export_peft, model_from_checkpoint

    if args.push and not args.hf:
        raise VideoSalmonnError("--push uploads the --hf directory: give --hf DIR too")
    if not (args.official_delta or args.merged or args.hf or args.peft):
        raise VideoSalmonnError("give --official-delta PATH, --hf DIR, --peft DIR and/or --merged DIR")
    model = model_from_checkpoint(args.checkpoint)
    if args.official_delta:
        print(f"official delta: {export_official(model, args.official_delta)}")
    if args.hf:
        print(f"model directory: {save_pretrained(model, args.hf)}")
    if args.push:
        for source in local_sources(model.cfg):
            print(f"warning: {source} is a local path another machine lacks", file=sys.stderr)
        print(f"pushed: {upload_folder(args.hf, args.push, private=args.private or None)}")
    if args.peft:
        print(f"peft adapter: {export_peft(model, args.peft)}")
    if args.merged:
        tokenizer = load_tokenizer(model.cfg.weights.tokenizer or model.cfg.weights.llm)
        print(f"merged model: {export_merged(model, tokenizer, args.merged, inplace=True)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="instruction-tune the connector and LoRA (one process, torchrun or accelerate)")
    p.add_argument("--config", required=True, help="training YAML, e.g. configs/train/tiny-smoke.yaml")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides of the training config, e.g. steps=50 optim.lr=1e-3 data.batch_size=2",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of output_dir")
    p.add_argument(
        "--resume-from", metavar="DIR", help="continue from this checkpoint (step-XXXXXX/ or checkpoints/latest)"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("cache-features", help="store the frozen encoders' outputs for training")
    p.add_argument("--manifest", action="append", default=[], help="a manifest (JSONL or official JSON); repeatable")
    p.add_argument("--config", help="a training YAML: cache exactly what that run needs (its sources, mixing, model)")
    p.add_argument("--out", help="cache directory (default with --config: its data.feature_cache)")
    p.add_argument(
        "--model",
        default="tiny",
        help="with --manifest: preset name or model YAML (default tiny); the "
        "features are computed in the model's dtype, as in a training run of that model",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --manifest: model override")
    p.add_argument("--prompt-pool", help="with --manifest: JSON {key: [prompts]} for <key> prompts")
    p.set_defaults(func=cmd_cache_features)

    p = sub.add_parser(
        "export", help="a training checkpoint -> official delta .pt, model dir (+ hub), peft adapter, merged HF dir"
    )
    p.add_argument(
        "checkpoint", help="a checkpoint: runs/NAME/checkpoints/step-XXXXXX, runs/NAME/checkpoints/latest or runs/NAME"
    )
    p.add_argument("--official-delta", metavar="PATH", help="write the official delta format (.pt) here")
    p.add_argument(
        "--hf", metavar="DIR", help="write model.yaml + model.safetensors (trained tensors only) here: --model DIR"
    )
    p.add_argument("--push", metavar="REPO_ID", help="upload the --hf directory as this hub model repo")
    p.add_argument("--private", action="store_true", help="with --push: create the repo private")
    p.add_argument("--peft", metavar="DIR", help="write the LoRA as a peft adapter (PeftModel.from_pretrained) here")
    p.add_argument("--merged", metavar="DIR", help="write the LoRA-merged LLM + connector + model.yaml here")
    p.set_defaults(func=cmd_export)
