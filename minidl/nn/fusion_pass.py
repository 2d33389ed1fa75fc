"""The pass of :func:`fuse`: find the patterns among a model's children and put the fused modules of
:mod:`minidl.nn.fusion` in their slots (that module's docstring says what each pattern becomes, and why).

Patterns are looked for in every :class:`~minidl.nn.Sequential` (consecutive children) and in the modules that list
which of their children run back to back (``fusion_groups``: the ResNet blocks). Only the exact classes are fused,
without hooks and with their own ``forward`` and ``backward`` (:func:`~minidl.nn.fusion._plain`); a module that sits in
several slots is left alone.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any

from minidl.nn.activation import ReLU
from minidl.nn.containers import Identity, Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.fusion import (
    _ACTIVATIONS,
    AddReLU,
    BatchNormReLU1d,
    BatchNormReLU2d,
    ConvBn2d,
    FoldedBatchNorm2d,
    _plain,
)
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm1d, BatchNorm2d

__all__ = ["fuse"]


def _recast(module: Module, cls: type, **attributes: Any) -> Any:
    """A ``cls`` instance with ``module``'s state: the same Parameter objects and buffer arrays (so an optimizer
    built on them keeps training them), its hyperparameters and mode, plus ``attributes``."""
    new = cls.__new__(cls)
    Module.__init__(new)
    for key, value in module.__dict__.items():
        if key in ("_parameters", "_buffers", "_modules"):
            new.__dict__[key].update(value)
        elif key == "_non_persistent_buffers":
            new.__dict__[key] |= value
        elif key not in ("_saved", "_saved_pass", "forward", "backward"):
            new.__dict__[key] = value
    for key, value in attributes.items():
        object.__setattr__(new, key, value)
    return new


def _fuse_group(parent: Module, names: Sequence[str], shared: set[int]) -> int:
    """Fuse the children ``names`` of ``parent`` (2 to 4 modules that run back to back) if they form a pattern;
    returns how many modules were used (0: no pattern starts there). A module in ``shared`` (it sits in several
    slots) is left as it is: a fused copy per slot would split its parameters."""
    mods = [parent._modules.get(name) for name in names]
    if any(id(m) in shared for m in mods[:2]):
        return 0
    if _plain(mods[0], Conv2d) and len(mods) > 1 and _plain(mods[1], BatchNorm2d):
        conv, bn = mods[0], mods[1]
        if bn.num_features != conv.out_channels:
            return 0
        third = mods[2] if len(mods) > 2 else None
        activation = next((name for name, a in _ACTIVATIONS.items() if name and _plain(third, a.module)), None)
        joins = (
            activation is None
            and len(mods) == 4
            and _plain(mods[2], Add)
            and _plain(mods[3], ReLU)
            and not {id(mods[2]), id(mods[3])} & shared
        )
        joined = tuple(names[2:]) if joins else None
        folded_bn = _recast(bn, FoldedBatchNorm2d, activation=activation, slot=names[1], joins=joined)
        parent.add_module(names[0], _recast(conv, ConvBn2d, bn=folded_bn, slots=tuple(names[:2]), joins=joined))
        parent.add_module(names[1], folded_bn)
        if joins:  # conv, BatchNorm, residual sum, ReLU (the end of a ResNet block)
            parent.add_module(names[2], _recast(mods[2], AddReLU))
            parent.add_module(names[3], Identity())
            return 4
        if activation is not None:
            parent.add_module(names[2], Identity())
        return 2 if activation is None else 3
    pairs = {BatchNorm2d: BatchNormReLU2d, BatchNorm1d: BatchNormReLU1d, Add: AddReLU}
    if len(mods) > 1 and _plain(mods[0], *pairs) and _plain(mods[1], ReLU):
        parent.add_module(names[0], _recast(mods[0], pairs[type(mods[0])]))
        parent.add_module(names[1], Identity())
        return 2
    return 0


def _fuse_children(module: Module, shared: set[int]) -> None:
    """Fuse the patterns among ``module``'s children: runs of consecutive children of a Sequential (a module fused
    into one pattern cannot start the next), else the module's own ``fusion_groups``."""
    if isinstance(module, Sequential):
        _fuse_run(module, list(module._modules), 3, shared)
        return
    for names in module.fusion_groups:
        _fuse_run(module, names, 4, shared)


def _fuse_run(module: Module, names: Sequence[str], window: int, shared: set[int]) -> None:
    """Fuse the patterns in the run of children ``names``, at most ``window`` modules each, from the first on (a
    module fused into one pattern cannot start the next)."""
    i = 0
    while i < len(names) - 1:
        i += max(1, _fuse_group(module, names[i : i + window], shared))


def fuse(model: Module, inplace: bool = False) -> Module:
    """The model with its Conv2d-BatchNorm2d(-ReLU or -ReLU6), BatchNorm-ReLU and Add-ReLU patterns fused (see the
    module docstring).

    Args:
        model: any Module.
        inplace: change ``model`` itself (its Parameter objects stay the same, so an optimizer built on them keeps
            working); else a deep copy is fused and ``model`` is left as it is. Default: False.

    Returns:
        The fused model: the same ``state_dict`` keys and outputs (up to float rounding where a BatchNorm is folded
        in inference); every module is still a module whose ``backward`` undoes its ``forward``.

    Examples:
        >>> from minidl import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
        >>> nn.fuse(net)
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): BatchNormReLU1d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
          (2): Identity()
          (3): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    if not isinstance(model, Module):
        raise TypeError(f"fuse: expected a Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"fuse: inplace must be a bool, got {inplace!r}")
    if not inplace:
        model = copy.deepcopy(model)
    modules = list(model.modules())
    slots = Counter(id(child) for module in modules for child in module._modules.values() if child is not None)
    shared = {key for key, count in slots.items() if count > 1}
    for module in modules:
        _fuse_children(module, shared)
    return model
