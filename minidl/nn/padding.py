r"""2-D padding, the pair convolution uses: zeros (``"constant"``), ``"reflect"``, ``"replicate"`` and ``"circular"``.

Every mode is a gather through an index map (``"constant"`` writes the input into a zero array), so the backward is
the adjoint of a gather: each input cell receives the sum of the gradients of the padded cells that copied it.
``pad = (left, right, top, bottom)`` follows ``torch.nn.functional.pad``'s order. :class:`minidl.nn.Conv2d` calls this
pair for its ``padding_mode``s other than zeros, and ``conv2d_forward`` for the uneven part of ``padding='same'``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.nn._checks import check_array, check_grad_output, check_int

__all__ = ["pad2d_backward", "pad2d_forward"]

_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _pad_index(where: str, size: int, lo: int, hi: int, mode: str) -> Any:
    """For each of the ``lo + size + hi`` padded positions, the input index it copies (host ints)."""
    import numpy as np

    if mode == "reflect" and max(lo, hi) >= size:
        raise ValueError(f"{where}: reflect padding ({lo}, {hi}) must be smaller than the input size {size}")
    if mode == "circular" and max(lo, hi) > size:
        raise ValueError(f"{where}: circular padding ({lo}, {hi}) must be at most the input size {size}")
    j = np.arange(-lo, size + hi)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... H-1 | H-2 ...
        return np.where(j < 0, -j, np.where(j >= size, 2 * (size - 1) - j, j))
    if mode == "replicate":
        return np.clip(j, 0, size - 1)
    return j % size  # circular


class Pad2dCache(NamedTuple):
    """The cache of :func:`pad2d_forward`."""

    x_shape: tuple[int, ...]
    pad: tuple[int, int, int, int]  # (left, right, top, bottom)
    mode: str
    dtype: Any  # of x


def pad2d_forward(x: Any, pad: tuple[int, int, int, int], mode: str = "constant") -> tuple[Any, Any]:
    r"""Pad the last two dimensions; ``pad = (left, right, top, bottom)`` in ``torch.nn.functional.pad``'s order.

    Modes: ``"constant"`` (zeros), ``"reflect"`` (mirror without repeating the edge: ``c b | a b c | b a``),
    ``"replicate"`` (repeat the edge), ``"circular"`` (wrap around). Each is a gather through an index map
    :math:`r` over rows and :math:`s` over columns (``"constant"``: zero where the map falls outside the input):

    .. math:: y_{n,c,i,j} = x_{n,c,\,r(i),\,s(j)}, \qquad i < top + H + bottom,\; j < left + W + right

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, top + H + bottom, left + W + right).
    Backward:
        The adjoint of a gather: every padded cell's gradient is added to the input cell it copied (edge cells of
        ``replicate`` collect a whole border); zero padding just crops (:func:`pad2d_backward`).

    Examples:
        >>> import numpy as np
        >>> out, _ = pad2d_forward(np.arange(3.0).reshape(1, 1, 1, 3), (2, 1, 0, 0), "reflect")
        >>> out.ravel()
        array([2., 1., 0., 1., 2., 1.])
    """
    be = check_array("pad2d_forward", x, ndim=4)
    if mode not in _PAD_MODES:
        raise ValueError(f"pad2d_forward: mode must be one of {_PAD_MODES}, got {mode!r}")
    if len(pad) != 4:
        raise ValueError(f"pad2d_forward: pad must be (left, right, top, bottom), got {pad!r}")
    left, right, top, bottom = (check_int("pad2d_forward", "pad", p, minimum=0) for p in pad)
    N, C, H, W = x.shape
    cache = Pad2dCache(tuple(x.shape), (left, right, top, bottom), mode, x.dtype)
    if mode == "constant":
        out = be.xp.zeros((N, C, H + top + bottom, W + left + right), dtype=x.dtype)
        out[:, :, top : top + H, left : left + W] = x
        return out, cache
    rows = be.xp.asarray(_pad_index("pad2d_forward", H, top, bottom, mode))
    cols = be.xp.asarray(_pad_index("pad2d_forward", W, left, right, mode))
    return x[:, :, rows[:, None], cols[None, :]], cache


def _unpad_axis(d: Any, index: Any, lo: int, size: int, axis: int) -> Any:
    """Adjoint of gathering ``index`` along ``axis``: the interior slice, plus each border cell added to its source."""
    take = [slice(None)] * d.ndim
    take[axis] = slice(lo, lo + size)
    out = d[tuple(take)].copy()
    for j in [*range(lo), *range(lo + size, d.shape[axis])]:  # only the border cells: a loop over the pad width
        src, dst = [slice(None)] * d.ndim, [slice(None)] * d.ndim
        src[axis], dst[axis] = j, int(index[j])
        out[tuple(dst)] += d[tuple(src)]
    return out


def pad2d_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`pad2d_forward`: each input cell sums the gradients of the padded cells that copied it.

    .. math:: dx_{n,c,h,w} = \sum_{i:\, r(i) = h} \; \sum_{j:\, s(j) = w} dout_{n,c,i,j}

    Shape:
        - dout: (N, C, top + H + bottom, left + W + right).  - dx: (N, C, H, W).

    Examples:
        >>> import numpy as np
        >>> out, cache = pad2d_forward(np.arange(3.0).reshape(1, 1, 1, 3), (2, 1, 0, 0), "replicate")
        >>> out.ravel()
        array([0., 0., 0., 1., 2., 2.])
        >>> pad2d_backward(np.ones_like(out), cache).ravel()
        array([3., 1., 2.])
    """
    (N, C, H, W), (left, right, top, bottom), mode, dtype = cache
    check_grad_output("pad2d_backward", dout, (N, C, H + top + bottom, W + left + right), dtype)
    if mode == "constant":
        return dout[:, :, top : top + H, left : left + W].copy()
    d = _unpad_axis(dout, _pad_index("pad2d_backward", W, left, right, mode), left, W, axis=3)
    return _unpad_axis(d, _pad_index("pad2d_backward", H, top, bottom, mode), top, H, axis=2)
