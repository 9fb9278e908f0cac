"""Peak host RAM while loading the 13B preset at real dimensions: the loading code before vs after issue 10.

    .venv/bin/python bench/load_memory.py [--llm-depth 4] [--shard-gb 1.0] [--before 2108df8] [--whole ee8db27]
                                          [--keep DIR]

Writes random weights in the real layouts to a temporary folder: an HF InstructBLIP folder (vision_model.*,
qformer.*, query_tokens as fp32 safetensors, index + shards; its LLM half is left out, it is never read), Whisper
large-v2 (`model.encoder.*`, fp32 safetensors; the decoder left out, never read), the official BEATs `.pt`
({'cfg', 'model'}), a Vicuna-13B-v1.5 folder with `--llm-depth` of its 40 layers (fp16 `.bin` shards of at most
`--shard-gb` + index + the `rotary_emb.inv_freq` keys it stores) and a trainable-only delta (connector + LoRA).

Then loads the preset (`dtype: float16`, CPU target) in fresh child processes, one at a time: with the package as
it was at `--before` (extracted with `git archive`), at `--whole` (empty-build loading, but `read_state_dict` reads
whole files: the encoders' peak) and as it is now (streamed: memory-mapped views, pages released per tensor; plus
`llm.quantization=int8`). Each child reads its own peak (`VmHWM` of /proc/self/status: ru_maxrss would carry the
parent's) and RSS after loading, then after reading every weight once. `transient` = peak - RSS after loading:
what loading held only while loading (on a GPU target the model itself is not in host RAM, so the host peak is the
baseline + about that). `--json` prints the result as one JSON object (what `bench/all.py` reads).

Measured on the CPU-only dev machine (2 cores, 23 GiB; 13B preset, 4 of 40 LLM layers, baseline 0.33 GiB):

    --shard-gb 1 (largest file: Whisper's 2.37 GiB)   peak     after    transient  touched  model   time
    before (2108df8)                                  12.14 G  4.14 G   8.00 G     7.12 G   6.68 G  50 s
    whole files (ee8db27)                              6.90 G  4.32 G   2.58 G     7.30 G   6.68 G  7.1 s
    after (streamed)                                   4.33 G  4.32 G   0.00 G     7.30 G   6.68 G  7.7 s
    after, llm.quantization=int8                       6.11 G  5.89 G   0.22 G     5.89 G   5.50 G  17 s
    (one run, loaded machine; at --shard-gb 3, session 5 measured 11.12 G before and 6.91 G with whole files)

The transient of whole-file reading was the largest piece read at once (the vision tower's fp32 shards, read
into one dict, then cast); streamed, each tensor is copied in the target dtype and its file pages released, so
loading holds about one tensor beyond the model (the fp16 LLM shards are kept as read: views of the files, hence
`touched` > `after`). Extrapolated to 40 layers (+36 x 0.59 GiB of fp16 weights): before ~33 GiB on any target
(it loaded everything into host RAM first); after ~28 GiB on a CPU target (the model itself) and, on a GPU
target, expected (not measured: no GPU here) the baseline + about one tensor (the largest: the 13B's 0.31-GiB
fp16 embeddings), i.e. under 1 GiB of host RAM beyond the process and its CUDA context.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_json_flag, describe, emit, result, row, vm_kib

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "2108df8"  # the last commit before the empty-build loading (a22d1c7)
WHOLE = "ee8db27"  # the last commit whose read_state_dict read whole files (before the streamed reading)
GIB = 2**30


# ------------------------------------------------------------------------------------------ child process


def child(root: Path, overrides: list[str]) -> None:
    import torch

    import videosalmonn
    from videosalmonn.checkpoint import load_model
    from videosalmonn.config import ModelConfig

    cfg = ModelConfig.from_name("video-salmonn-13b", weight_overrides(root) + overrides)
    baseline = vm_kib("VmHWM")
    start = time.perf_counter()
    model = load_model(cfg, "cpu")
    seconds = time.perf_counter() - start
    peak, rss = vm_kib("VmHWM"), vm_kib("VmRSS")
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}
    model_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    with torch.no_grad():  # page in every weight, as a first forward would (memory-mapped ones are not resident yet)
        for t in tensors.values():
            t.reshape(-1)[:: max(1, 4096 // t.element_size())].sum()
    result = {
        "baseline_kib": baseline,
        "peak_kib": peak,
        "rss_kib": rss,
        "rss_touched_kib": vm_kib("VmRSS"),
        "model_bytes": model_bytes,
        "int8_elements": sum(t.numel() for t in tensors.values() if t.dtype == torch.int8),
        "seconds": seconds,
        "package": videosalmonn.__file__,
    }
    print(json.dumps(result))


def weight_overrides(root: Path) -> list[str]:
    return [
        f"weights.instructblip={root / 'instructblip'}",
        f"weights.whisper={root / 'whisper'}",
        f"weights.beats={root / 'beats.pt'}",
        f"weights.llm={root / 'vicuna'}",
        f"weights.delta={root / 'delta.safetensors'}",
    ]


# ------------------------------------------------------------------------------------------ random checkpoints


def write_checkpoints(
    root: Path, depth: int, shard_bytes: int, model: str = "video-salmonn-13b", llm_format: str = "bin"
) -> dict[str, int]:
    """Random weights of the preset `model` (LLM cut to `depth` layers) in the real layouts; returns file sizes.
    `llm_format`: `bin` (Vicuna's fp16 .bin shards + the inv_freq keys they store) or `safetensors` (fp16 shards
    as transformers writes them, no inv_freq)."""
    import torch
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from videosalmonn.config import ModelConfig
    from videosalmonn.model import VideoSalmonn, trainable_names

    cfg = ModelConfig.from_name(model, [f"llm.depth={depth}"])
    with init_empty_weights():
        model = VideoSalmonn.from_config(cfg)
    g = torch.Generator().manual_seed(0)

    def rand(shape, dtype=torch.float32):
        return torch.empty(shape, dtype=dtype).normal_(0.0, 0.02, generator=g)

    def shards(folder, keys_shapes, name, dtype, save):
        """Group (key, shape) into files of at most shard_bytes; write each, then its index."""
        groups, size = [[]], 0
        for key, shape in keys_shapes:
            n = torch.Size(shape).numel() * dtype.itemsize
            if groups[-1] and size + n > shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append((key, shape))
            size += n
        weight_map = {}
        for i, group in enumerate(groups):
            file = name.format(i=i + 1, n=len(groups))
            save({k: rand(s, dtype) for k, s in group}, root / folder / file)
            weight_map.update({k: file for k, _ in group})
        return weight_map

    sizes = {}
    folder = "instructblip"
    (root / folder).mkdir(parents=True)
    vision = [(k, v.shape) for k, v in model.encoder.vision.state_dict().items()]
    index = shards(
        folder, vision, "model-{i:05d}-of-{n:05d}.safetensors", torch.float32, lambda sd, p: save_file(sd, str(p))
    )
    (root / folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    heads = {"num_attention_heads": cfg.encoders.eva.num_heads}
    qheads = {"num_attention_heads": cfg.encoders.image_qformer.num_heads}
    ib_config = {"model_type": "instructblip", "vision_config": heads, "qformer_config": qheads}
    (root / folder / "config.json").write_text(json.dumps(ib_config))

    folder = "whisper"
    (root / folder).mkdir()
    whisper = {f"model.encoder.{k}": rand(v.shape) for k, v in model.encoder.whisper.encoder.state_dict().items()}
    save_file(whisper, str(root / folder / "model.safetensors"))
    del whisper
    wcfg = {"model_type": "whisper", "encoder_attention_heads": cfg.encoders.whisper.num_heads}
    (root / folder / "config.json").write_text(json.dumps(wcfg))

    renames = {
        "encoder.pos_conv.weight": "encoder.pos_conv.0.weight",
        "encoder.pos_conv.bias": "encoder.pos_conv.0.bias",
        "encoder.relative_attention_bias.embedding.weight": "encoder.layers.0.self_attn.relative_attention_bias.weight",
    }
    b = cfg.encoders.beats
    beats_cfg = dict(
        input_patch_size=16, embed_dim=b.patch_dim, conv_bias=b.conv_bias, encoder_layers=b.depth,
        encoder_embed_dim=b.width, encoder_ffn_embed_dim=b.mlp_width, encoder_attention_heads=b.num_heads,
        activation_fn="gelu", layer_norm_first=False, deep_norm=b.deep_norm, conv_pos=b.conv_pos,
        conv_pos_groups=b.conv_pos_groups, relative_position_embedding=True, num_buckets=b.num_buckets,
        max_distance=b.max_distance, gru_rel_pos=b.gru_rel_pos,
    )  # fmt: skip
    beats = {renames.get(k, k): rand(v.shape) for k, v in model.encoder.beats.state_dict().items()}
    torch.save({"cfg": beats_cfg, "model": beats}, root / "beats.pt")
    del beats

    folder = "vicuna"
    (root / folder).mkdir()
    c = cfg.llm
    hf = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.width, intermediate_size=c.mlp_width, num_hidden_layers=depth,
        num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads, max_position_embeddings=c.max_positions,
        rms_norm_eps=c.rms_eps, tie_word_embeddings=False,
    )  # fmt: skip
    hf.save_pretrained(str(root / folder))
    with init_empty_weights():
        llama = LlamaForCausalLM(hf)
    head_dim = c.width // c.num_heads
    keys = [(k, v.shape) for k, v in llama.state_dict().items()]
    if llm_format == "bin":
        keys += [(f"model.layers.{i}.self_attn.rotary_emb.inv_freq", (head_dim // 2,)) for i in range(depth)]
        name, save, index_name = "pytorch_model-{i:05d}-of-{n:05d}.bin", torch.save, "pytorch_model.bin.index.json"
    else:
        name, index_name = "model-{i:05d}-of-{n:05d}.safetensors", "model.safetensors.index.json"

        def save(sd, path):
            save_file(sd, str(path), metadata={"format": "pt"})

    index = shards(folder, keys, name, torch.float16, save)
    (root / folder / index_name).write_text(json.dumps({"metadata": {}, "weight_map": index}))

    delta = {k: rand(dict(model.named_parameters())[k].shape) for k in trainable_names(model)}
    save_file(delta, str(root / "delta.safetensors"))
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".bin", ".safetensors", ".pt"):
            sizes[str(path.relative_to(root))] = path.stat().st_size
    return sizes


# ------------------------------------------------------------------------------------------ driver


def extract(rev: str, folder: Path) -> Path:
    """The package as it was at git revision `rev`, in `folder` (`git archive`)."""
    folder.mkdir()
    archive = subprocess.run(["git", "archive", rev, "videosalmonn"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def run_child(package_root: Path, root: Path, overrides: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "bench" / "load_memory.py"), "--child", str(root), "--", *overrides]
    out = subprocess.run(cmd, env=env, cwd=package_root, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({package_root}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["package"].startswith(str(package_root)):
        raise SystemExit(f"the child imported {result['package']}, not the package under {package_root}")
    return result


def measure(args) -> dict:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / f"weights-depth{args.llm_depth}-shard{args.shard_gb:g}"
        done = root / "sizes.json"
        written_s = None
        if done.is_file():  # --keep: written by an earlier run with the same settings
            sizes = json.loads(done.read_text())
        else:
            start = time.perf_counter()
            sizes = write_checkpoints(root, args.llm_depth, int(args.shard_gb * 1e9))
            done.write_text(json.dumps(sizes))
            written_s = time.perf_counter() - start
        depth = [f"llm.depth={args.llm_depth}"]
        runs = {}
        for name, rev in ((f"before ({args.before})", args.before), (f"whole files ({args.whole})", args.whole)):
            runs[name] = run_child(extract(rev, Path(tmp) / rev), root, depth)
        runs["after"] = run_child(ROOT, root, depth)
        runs["after, llm.quantization=int8"] = run_child(ROOT, root, [*depth, "llm.quantization=int8"])
    before, whole, after = runs[f"before ({args.before})"], runs[f"whole files ({args.whole})"], runs["after"]
    what = f"load 13B preset (LLM {args.llm_depth}/40 layers, fp16, CPU): ours vs the loading code at"
    rows = []
    for rev, base in ((args.before, before), (args.whole, whole)):
        rss = {"rss_ours_mb": after["peak_kib"] / 1024, "rss_baseline_mb": base["peak_kib"] / 1024}
        rows.append(row(f"{what} {rev}, peak host RAM", after["peak_kib"] / 1024, base["peak_kib"] / 1024, "MB", **rss))
        rows.append(row(f"{what} {rev}, load time", after["seconds"], base["seconds"], "s", **rss))
    settings = {"llm_depth": args.llm_depth, "shard_gb": args.shard_gb, "before": args.before, "whole": args.whole}
    peak = after["peak_kib"] / 1024
    return result("load_memory", rows, peak, sizes=sizes, runs=runs, written_s=written_s, **settings)


def report(r: dict) -> None:
    if r["written_s"] is not None:
        print(f"wrote {sum(r['sizes'].values()) / GIB:.2f} GiB of random weights in {r['written_s']:.0f} s")
    for name, size in r["sizes"].items():
        print(f"  {name:55s} {size / GIB:6.2f} GiB")
    largest = max(r["sizes"].values())
    print(f"\n13B preset, LLM {r['llm_depth']}/40 layers, fp16, CPU target; largest file {largest / GIB:.2f} GiB")
    print("peak: VmHWM during load; after: VmRSS after load (memory-mapped weights not yet read are not in it);")
    print("transient = peak - after: what loading held beyond what it kept; touched: VmRSS with every weight read")
    print(f"{'':30s} {'peak':>8s} {'after':>8s} {'transient':>9s} {'touched':>8s} {'model':>8s} {'time':>7s}")
    for name, x in r["runs"].items():
        peak, after, touched = (x[k] * 1024 / GIB for k in ("peak_kib", "rss_kib", "rss_touched_kib"))
        print(
            f"{name:30s} {peak:6.2f} G {after:6.2f} G {peak - after:7.2f} G {touched:6.2f} G "
            f"{x['model_bytes'] / GIB:6.2f} G {x['seconds']:6.1f}s"
        )
    print(describe(r["machine"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm-depth", type=int, default=4, help="LLM layers written and loaded (the 13B has 40)")
    parser.add_argument("--shard-gb", type=float, default=1.0, help="largest LLM .bin shard (Vicuna's: 9.9 GB)")
    parser.add_argument("--before", default=BEFORE, help="git revision of the loading code to compare with")
    parser.add_argument("--whole", default=WHOLE, help="git revision whose read_state_dict reads whole files")
    parser.add_argument("--keep", help="write the checkpoints here and keep them (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    add_json_flag(parser)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.environ["PYTHONPATH"])
        child(Path(args.child), args.overrides)
        return 0
    emit(args, measure(args), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
