"""SmolLM2-135M-Instruct as a GGUF file -> a transformers LlamaForCausalLM directory.

transformers reads GGUF itself (with the `gguf` package): it dequantises the Q4_1 blocks to float32, undoes
llama.cpp's q/k row permutation, and rebuilds the GPT-2-style BPE tokenizer with its chat template from the GGUF
metadata. We save that once as an ordinary HF directory, so every later load is a plain safetensors read:

    out/config.json              LlamaConfig (576 wide, 30 layers, 9 heads / 3 KV heads, vocab 49152, tied head)
    out/model.safetensors        float32 (the exact dequantised values; the tied lm_head is not stored twice)
    out/tokenizer.json, tokenizer_config.json, chat_template.jinja   (<|im_start|> / <|im_end|> ChatML)
"""

from __future__ import annotations

from pathlib import Path

import torch

from videosalmonn.errors import CheckpointError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TIED_HEAD = "lm_head.weight"


def convert(files: dict[str, Path], out: Path) -> None:
    """The GGUF file -> `out/` (config, float32 safetensors, tokenizer files)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    gguf = files[GGUF_FILE]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (ImportError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{gguf}: cannot be read as a GGUF LLM ({first})") from None
    # the loaded config still says "quantized with gguf" (so transformers refuses save_pretrained): a plain one
    settings = {k: v for k, v in model.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    config = LlamaConfig(**settings)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:  # one tensor shared by the embeddings and the head: stored once
        state.pop(TIED_HEAD, None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
