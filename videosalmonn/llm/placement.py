"""Where the LLM's layers live: several GPUs, a GPU and the CPU, or the disk (accelerate's big-model loading).

    llm.device_map      null: the whole LLM on the model's device; `auto` | `balanced` | `balanced_low_0` |
                        `sequential`: accelerate's `infer_auto_device_map` within `llm.max_memory`; or
                        `model.layers=0,lm_head=cpu` (or a JSON object): {module: device}, a device being a GPU
                        index, `cuda:1`, `cpu` or `disk`
    llm.max_memory      `0=18GiB,1=22GiB,cpu=48GiB` (or a JSON object): for the LLM alone
    llm.offload_folder  where `disk` modules are kept (one safetensors file per tensor, in the model dtype)

    plan(model, cfg, dtype)   the device map of an empty (meta) HF model, or None without `llm.device_map`
    Placement.target(key)     where one checkpoint tensor goes while loading: a torch.device, or DISK
    Placement.offload(...)    a DISK tensor written to the offload folder; the model keeps it on meta
    Placement.dispatch(model) accelerate's `dispatch_model` once every weight (LoRA and delta too) is in: hooks
                              move each block's inputs to its device; `cpu` (with a GPU main device) and `disk`
                              blocks get their weights brought to the main device for their forward only

The main device is the first GPU of the map (the CPU when it has none): the LLM's inputs and outputs live there.
The map may name the modules of the HF model (`model.layers.3`); once LoRA wraps it (peft), the same modules are
found by identity, so nothing here knows peft's nesting.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from videosalmonn.config import LLMConfig
from videosalmonn.errors import ConfigError

DISK = "disk"
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")  # as transformers' from_pretrained(device_map=)


@dataclass
class Placement:
    """A device map of the HF model's modules ({name: GPU index | "cuda:N" | "cpu" | "disk"}) and the offload
    folder of its `disk` tensors."""

    device_map: dict[str, int | str]
    offload_folder: Path | None = None
    offloaded: dict[int, tuple[nn.Parameter, dict]] = field(default_factory=dict)  # id -> (meta param, index entry)
    dispatched: bool = False

    def __post_init__(self):
        disk = sorted(k for k, v in self.device_map.items() if v == DISK)
        if disk and self.offload_folder is None:
            raise ConfigError(
                f"llm.device_map puts {len(disk)} module(s) on disk ({disk[0]}, ...): set llm.offload_folder"
            )
        self._prefixes = sorted(self.device_map, key=len, reverse=True)  # the longest module name first

    @property
    def main_device(self) -> torch.device:
        gpus = [v for v in self.device_map.values() if v not in ("cpu", DISK)]
        return _device(gpus[0]) if gpus else torch.device("cpu")

    def target(self, key: str) -> torch.device | str:
        """The device of checkpoint tensor `key` (that of its longest enclosing module in the map), or DISK."""
        for name in self._prefixes:
            if name == "" or key == name or key.startswith(name + "."):
                value = self.device_map[name]
                return DISK if value == DISK else _device(value)
        raise ConfigError(f"llm.device_map gives no device for {key}")

    def offload(self, model: nn.Module, key: str, value: Tensor, dtype: torch.dtype) -> None:
        """Write `value` (floating: in `dtype`) to the offload folder and leave `key` on meta in `model`."""
        from safetensors.torch import save_file

        value = value.to(dtype) if value.is_floating_point() else value
        path = self.offload_folder / f"{key}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({key: value.contiguous()}, str(tmp))
        os.replace(tmp, path)
        module_name, _, name = key.rpartition(".")
        module = model.get_submodule(module_name)
        old = module._parameters[name]
        param = nn.Parameter(torch.empty_like(value, device="meta"), requires_grad=old.requires_grad)
        module._parameters[name] = param
        entry = {"safetensors_file": str(path), "weight_name": key, "dtype": str(value.dtype).removeprefix("torch.")}
        self.offloaded[id(param)] = (param, entry)

    def is_offloaded(self, tensor: Tensor) -> bool:
        """True for a parameter that waits on disk (meta in the model by design)."""
        return id(tensor) in self.offloaded and self.offloaded[id(tensor)][0] is tensor

    def dispatch(self, model: nn.Module) -> None:
        """accelerate's `dispatch_model` of `model` (the HF model or its peft wrapper) by this map; once."""
        from accelerate import dispatch_model

        if self.dispatched:
            return
        prefix = _path_of(model, _hf_model(model))
        device_map = {_join(prefix, k): v for k, v in self.device_map.items()}
        main = self.main_device
        moved = {DISK} if main.type == "cpu" else {"cpu", DISK}  # brought to the main device for their forward
        away = [k for k, v in device_map.items() if v in moved]
        params = list(model.named_parameters())
        state = {n: p for n, p in params if not p.is_meta and any(_within(n, k) for k in away)}
        index = {n: self.offloaded[id(p)][1] for n, p in params if self.is_offloaded(p)}
        dispatch_model(
            model,
            device_map,
            main_device=str(main),  # accelerate compares it with "cpu" and hands it to safe_open: a string
            state_dict=state or None,
            offload_dir=str(self.offload_folder) if index else None,
            offload_index=index or None,
        )
        self.dispatched = True


def plan(model: nn.Module, cfg: LLMConfig, dtype: torch.dtype) -> Placement | None:
    """The Placement of an empty HF causal LM by `cfg.device_map` / `max_memory` / `offload_folder`."""
    if cfg.device_map is None:
        return None
    from accelerate.utils import check_device_map, get_balanced_memory, get_max_memory, infer_auto_device_map

    spec = parse_device_map(cfg.device_map)
    folder = Path(os.path.expanduser(cfg.offload_folder)) if cfg.offload_folder else None
    if isinstance(spec, dict):
        try:
            check_device_map(model, spec)
        except ValueError as e:
            raise ConfigError(f"llm.device_map: {_first_line(e)}") from None
        return Placement(spec, folder)
    memory = get_max_memory(parse_max_memory(cfg.max_memory))  # accelerate < 1.3 reads it unconverted: bytes, all keys
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    if spec != "sequential":
        memory = get_balanced_memory(model, memory, no_split, dtype, low_zero=spec == "balanced_low_0")
    return Placement(infer_auto_device_map(model, memory, no_split, dtype), folder)


def parse_device_map(text: str) -> str | dict[str, int | str]:
    """`auto` (and the other strategies) as is, or {module: device} from `MODULE=DEVICE[,MODULE=DEVICE...]` or a
    JSON object (in YAML, a quoted string: a bare mapping is not a string); ConfigError otherwise."""
    if text in STRATEGIES:
        return text
    try:
        if text.lstrip().startswith("{"):
            spec = json.loads(text)
        else:
            spec = {k.strip(): _number(v.strip()) for k, v in (item.split("=", 1) for item in text.split(","))}
    except (json.JSONDecodeError, ValueError):
        spec = None
    if not isinstance(spec, dict) or not spec or not all(_is_device(v) for v in spec.values()):
        raise ConfigError(
            f"llm.device_map: {text!r} is not one of {', '.join(STRATEGIES)} nor MODULE=DEVICE[,...] (or a JSON "
            'object) with a GPU index, "cuda:N", "cpu" or "disk" as DEVICE'
        )
    return spec


def _number(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def parse_max_memory(text: str | None) -> dict[int | str, int | str] | None:
    """`0=18GiB,cpu=48GiB` or a JSON object -> {0: "18GiB", "cpu": "48GiB"} (accelerate's max_memory)."""
    if text is None:
        return None
    try:
        pairs = json.loads(text) if text.lstrip().startswith("{") else dict(p.split("=", 1) for p in text.split(","))
    except (json.JSONDecodeError, ValueError):
        pairs = None
    if not isinstance(pairs, dict) or not pairs:
        raise ConfigError(f"llm.max_memory: {text!r} is not DEVICE=SIZE[,DEVICE=SIZE...] (e.g. 0=18GiB,cpu=48GiB)")
    out = {}
    for k, v in pairs.items():
        k, v = str(k).strip(), str(v).strip() if isinstance(v, str) else v
        if not (k.isdigit() or k in ("cpu", "mps")) or not (
            isinstance(v, int) or re.fullmatch(r"\d+(\.\d+)?[KMGT]i?B", str(v))
        ):
            raise ConfigError(f"llm.max_memory: {k}={v} is not DEVICE=SIZE (a GPU index or cpu; e.g. 18GiB)")
        out[int(k) if k.isdigit() else k] = v
    return out


def _is_device(value) -> bool:
    if isinstance(value, bool):
        return False
    return (
        (isinstance(value, int) and value >= 0)
        or value in ("cpu", DISK, "mps")
        or bool(isinstance(value, str) and re.fullmatch(r"cuda(:\d+)?", value))
    )


def _device(value: int | str) -> torch.device:
    return torch.device("cuda", value) if isinstance(value, int) else torch.device(value)


def _hf_model(model: nn.Module) -> nn.Module:
    """The HF model inside a peft wrapper (itself when not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _path_of(model: nn.Module, inner: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is inner)


def _join(prefix: str, name: str) -> str:
    return ".".join(p for p in (prefix, name) if p)


def _within(name: str, module: str) -> bool:
    return module == "" or name.startswith(module + ".")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
