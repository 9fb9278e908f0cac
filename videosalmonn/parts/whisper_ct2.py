"""A CTranslate2 Whisper model.bin -> a transformers WhisperModel directory holding its encoder.

`encoders/whisper.py` loads the result like any HF Whisper checkpoint (`encoder.*` keys + config.json). Only the
encoder is converted: the decoder is not part of video-SALMONN.

model.bin (CTranslate2 binary version 6, little-endian; `ctranslate2/specs/model_spec.py` `_serialize`):

    u32 version | str spec name | u32 revision | u32 n
    n x ( str name | u8 ndim | u32 dims[ndim] | u8 dtype | u32 nbytes | bytes )
    u32 n_aliases | n_aliases x ( str alias | str target )          str = u16 len+1 | utf-8 | NUL

Name map (CTranslate2 fuses q, k, v into one linear, with a zero bias for k, which has none in Whisper):

    encoder/conv{1,2}/{weight,bias}                      conv{1,2}.{weight,bias}
    encoder/position_encodings/encodings                 embed_positions.weight
    encoder/layer_norm/{gamma,beta}                      layer_norm.{weight,bias}
    encoder/layer_i/self_attention/layer_norm            layers.i.self_attn_layer_norm
    encoder/layer_i/self_attention/linear_0 (3D, D)      layers.i.self_attn.{q,k,v}_proj
    encoder/layer_i/self_attention/linear_1              layers.i.self_attn.out_proj
    encoder/layer_i/ffn/layer_norm                       layers.i.final_layer_norm
    encoder/layer_i/ffn/linear_{0,1}                     layers.i.fc{1,2}
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from videosalmonn.errors import CheckpointError

BINARY_VERSION = 6
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # ctranslate2 DataType order
SPEC = "WhisperSpec"
ENCODER = "encoder/"


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin, by name (aliases resolved), as numpy arrays (memory-mapped)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf, offset = memoryview(data), 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, buf, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        n = take("H")
        value = bytes(buf[offset : offset + n - 1]).decode("utf-8")
        offset += n
        return value

    try:
        version, spec, _revision = take("I"), text(), take("I")
        if version != BINARY_VERSION or spec != SPEC:
            raise CheckpointError(f"{path}: a CTranslate2 {spec!r} v{version} file, expected {SPEC} v{BINARY_VERSION}")
        out: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = text()
            shape = tuple(take("I") for _ in range(take("B")))
            dtype, nbytes = DTYPES.get(take("B")), take("I")
            if dtype is not None:  # (bfloat16 never appears in a Whisper float16 model)
                out[name] = np.frombuffer(data, dtype, nbytes // np.dtype(dtype).itemsize, offset).reshape(shape)
            offset += nbytes
        for _ in range(take("I")):
            alias, target = text(), text()
            out[alias] = out[target]
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable CTranslate2 model.bin ({e})") from None
    return out


def encoder_state_dict(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CTranslate2 `encoder/*` variables -> transformers `WhisperEncoder` state dict (values as stored)."""
    out = {
        "conv1.weight": ct2["encoder/conv1/weight"],
        "conv1.bias": ct2["encoder/conv1/bias"],
        "conv2.weight": ct2["encoder/conv2/weight"],
        "conv2.bias": ct2["encoder/conv2/bias"],
        "embed_positions.weight": ct2["encoder/position_encodings/encodings"],
        "layer_norm.weight": ct2["encoder/layer_norm/gamma"],
        "layer_norm.bias": ct2["encoder/layer_norm/beta"],
    }
    for i in range(count_layers(ct2)):
        ct, hf = f"encoder/layer_{i}/", f"layers.{i}."
        q, k, v = np.split(ct2[ct + "self_attention/linear_0/weight"], 3)  # (3D, D) -> 3 x (D, D)
        qb, kb, vb = np.split(ct2[ct + "self_attention/linear_0/bias"], 3)
        if np.any(kb):
            raise CheckpointError(f"encoder layer {i}: the fused key bias is not zero (not a Whisper encoder)")
        out |= {
            hf + "self_attn.q_proj.weight": q,
            hf + "self_attn.q_proj.bias": qb,
            hf + "self_attn.k_proj.weight": k,
            hf + "self_attn.v_proj.weight": v,
            hf + "self_attn.v_proj.bias": vb,
        }
        for ours, theirs in (
            ("self_attn.out_proj", "self_attention/linear_1"),
            ("fc1", "ffn/linear_0"),
            ("fc2", "ffn/linear_1"),
        ):
            out[hf + ours + ".weight"] = ct2[ct + theirs + "/weight"]
            out[hf + ours + ".bias"] = ct2[ct + theirs + "/bias"]
        for ours, theirs in (
            ("self_attn_layer_norm", "self_attention/layer_norm"),
            ("final_layer_norm", "ffn/layer_norm"),
        ):
            out[hf + ours + ".weight"] = ct2[ct + theirs + "/gamma"]
            out[hf + ours + ".bias"] = ct2[ct + theirs + "/beta"]
    return out


def count_layers(ct2: dict[str, np.ndarray], prefix: str = ENCODER) -> int:
    return len({int(m.group(1)) for k in ct2 if (m := re.match(re.escape(prefix) + r"layer_(\d+)/", k))})


def whisper_config(ct2: dict[str, np.ndarray]):
    """The transformers WhisperConfig of the model's dims (decoder dims from its tensors too, for completeness)."""
    from transformers import WhisperConfig

    width, n_mels, _ = ct2["encoder/conv1/weight"].shape
    return WhisperConfig(
        vocab_size=ct2["decoder/embeddings/weight"].shape[0],
        num_mel_bins=n_mels,
        d_model=width,
        encoder_layers=count_layers(ct2),
        encoder_attention_heads=int(ct2["encoder/num_heads"]),
        encoder_ffn_dim=ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=ct2["encoder/position_encodings/encodings"].shape[0],
        decoder_layers=count_layers(ct2, "decoder/"),
        decoder_attention_heads=int(ct2["decoder/num_heads"]),
        decoder_ffn_dim=ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_target_positions=ct2["decoder/position_encodings/encodings"].shape[0],
    )


def convert(files: dict[str, Path], out: Path) -> None:
    """`model/model.bin` -> `out/config.json` + `out/model.safetensors` (`encoder.*`, float16 as stored)."""
    import torch
    from safetensors.torch import save_file

    ct2 = read_ct2(files["model/model.bin"])
    sd = {"encoder." + k: torch.from_numpy(v.copy()) for k, v in encoder_state_dict(ct2).items()}  # copies: aligned
    whisper_config(ct2).to_json_file(str(out / "config.json"))
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
