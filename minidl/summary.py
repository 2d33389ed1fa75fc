r"""``minidl.summary(model, input_shape)``: the per-layer table the lectures compute by hand.

For every layer that runs (the leaves of the module tree, and the modules that own parameters themselves, in
execution order) it gives the output shape, the parameter count (trainable / frozen), the forward
multiply-accumulates (MACs) and the memory of the output; then the totals and the receptive field of the output.
The rows are recorded by forward hooks (:mod:`minidl.nn.hooks`), registered for the one forward pass it runs.

Counting conventions (the ones the published figures use):

* **MACs** count conv, linear and attention multiply-adds only: Conv2d: OH * OW * O * (C / groups) * KH * KW per
  image; Linear: out_features * in_features per row; MultiheadAttention: its q, k, v projections
  (L E² + S (kdim + vdim) E) and the two products QKᵀ and PV (2 L S E) per sample, its ``out_proj`` a Linear row.
  **FLOPs = 2 * MACs**. Bias additions, normalization, pooling and
  activations are not counted. (VGG16 at 224x224: 15.5 GMAC; ResNet-18: 1.8 G "FLOPs" in the ResNet paper,
  which counts multiply-adds.)
* **Activation memory** counts the input and the output of every layer, except layers that can run in place or
  return a view (elementwise activations, dropout, Identity, Flatten), as in the lecture's VGG16 table, whose
  rows add up to 15.2M values = 61 MB per image in float32. (That slide's total line, "24M * 4 bytes ~= 96MB",
  is not the sum of its own rows.) Training keeps about twice that (the backward caches).
* **Receptive field**: through a chain, ``r += (k - 1) * d * j`` and ``j *= s`` for each conv/pool layer with
  kernel k, dilation d and stride s (j is the distance between neighbouring outputs in input pixels); through a
  ``Residual`` or ``Concat`` the largest of the branches. Global pooling, Flatten and Linear layers end the
  spatial part, so what is reported is the receptive field of the last spatial feature map.

Examples:
    >>> import minidl
    >>> from minidl import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    ...                     nn.Linear(8 * 16 * 16, 10))
    >>> s = minidl.summary(net, (3, 32, 32))
    >>> s.total_params, s.total_macs, s.receptive_field  # MACs: 32*32*8*(3*3*3) + 2048*10
    (20714, 241664, (4, 4))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from minidl.backend import get_backend
from minidl.grad_mode import no_grad
from minidl.nn.attention import MultiheadAttention
from minidl.nn.conv import Conv2d
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.pooling import AvgPool2d, MaxPool2d

__all__ = ["LayerInfo", "ModelSummary", "summary"]

# Layers whose output needs no memory of its own (in place or a view).
_NO_MEMORY = {
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Sigmoid",
    "Tanh",
    "Hardtanh",
    "Hardswish",
    "Mish",
    "Softplus",
    "Dropout",
    "Dropout2d",
    "Identity",
    "Flatten",
}


@dataclasses.dataclass
class LayerInfo:
    """One row of the summary."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    trainable_params: int
    frozen_params: int
    macs: int
    output_bytes: int  # 0 for in-place/view layers


@dataclasses.dataclass
class ModelSummary:
    """The table and its totals; ``print(summary)`` shows it."""

    rows: list[LayerInfo]
    input_shape: tuple[int, ...]
    input_bytes: int
    total_params: int
    trainable_params: int
    total_macs: int
    receptive_field: tuple[int, int] | None

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    @property
    def activation_bytes(self) -> int:
        """Input plus every stored layer output, for one forward pass of the summarized batch."""
        return self.input_bytes + sum(r.output_bytes for r in self.rows)

    def __str__(self) -> str:
        header = f"{'layer (type)':<34} {'output shape':<22} {'params':>12} {'MACs':>14} {'output':>10}"
        lines = [header, "-" * len(header)]
        for r in self.rows:
            params = f"{r.trainable_params + r.frozen_params:,}" + ("*" if r.frozen_params else "")
            lines.append(
                f"{(r.name + ' (' + r.type + ')')[:34]:<34} {str(r.output_shape):<22} {params:>12} "
                f"{r.macs:>14,} {_mb(r.output_bytes):>10}"
            )
        lines.append("-" * len(header))
        lines.append(f"input shape: {self.input_shape}")
        lines.append(
            f"parameters: {self.total_params:,} (trainable {self.trainable_params:,}, frozen {self.frozen_params:,}"
            + ("; * marks layers with frozen parameters)" if self.frozen_params else ")")
        )
        lines.append(f"forward: {self.total_macs / 1e9:.3f} GMAC = {self.total_flops / 1e9:.3f} GFLOP (conv + linear)")
        lines.append(f"activation memory (input + layer outputs, forward): {_mb(self.activation_bytes)}")
        if self.receptive_field is not None:
            lines.append(f"receptive field of the output: {self.receptive_field[0]} x {self.receptive_field[1]}")
        return "\n".join(lines)

    __repr__ = __str__


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB" if n else "-"


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _macs(module: Any, out_shape: tuple[int, ...], args: tuple[Any, ...]) -> int:
    if isinstance(module, Conv2d):  # (also nn.fuse's ConvBn2d)
        kh, kw = _pair(module.kernel_size)
        return int(np.prod(out_shape)) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, Linear):
        return int(np.prod(out_shape)) * module.in_features
    if isinstance(module, MultiheadAttention):  # its own part: the q/k/v projections and the two attention products
        query, key = args[0], args[1]
        batch = 1 if query.ndim == 2 else query.shape[0 if module.batch_first else 1]
        length = query.shape[-2] if query.ndim == 2 or module.batch_first else query.shape[0]
        source = key.shape[-2] if key.ndim == 2 or module.batch_first else key.shape[0]
        e = module.embed_dim
        return batch * (length * e * e + source * (module.kdim + module.vdim) * e + 2 * length * source * e)
    return 0


def _leaf_receptive(module: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(kernel extent, stride) of a spatial layer, or None for layers that keep the geometry."""
    if isinstance(module, (Conv2d, MaxPool2d, AvgPool2d)):
        kh, kw = _pair(module.kernel_size)
        dh, dw = _pair(getattr(module, "dilation", 1))
        stride = getattr(module, "stride", None)
        sh, sw = _pair(stride if stride is not None else module.kernel_size)
        return ((kh - 1) * dh + 1, (kw - 1) * dw + 1), (sh, sw)
    return None


def _fold(modules: list[Any], rf: tuple[float, float], jump: tuple[float, float]) -> tuple[Any, Any]:
    for module in modules:
        rf, jump = _receptive(module, rf, jump)
    return rf, jump


def _receptive(module: Any, rf: tuple[float, float], jump: tuple[float, float]) -> tuple[Any, Any]:
    """Propagate (receptive field, jump) through ``module``.

    A module whose output combines parallel branches (``Residual``, ``Concat``, ResNet's blocks) says so with a
    ``receptive_field_branches()`` method returning a list of chains of modules (an empty chain is the identity);
    the widest branch wins. Any other module with children is a chain of its children in registration order.
    """
    branches = getattr(module, "receptive_field_branches", None)
    if branches is not None:
        results = [_fold(list(chain), rf, jump) for chain in branches()]
        return max(results, key=lambda r: r[0][0] * r[0][1])
    children = list(module.children())
    if children:
        return _fold(children, rf, jump)
    leaf = _leaf_receptive(module)
    if leaf is None:
        return rf, jump
    (kh, kw), (sh, sw) = leaf
    return (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1]), (jump[0] * sh, jump[1] * sw)


def summary(model: Any, input_shape: tuple[int, ...], batch_size: int = 1, dtype: Any = None) -> ModelSummary:
    """Summarize ``model`` for inputs of shape ``(batch_size, *input_shape)``.

    The model runs one forward pass on zeros in eval mode under ``no_grad`` (its mode is restored afterwards).

    Args:
        input_shape: one sample's shape without the batch dimension, e.g. ``(3, 224, 224)``.
        batch_size: rows of the batch the memory and MACs are counted for. Default: 1.
        dtype: input dtype. Default: the model's parameter dtype (float32 if it has none).
    """
    if not isinstance(model, Module):
        name = getattr(model, "__name__", None) or type(model).__name__
        raise TypeError(
            f"summary: expected a minidl.nn.Module, got {type(model).__name__} {name!r}; it reads the layers from "
            "the module tree (named_modules), so wrap a function in a Module subclass whose forward calls it"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(input_shape, (tuple, list)) or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(
            f"summary: input_shape must be a tuple of positive ints without the batch size, got {input_shape!r}"
        )
    if dtype is None:
        first = next(model.parameters(), None)
        dtype = first.dtype if first is not None else np.float32
    names = {id(m): n for n, m in model.named_modules()}
    # a row per layer: a module without children, or one that owns parameters itself (MultiheadAttention's
    # in-projection; its out_proj has its own row)
    layers = [m for m in model.modules() if not list(m.children()) or next(m.parameters(recurse=False), None)]
    rows: list[LayerInfo] = []

    def record(module: Any, args: tuple[Any, ...], out: Any) -> None:
        """A forward hook (minidl.nn.hooks): one row per call of a layer."""
        if isinstance(out, tuple):  # (MultiheadAttention: the output and the attention weights)
            out = out[0]
        trainable = sum(p.size for p in module.parameters(recurse=False) if p.requires_grad)
        frozen = sum(p.size for p in module.parameters(recurse=False) if not p.requires_grad)
        shape = tuple(int(d) for d in out.shape)
        kind = type(module).__name__
        rows.append(
            LayerInfo(
                name=names.get(id(module), "") or kind,
                type=kind,
                output_shape=shape,
                trainable_params=int(trainable),
                frozen_params=int(frozen),
                macs=_macs(module, shape, args),
                output_bytes=0
                if kind in _NO_MEMORY or (args and out is args[0])  # (a module that hands its input on)
                else int(np.prod(shape)) * np.dtype(out.dtype).itemsize,
            )
        )

    modes = {id(m): m.training for m in model.modules()}
    x = get_backend().xp.zeros((batch_size, *input_shape), dtype=dtype)
    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])
    total = sum(p.size for p in model.parameters())
    trainable = sum(p.size for p in model.parameters() if p.requires_grad)
    rf = _receptive(model, (1, 1), (1, 1)) if len(input_shape) == 3 else None
    return ModelSummary(
        rows=rows,
        input_shape=(batch_size, *input_shape),
        input_bytes=int(np.prod(x.shape)) * np.dtype(dtype).itemsize,
        total_params=int(total),
        trainable_params=int(trainable),
        total_macs=int(sum(r.macs for r in rows)),
        receptive_field=None if rf is None else (int(rf[0][0]), int(rf[0][1])),
    )
