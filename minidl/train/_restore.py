"""``restored(model, optimizer)``: a block after which the model, its optimizer and minidl's RNG are as before.

The diagnostic tools (:func:`~minidl.train.overfit_batch`, :func:`~minidl.train.lr_find`,
:func:`~minidl.train.check_initial_loss`) train or run the model to learn something about it; a check must not change
what it checks, so they run inside this block. It restores, in place (the Parameters stay the same objects, so the
optimizer and any hook still refer to them):

* every parameter and persistent buffer (``state_dict``: weights, BatchNorm running statistics);
* every parameter's ``.grad`` and every module's ``training`` flag;
* the optimizer's ``state_dict`` (momentum buffers, step counts, learning rates), when one is given;
* minidl's random generator (:func:`minidl.get_rng_state`), so dropout masks and shuffling after the check are those
  the program would have drawn without it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from minidl._random import get_rng_state, set_rng_state
from minidl.nn.module import Module

__all__ = ["restored"]


@contextlib.contextmanager
def restored(model: Module, optimizer: Any = None) -> Iterator[None]:
    """Run the block, then put ``model``, ``optimizer`` (if given) and the RNG back as they were (see module doc)."""
    state = {k: v.copy() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    grads = [None if p.grad is None else p.grad.copy() for p in params]
    modes = [(m, m.training) for m in model.modules()]
    optimizer_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    rng = get_rng_state()
    try:
        yield
    finally:
        model.load_state_dict(state)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        for module, mode in modes:
            module.training = mode
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        set_rng_state(rng)
