"""Test-time diagnostics installed on a built model for the length of a run, never part of its forward.

    with zeroed_levels(pipe.model.connector, [1]):      # paper Table 5: the 5-s level's output replaced by zeros
        answers = pipe.answer(requests)

(Masking a whole stream needs no hook: it is `Request.modality_mask`, an input of the model.)
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.errors import InputError

_ZEROED: weakref.WeakKeyDictionary[MultiResolutionConnector, tuple[int, ...]] = weakref.WeakKeyDictionary()


@contextmanager
def zeroed_levels(connector: MultiResolutionConnector, levels: Sequence[int]) -> Iterator[None]:
    """Inside the block, the Q-Former outputs of these resolution levels are replaced by zeros before the
    projection to the LLM; `ConnectorOutput.levels` (and the diversity loss) still see them.

    The projection reads `cat[level 0 | level 1 | ...]` per token (connector.width each), so the hook multiplies
    its input by a 0/1 mask over those slices. Empty `levels` installs nothing; a connector cannot be zeroed
    twice at once (what a run records would no longer be what ran).
    """
    n = len(connector.cfg.levels)
    bad = [i for i in levels if not -n <= i < n]
    if bad:
        raise InputError(f"zero level(s) {bad}: the connector has {n} levels (0 to {n - 1})")
    if connector in _ZEROED:
        raise InputError(f"the connector already has levels {list(_ZEROED[connector])} zeroed")
    width = connector.cfg.width
    keep = torch.ones(n * width)
    for i in levels:
        keep[i % n * width : (i % n + 1) * width] = 0

    def zero(module, args: tuple[Tensor]) -> tuple[Tensor]:
        (tokens,) = args  # (B, N, width * levels)
        return (tokens * keep.to(tokens),)

    handle = connector.proj.register_forward_pre_hook(zero) if levels else None
    _ZEROED[connector] = tuple(levels)
    try:
        yield
    finally:
        del _ZEROED[connector]
        if handle is not None:
            handle.remove()
