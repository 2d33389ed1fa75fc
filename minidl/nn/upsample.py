r"""Up-sampling (and down-sampling) of (N, C, H, W) images by interpolation: nearest and bilinear, PyTorch's indices.

Both modes are **separable**: each output row i reads input rows through a map :math:`i \mapsto (i_0, i_1, \lambda_0,
\lambda_1)`, each output column likewise, and

.. math:: y_{n,c,i,j} = \sum_{a,b \in \{0,1\}} \lambda^H_a(i)\, \lambda^W_b(j)\; x_{n,c,\,i_a(i),\,j_b(j)}

i.e. :math:`y = A_H\, x\, A_W^T` per image and channel, with :math:`A_H` the (OH, H) matrix that holds
:math:`\lambda_0, \lambda_1` at columns :math:`i_0, i_1` of row i. The maps, for an axis of ``in`` input and ``out``
output pixels (:math:`r` = 1 / scale_factor when a scale factor is given, else in / out), are PyTorch's:

* **nearest**: :math:`i_0 = \min(\lfloor i\, r \rfloor, in - 1)`, :math:`\lambda_0 = 1` (PyTorch computes
  :math:`r` and :math:`i\, r` in float32, and so does minidl, so that the indices agree; when out = in the map is the
  identity, when out = 2 in it is :math:`\lfloor i / 2 \rfloor`). Not the rounding of "nearest-exact". (PyTorch's
  float64 forward rounds :math:`i\, r` differently in rare cases, e.g. i = 111 with scale_factor 3.7, where it reads
  pixel 30 while its own backward, and its float32 forward, use 29; minidl uses 29 in both directions.)
* **bilinear**, ``align_corners=False`` (the default): the source coordinate of pixel *centres*,
  :math:`s = \max(r (i + \tfrac12) - \tfrac12,\; 0)` (clamped at 0, PyTorch's area-pixel rule);
  ``align_corners=True``: the corner pixels of input and output coincide, :math:`s = i\, (in - 1) / (out - 1)`
  (:math:`s = 0` for out = 1). Then :math:`i_0 = \min(\lfloor s \rfloor, in - 1)`, :math:`i_1 = \min(i_0 + 1,
  in - 1)`, :math:`\lambda_1 = s - i_0` (clipped to [0, 1]), :math:`\lambda_0 = 1 - \lambda_1`; out = in is the
  identity.

The output size is ``size``, or :math:`\lfloor in \cdot \mathrm{scale\_factor} \rfloor` per axis.

Backward: y is linear in x, :math:`y = A_H x A_W^T`, so the gradient is the transpose,

.. math:: dx = A_H^T\; dout\; A_W \qquad\Big(dx_{n,c,h,w} = \sum_{i,j} [A_H]_{i,h}\, [A_W]_{j,w}\;
    dout_{n,c,i,j}\Big)

each input pixel collects the gradients of every output pixel that read it, weighted by how much it read (for
nearest, the plain sum over its copies). The forward gathers the rows (no product with zeros, so an inf stays where
it is); the backward multiplies by the small (OH, H) and (OW, W) matrices.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import _is_int, check_array, check_grad_output
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = [
    "Upsample",
    "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
    "interpolate_backward",
    "interpolate_forward",
]

_MODES = ("nearest", "bilinear")


def _source_map(
    size_in: int, size_out: int, scale: float | None, mode: str, align_corners: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, lambda0, lambda1)`` of one axis (host arrays of length size_out, float64 weights); ``scale`` is the
    scale factor the caller gave (None: computed from the sizes)."""
    i = np.arange(size_out)
    if size_out == size_in:  # PyTorch copies (whatever the scale factor)
        return i, i, np.ones(size_out), np.zeros(size_out)
    if mode == "nearest":
        if size_out == 2 * size_in:
            i0 = i // 2
        else:  # float32 arithmetic, as PyTorch's nearest_idx
            r = np.float32(1.0 / scale) if scale is not None else np.float32(size_in) / np.float32(size_out)
            i0 = np.minimum(np.floor(i.astype(np.float32) * r).astype(np.int64), size_in - 1)
        return i0, i0, np.ones(size_out), np.zeros(size_out)
    if align_corners:
        s = i * ((size_in - 1) / (size_out - 1) if size_out > 1 else 0.0)
    else:
        r = 1.0 / scale if scale is not None else size_in / size_out
        s = np.maximum(r * (i + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(s).astype(np.int64), size_in - 1)
    lambda1 = np.clip(s - i0, 0.0, 1.0)
    i1 = np.minimum(i0 + 1, size_in - 1)
    return i0, i1, 1.0 - lambda1, lambda1


def _matrix(source_map: tuple[np.ndarray, ...], size_in: int) -> np.ndarray:
    """The (out, in) interpolation matrix A of one axis: row i holds lambda0 at i0 and lambda1 at i1."""
    i0, i1, lambda0, lambda1 = source_map
    A = np.zeros((len(i0), size_in))
    rows = np.arange(len(i0))
    np.add.at(A, (rows, i0), lambda0)
    np.add.at(A, (rows, i1), lambda1)
    return A


def _pair_of(where: str, name: str, value: Any, kind: type) -> tuple[Any, Any]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(values) == 2 and all(
        (_is_int(v) if kind is int else isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in values
    )
    if not ok:
        kind_name = "int" if kind is int else "number"
        raise TypeError(f"{where}: {name} must be a positive {kind_name} or a pair of them, got {value!r}")
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError(f"{where}: {name} must be positive, got {value!r}")
    return values


def _check_options(where: str, size: Any, scale_factor: Any, mode: Any, align_corners: Any, recompute: Any) -> bool:
    """Validate the options shared by the pair and the Module; return align_corners as a bool."""
    if mode not in _MODES:
        raise ValueError(f"{where}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{where}: give exactly one of size and scale_factor, got size={size!r}, scale_factor="
                         f"{scale_factor!r}")  # fmt: skip
    if align_corners is not None:
        if mode == "nearest":
            raise ValueError(f"{where}: align_corners can only be set with mode='bilinear', got mode='nearest'")
        if not isinstance(align_corners, bool):
            raise TypeError(f"{where}: align_corners must be a bool or None, got {align_corners!r}")
    if recompute is not None and not isinstance(recompute, bool):
        raise TypeError(f"{where}: recompute_scale_factor must be a bool or None, got {recompute!r}")
    if recompute and size is not None:
        raise ValueError(f"{where}: recompute_scale_factor is only for scale_factor, not for size")
    return bool(align_corners)


class InterpolateCache(NamedTuple):
    """The cache of :func:`interpolate_forward`."""

    A_h: Any  # (OH, H) interpolation matrix, x's dtype and backend
    A_w: Any  # (OW, W)
    x_shape: tuple[int, ...]
    dtype: Any


def interpolate_forward(
    x: Any,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
) -> tuple[Any, Any]:
    r"""Resize (N, C, H, W) images to ``size`` or by ``scale_factor`` (PyTorch's ``F.interpolate``, 2-D).

    .. math:: out_{n,c,i,j} = \sum_{a,b \in \{0,1\}} \lambda^H_a(i)\, \lambda^W_b(j)\;
        x_{n,c,\,i_a(i),\,j_b(j)} \qquad (= A_H\, x_{n,c}\, A_W^T)

    with the source maps of :mod:`minidl.nn.upsample` (nearest: one source pixel of weight 1).

    Args:
        x: (N, C, H, W).
        size: (OH, OW) or one int for both.
        scale_factor: a positive number or a pair; OH = floor(H * scale_factor). Give size or scale_factor.
        mode: ``"nearest"`` or ``"bilinear"``. Default: ``"nearest"``.
        align_corners: bilinear only: map corner pixels onto corner pixels. Default: None (False).
        recompute_scale_factor: True computes the source indices from the sizes, not from ``scale_factor``.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW), (OH, OW) = size or floor((H, W) * scale_factor).
    Backward:
        dx = A_H^T dout A_W (:func:`interpolate_backward`).

    Examples:
        >>> x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> interpolate_forward(x, scale_factor=2)[0][0, 0]
        array([[1., 1., 2., 2.],
               [1., 1., 2., 2.],
               [3., 3., 4., 4.],
               [3., 3., 4., 4.]])
        >>> interpolate_forward(x, size=3, mode="bilinear", align_corners=True)[0][0, 0]
        array([[1. , 1.5, 2. ],
               [2. , 2.5, 3. ],
               [3. , 3.5, 4. ]])
    """
    where = "interpolate_forward"
    be = check_array(where, x, ndim=4)
    align = _check_options(where, size, scale_factor, mode, align_corners, recompute_scale_factor)
    H, W = x.shape[2:]
    if size is not None:
        OH, OW = _pair_of(where, "size", size, int)
        scales: tuple[Any, Any] = (None, None)
    else:
        scales = _pair_of(where, "scale_factor", scale_factor, float)
        OH, OW = math.floor(float(H) * scales[0]), math.floor(float(W) * scales[1])
        if OH < 1 or OW < 1:
            raise ValueError(
                f"{where}: the output would be {OH}x{OW} for an input {H}x{W} and scale_factor {scale_factor!r}; "
                "input and output sizes must be at least 1"
            )
        if recompute_scale_factor:
            scales = (None, None)
    rows = _source_map(H, OH, scales[0], mode, align)
    cols = _source_map(W, OW, scales[1], mode, align)
    xp = be.xp
    i0, i1, l0, l1 = (be.asarray(a) for a in rows)
    j0, j1, m0, m1 = (be.asarray(a) for a in cols)
    if mode == "nearest":
        out = x[:, :, i0[:, None], j0[None, :]]
    else:
        l0, l1, m0, m1 = (a.astype(x.dtype) for a in (l0, l1, m0, m1))
        tall = x[:, :, i0, :] * l0[:, None] + x[:, :, i1, :] * l1[:, None]  # (N, C, OH, W): the rows
        out = tall[:, :, :, j0] * m0 + tall[:, :, :, j1] * m1  # (N, C, OH, OW): then the columns
    A_h = be.asarray(_matrix(rows, H).astype(x.dtype))
    A_w = be.asarray(_matrix(cols, W).astype(x.dtype))
    return xp.ascontiguousarray(out), InterpolateCache(A_h, A_w, tuple(x.shape), x.dtype)


def interpolate_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of :func:`interpolate_forward`: the transposed interpolation, per image and channel.

    .. math:: dx_{n,c} = A_H^T\; dout_{n,c}\; A_W, \qquad
        dx_{n,c,h,w} = \sum_{i,j} [A_H]_{i,h}\, [A_W]_{j,w}\; dout_{n,c,i,j}

    Shape:
        - dout: (N, C, OH, OW).  - dx: (N, C, H, W).

    Examples:
        >>> out, cache = interpolate_forward(np.ones((1, 1, 2, 2)), scale_factor=2)
        >>> interpolate_backward(np.ones((1, 1, 4, 4)), cache)[0, 0]  # each pixel was copied 4 times
        array([[4., 4.],
               [4., 4.]])
    """
    A_h, A_w, x_shape, dtype = cache
    N, C = x_shape[:2]
    check_grad_output("interpolate_backward", dout, (N, C, A_h.shape[0], A_w.shape[0]), dtype)
    return get_array_module(dout).ascontiguousarray(A_h.T @ dout @ A_w)


class Upsample(Module):
    r"""Resize (N, C, H, W) images by nearest or bilinear interpolation (PyTorch's ``nn.Upsample``, 2-D).

    .. math:: y_{n,c,i,j} = \sum_{a,b \in \{0,1\}} \lambda^H_a(i)\, \lambda^W_b(j)\;
        x_{n,c,\,i_a(i),\,j_b(j)} \qquad (= A_H\, x_{n,c}\, A_W^T)

    nearest: :math:`i_0 = \min(\lfloor i\, r \rfloor, H - 1)`, one weight 1; bilinear: the two neighbours of the
    source coordinate :math:`s = \max(r(i + \tfrac12) - \tfrac12, 0)` (or :math:`i (H - 1)/(OH - 1)` with
    ``align_corners``), with :math:`r` = 1 / scale_factor or H / OH. Details in :mod:`minidl.nn.upsample`.

    Args:
        size: (OH, OW) or one int.
        scale_factor: a positive number or a pair (give size or scale_factor).
        mode: ``"nearest"`` or ``"bilinear"``. Default: ``"nearest"``.
        align_corners: bilinear only. Default: None (False).
        recompute_scale_factor: compute the indices from the output size rather than scale_factor. Default: None.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW), (OH, OW) = size or floor((H, W) * scale_factor).
    Backward:
        dx = A_H^T dout A_W: each input pixel sums the gradients of the outputs that read it, with their weights.

    Examples:
        >>> from minidl import nn
        >>> up = nn.Upsample(scale_factor=2, mode="bilinear")
        >>> y = up(np.array([[[[0.0, 4.0]]]]))
        >>> y[0, 0]
        array([[0., 1., 3., 4.],
               [0., 1., 3., 4.]])
        >>> up.backward(np.ones_like(y))[0, 0]
        array([[4., 4.]])
    """

    def __init__(
        self,
        size: Any = None,
        scale_factor: Any = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        _check_options(where, size, scale_factor, mode, align_corners, recompute_scale_factor)
        if size is not None:
            _pair_of(where, "size", size, int)
        else:
            _pair_of(where, "scale_factor", scale_factor, float)
            is_pair = isinstance(scale_factor, (tuple, list))
            scale_factor = tuple(float(s) for s in scale_factor) if is_pair else float(scale_factor)
        self.size = size
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def extra_repr(self) -> str:
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return f"{info}, mode={self.mode!r}"  # PyTorch's repr

    def forward(self, x: Any) -> Any:
        out, cache = F.interpolate_forward(
            x, self.size, self.scale_factor, self.mode, self.align_corners, self.recompute_scale_factor
        )
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.interpolate_backward(dout, cache)


class UpsamplingNearest2d(Upsample):
    r"""Nearest-neighbour up-sampling, PyTorch's ``nn.UpsamplingNearest2d``: ``Upsample(mode="nearest")``.

    .. math:: y_{n,c,i,j} = x_{n,c,\,\min(\lfloor i\, r_H \rfloor, H - 1),\,\min(\lfloor j\, r_W \rfloor, W - 1)}

    Args:
        size: (OH, OW) or one int.  scale_factor: a positive number or a pair (give one of them).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx[n, c, h, w] = the sum of dout over the output pixels that copied x[n, c, h, w].

    Examples:
        >>> from minidl import nn
        >>> nn.UpsamplingNearest2d(scale_factor=2)(np.ones((1, 3, 4, 4))).shape
        (1, 3, 8, 8)
    """

    def __init__(self, size: Any = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    r"""Bilinear up-sampling with ``align_corners=True``, PyTorch's ``nn.UpsamplingBilinear2d``.

    .. math:: y_{n,c,i,j} = \sum_{a,b \in \{0,1\}} \lambda^H_a(i)\, \lambda^W_b(j)\;
        x_{n,c,\,i_a(i),\,j_b(j)}, \qquad s_H(i) = i\, \frac{H - 1}{OH - 1}

    Args:
        size: (OH, OW) or one int.  scale_factor: a positive number or a pair (give one of them).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, OH, OW).
    Backward:
        dx = A_H^T dout A_W.

    Examples:
        >>> from minidl import nn
        >>> nn.UpsamplingBilinear2d(size=(1, 3))(np.array([[[[0.0, 4.0]]]]))
        array([[[[0., 2., 4.]]]])
    """

    def __init__(self, size: Any = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
