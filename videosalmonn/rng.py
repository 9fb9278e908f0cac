"""Seeded randomness that leaves the process's global RNG state as it found it.

    with seeded(seed, devices):     the CPU generator and each given CUDA device's generator start from `seed`;
        ...                         afterwards every global RNG state is what it was (`torch.random.fork_rng`)

Only the devices named are forked and seeded: `torch.manual_seed` would also seed (or, before CUDA starts, queue a
seed for) every other GPU of the process, which `fork_rng` over the used devices would not undo.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int, devices: Iterable[torch.device] = ()) -> Iterator[None]:
    cuda = sorted(
        {d.index if d.index is not None else torch.cuda.current_device() for d in devices if d.type == "cuda"}
    )
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
