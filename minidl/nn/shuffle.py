r"""Channel shuffle (Zhang et al., "ShuffleNet", CVPR 2018): interleave the channels of ``groups`` groups, so that
the next grouped convolution sees channels from every group (PyTorch's ``nn.ChannelShuffle``).

With C = G * K channels seen as a G x K grid (group g, position k: channel :math:`gK + k`), the shuffle transposes
the grid: output channel :math:`kG + g` is input channel :math:`gK + k`. In arrays::

    out = x.reshape(N, G, K, H, W).transpose(0, 2, 1, 3, 4).reshape(N, C, H, W)

A permutation of the channels moves values without changing them, so its backward is the inverse permutation:
transposing the K x G grid back, which is the shuffle with K groups.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._checks import check_array, check_grad_output, check_int
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["ChannelShuffle", "channel_shuffle_backward", "channel_shuffle_forward"]


class ChannelShuffleCache(NamedTuple):
    """The cache of :func:`channel_shuffle_forward`: what the backward needs to undo the permutation."""

    shape: tuple[int, ...]  # of x (and of the output)
    groups: int  # G
    dtype: Any


def _shuffle(x: Any, groups: int) -> Any:
    """View the channels as a (groups, C // groups) grid and transpose it: (N, C, *) -> (N, C, *)."""
    N, C = x.shape[0], x.shape[1]
    rest = tuple(x.shape[2:])
    grid = x.reshape((N, groups, C // groups) + rest)
    return grid.swapaxes(1, 2).reshape(x.shape)  # reshape copies: the result is C-contiguous


def channel_shuffle_forward(x: Any, groups: int) -> tuple[Any, Any]:
    r"""Interleave the channels of ``groups`` groups. Returns ``(out, cache)``.

    With K = C / G channels per group:

    .. math:: out_{n,\,kG + g,\,h,w} = x_{n,\,gK + k,\,h,w} \qquad (0 \le g < G,\ 0 \le k < K)

    Args:
        x: (N, C, H, W), or any (N, C, \*) with at least 3 dimensions.
        groups: G; it must divide C.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, H, W).

    Backward:
        The inverse permutation: dx_{n, gK + k} = dout_{n, kG + g}, the shuffle with K groups.

    Examples:
        >>> x = np.arange(6.0).reshape(1, 6, 1, 1)  # channels 0..5, groups (0 1 2) and (3 4 5)
        >>> channel_shuffle_forward(x, 2)[0].ravel()
        array([0., 3., 1., 4., 2., 5.])
    """
    where = "channel_shuffle_forward"
    groups = check_int(where, "groups", groups)
    check_array(where, x, min_ndim=3)
    C = x.shape[1]
    if C % groups != 0:
        raise ValueError(
            f"{where}: the {C} channels (dimension 1 of shape {tuple(x.shape)}) do not divide into groups={groups}"
        )
    return _shuffle(x, groups), ChannelShuffleCache(tuple(x.shape), groups, x.dtype)


def channel_shuffle_backward(dout: Any, cache: Any) -> Any:
    r"""Undo the permutation: the gradient of each input channel is that of the output channel it moved to.

    .. math:: dx_{n,\,gK + k,\,h,w} = dout_{n,\,kG + g,\,h,w} \qquad (K = C / G)

    Shape:
        - dout: (N, C, H, W).  - dx: (N, C, H, W).

    Examples:
        >>> out, cache = channel_shuffle_forward(np.zeros((1, 6, 1, 1)), 2)
        >>> channel_shuffle_backward(np.arange(6.0).reshape(1, 6, 1, 1), cache).ravel()  # dout 0..5 back
        array([0., 2., 4., 1., 3., 5.])
    """
    check_grad_output("channel_shuffle_backward", dout, cache.shape, cache.dtype)
    return _shuffle(dout, cache.shape[1] // cache.groups)  # transposing the K x G grid back


class ChannelShuffle(Module):
    r"""Interleaves the channels of ``groups`` groups (PyTorch's ``nn.ChannelShuffle``; ShuffleNet's shuffle).

    .. math:: y_{n,\,kG + g,\,h,w} = x_{n,\,gK + k,\,h,w} \qquad (G = \text{groups},\ K = C / G)

    Args:
        groups: G, the number of groups; it must divide the input's channels.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, C, H, W).

    Backward:
        dx_{n, gK + k} = dout_{n, kG + g} (the inverse permutation, i.e. the shuffle with K groups).

    Examples:
        >>> shuffle = ChannelShuffle(3)
        >>> y = shuffle(np.arange(6.0).reshape(1, 6, 1, 1))
        >>> y.ravel(), shuffle.backward(y).ravel()
        (array([0., 2., 4., 1., 3., 5.]), array([0., 1., 2., 3., 4., 5.]))
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = check_int("ChannelShuffle", "groups", groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"

    def forward(self, x: Any) -> Any:
        out, cache = F.channel_shuffle_forward(x, self.groups)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.channel_shuffle_backward(dout, cache)
