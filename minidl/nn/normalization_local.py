r"""Local response normalization (AlexNet, 2012): each value divided by a power of its neighbouring channels' energy.

Unlike the other normalization layers it keeps no statistics and learns nothing: with a window of ``size`` channels
around channel c,

.. math:: y_{n,c} = x_{n,c} \Big/ \Big(k + \frac{\alpha}{size} \sum_{c' \in R_c} x_{n,c'}^2\Big)^{\beta}

See :func:`local_response_norm_forward` for the window and :func:`local_response_norm_backward` for the gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_float, check_grad_output, check_int
from minidl.nn.dispatch import F
from minidl.nn.module import Module

__all__ = ["LocalResponseNorm", "local_response_norm_backward", "local_response_norm_forward"]


# ---------------------------------------------------------------------------------------------- local response norm
def _channel_window_sum(xp: Any, a: Any, before: int, after: int) -> Any:
    """s[:, c] = a[:, c - before] + ... + a[:, c + after] (channels outside [0, C) count as 0)."""
    C = a.shape[1]
    padded = xp.pad(a, [(0, 0), (before, after)] + [(0, 0)] * (a.ndim - 2))
    out = padded[:, 0:C].copy()
    for d in range(1, before + after + 1):
        out += padded[:, d : d + C]
    return out


class LocalResponseNormCache(NamedTuple):
    """The cache of :func:`local_response_norm_forward`."""

    x: Any
    s: Any  # k + alpha / n * (window sum of x^2)
    out: Any
    size: int
    alpha: float
    beta: float


def local_response_norm_forward(
    x: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> tuple[Any, Any]:
    r"""Local response normalization (AlexNet): each value divided by the energy of its neighbouring channels.

    .. math:: s_c = k + \frac{\alpha}{n} \sum_{c' = c - \lfloor n/2 \rfloor}^{c + \lfloor (n-1)/2 \rfloor} x_{c'}^2,
        \qquad y_c = x_c\, s_c^{-\beta}

    Args:
        x: input (N, C, \*), at least 3-D.  size: n, the number of channels in a window.
        alpha: scale of the sum. Default: 1e-4.  beta: exponent. Default: 0.75.  k: additive constant. Default: 1.

    Shape:
        - Input: (N, C, \*) - Output: the same.

    Backward:
        y_c depends on x_j through s_c for every window c containing j (c in [j - floor((n-1)/2), j + floor(n/2)]):
        dx_j = dout_j s_j^(-beta) - (2 alpha beta / n) x_j * sum over those c of dout_c y_c / s_c.

    Examples:
        >>> import numpy as np
        >>> out, _ = local_response_norm_forward(np.ones((1, 3, 1)), size=2, alpha=1.0, beta=1.0, k=1.0)
        >>> out[0, :, 0]  # windows [c - 1, c]: s = 1 + 1/2 for channel 0, 1 + (1 + 1)/2 = 2 for channels 1, 2
        array([0.66666667, 0.5       , 0.5       ])
    """
    where = "local_response_norm_forward"
    be = check_array(where, x, min_ndim=3)
    size = check_int(where, "size", size)
    alpha, beta, k = (check_float(where, name, v) for name, v in (("alpha", alpha), ("beta", beta), ("k", k)))
    s = k + (alpha / size) * _channel_window_sum(be.xp, x * x, size // 2, (size - 1) // 2)
    out = x * s ** (-beta)
    return out, LocalResponseNormCache(x, s, out, size, alpha, beta)


def local_response_norm_backward(dout: Any, cache: Any) -> Any:
    r"""Gradient of :func:`local_response_norm_forward` with respect to x.

    :math:`y_c` depends on :math:`x_j` through :math:`s_c` for every window c that contains j, that is
    :math:`c \in [j - \lfloor (n-1)/2 \rfloor,\; j + \lfloor n/2 \rfloor]`:

    .. math:: dx_j = dout_j\, s_j^{-\beta} - \frac{2 \alpha \beta}{n}\, x_j \sum_{c:\, j \in \mathrm{window}(c)}
        \frac{dout_c\, y_c}{s_c}

    Shape:
        - dout: (N, C, \*).  - dx: (N, C, \*).

    Examples:
        >>> import numpy as np
        >>> out, cache = local_response_norm_forward(np.full((1, 2, 1), 2.0), size=1, alpha=1.0, beta=1.0, k=1.0)
        >>> out.ravel()  # size 1: y = x / (1 + x^2)
        array([0.4, 0.4])
        >>> local_response_norm_backward(np.ones_like(out), cache).ravel()  # (1 - x^2) / (1 + x^2)^2 at x = 2
        array([-0.12, -0.12])
    """
    x, s, out, size, alpha, beta = cache
    check_grad_output("local_response_norm_backward", dout, out.shape, out.dtype)
    back = _channel_window_sum(get_array_module(dout), dout * out / s, (size - 1) // 2, size // 2)  # transposed window
    return dout * s ** (-beta) - (2.0 * alpha * beta / size) * x * back


class LocalResponseNorm(Module):
    r"""Local response normalization across channels (Krizhevsky et al., 2012), as ``torch.nn.LocalResponseNorm``.

    .. math:: y_c = x_c \left(k + \frac{\alpha}{n} \sum_{c' \in \text{window}(c)} x_{c'}^2\right)^{-\beta}

    Args:
        size: n, the number of neighbouring channels in a window.
        alpha: scale. Default: 1e-4.  beta: exponent. Default: 0.75.  k: additive constant. Default: 1.0.

    Shape:
        - Input: (N, C, \*) - Output: the same shape.

    Backward:
        dx_j = dout_j s_j^(-beta) - (2 alpha beta / n) x_j sum_{c: j in window(c)} dout_c y_c / s_c.

    Examples:
        >>> import numpy as np
        >>> LocalResponseNorm(5)
        LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=1.0)
        >>> LocalResponseNorm(5)(np.ones((2, 8, 3, 3), np.float32)).shape
        (2, 8, 3, 3)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = check_int("LocalResponseNorm", "size", size)
        self.alpha = check_float("LocalResponseNorm", "alpha", alpha)
        self.beta = check_float("LocalResponseNorm", "beta", beta)
        self.k = check_float("LocalResponseNorm", "k", k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def _where(self) -> str:
        return f"LocalResponseNorm({self.size})"

    def forward(self, x: Any) -> Any:
        out, cache = F.local_response_norm_forward(x, self.size, self.alpha, self.beta, self.k)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.local_response_norm_backward(dout, cache)
