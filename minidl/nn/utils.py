r"""Gradient clipping and flat parameter vectors (``torch.nn.utils``).

**Clipping by norm** rescales all gradients together when their joint norm is too large, keeping the direction of
the step: with :math:`n = \lVert (\lVert g_1\rVert_p, \dots, \lVert g_k\rVert_p) \rVert_p` (the p-norm of all
gradients seen as one vector; :math:`p = \infty` gives the largest absolute value),

.. math:: g_i \leftarrow g_i \cdot \min\left(1, \frac{\text{max\_norm}}{n + 10^{-6}}\right)

It is the standard guard against exploding gradients (RNNs, transformers, the first steps of a badly initialized
network). **Clipping by value** clamps every coordinate to :math:`[-c, c]`, which changes the direction.

Call either between ``backward`` and ``optimizer.step()``; both work in place on ``p.grad`` and skip parameters
without a gradient.

Examples:
    >>> import numpy as np
    >>> from minidl import nn
    >>> from minidl.nn.utils import clip_grad_norm_
    >>> p = nn.Parameter(np.zeros(2)); p.grad = np.array([3.0, 4.0])
    >>> clip_grad_norm_([p], max_norm=1.0)      # returns the norm before clipping
    5.0
    >>> np.round(p.grad, 4)
    array([0.6, 0.8])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import check_float
from minidl.nn.module import Module, Parameter

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "parameters_to_vector",
    "vector_to_parameters",
]


def _parameter_list(where: str, parameters: Any) -> list[Parameter]:
    """A list of Parameters from a Parameter, a Module or an iterable of Parameters."""
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, Module):
        return list(parameters.parameters())
    if hasattr(parameters, "shape"):
        raise TypeError(f"{where}: expected Parameters, got an array ({type(parameters).__name__}); use nn.Parameter")
    params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{where}: expected Parameters, but parameters[{i}] is a {type(p).__name__}")
    return params


def _norm_type(where: str, norm_type: Any) -> float:
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        return math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}: norm_type must be a number or 'inf', got {norm_type!r}")
    norm_type = float(norm_type)
    if math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"{where}: norm_type must be > 0 (or inf), got {norm_type}")
    return norm_type


def _vector_norm(a: Any, norm_type: float) -> float:
    """The p-norm of all entries of ``a`` (``inf``: the largest absolute value), as a Python float."""
    xp = get_array_module(a)
    a = xp.abs(a.ravel())
    if a.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(a.max())
    if norm_type == 2.0:
        return float(xp.sqrt(xp.sum(a * a)))
    if norm_type == 1.0:
        return float(a.sum())
    return float(xp.sum(a**norm_type) ** (1.0 / norm_type))


def get_total_norm(tensors: Any, norm_type: float | str = 2.0, error_if_nonfinite: bool = False) -> float:
    r"""The p-norm of several arrays seen as one vector: the p-norm of their p-norms.

    Args:
        tensors: an array or an iterable of arrays (e.g. ``[p.grad for p in params]``).
        norm_type: p (``float("inf")`` or ``"inf"`` for the largest absolute value). Default: 2.0.
        error_if_nonfinite: raise if the norm is nan or inf. Default: False.

    Examples:
        >>> import numpy as np
        >>> get_total_norm([np.array([3.0]), np.array([4.0])])
        5.0
    """
    norm_type = _norm_type("get_total_norm", norm_type)
    arrays = [tensors] if hasattr(tensors, "shape") else list(tensors)
    if not arrays:
        return 0.0
    norms = np.array([_vector_norm(a, norm_type) for a in arrays], dtype=np.float64)
    total = _vector_norm(norms, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite ({total}), so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )
    return total


def clip_grads_with_norm_(parameters: Any, max_norm: float, total_norm: float) -> None:
    r"""Scale the gradients by :math:`\min(1, \text{max\_norm} / (\text{total\_norm} + 10^{-6}))`, in place.

    Args:
        parameters: Parameters (or a Module) whose ``grad`` is scaled.
        max_norm: the largest norm allowed.
        total_norm: the norm of the gradients, e.g. from :func:`get_total_norm`.
    """
    params = _parameter_list("clip_grads_with_norm_", parameters)
    max_norm = check_float("clip_grads_with_norm_", "max_norm", max_norm, low=0.0)
    coef = min(max_norm / (float(total_norm) + 1e-6), 1.0)
    for p in params:
        if p.grad is not None:
            p.grad *= coef  # like PyTorch, multiply even when coef == 1 (no branch on the device)


def clip_grad_norm_(
    parameters: Any, max_norm: float, norm_type: float | str = 2.0, error_if_nonfinite: bool = False
) -> float:
    r"""Rescale all gradients together so that their joint norm is at most ``max_norm`` (``torch``'s semantics).

    .. math:: n = \Big\lVert \big(\lVert g_1\rVert_p, \dots, \lVert g_k\rVert_p\big) \Big\rVert_p, \qquad
        g_i \leftarrow g_i \min\Big(1, \frac{\text{max\_norm}}{n + 10^{-6}}\Big)

    Args:
        parameters: a Parameter, an iterable of Parameters or a Module; those without a gradient are skipped.
        max_norm: the largest norm allowed, >= 0.
        norm_type: p; ``float("inf")`` (or ``"inf"``) for the largest absolute value. Default: 2.0.
        error_if_nonfinite: raise a RuntimeError when the norm is nan or inf (else the gradients are scaled by the
            non-finite coefficient, as in PyTorch). Default: False.

    Returns:
        The total norm of the gradients *before* clipping (a float): worth logging, since a norm that keeps
        growing signals divergence.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> p = nn.Parameter(np.zeros(3)); p.grad = np.array([1.0, -4.0, 2.0])
        >>> clip_grad_norm_(p, max_norm=2.0, norm_type="inf")
        4.0
        >>> np.round(p.grad, 4)
        array([ 0.5, -2. ,  1. ])
    """
    params = _parameter_list("clip_grad_norm_", parameters)
    check_float("clip_grad_norm_", "max_norm", max_norm, low=0.0)
    grads = [p.grad for p in params if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    if grads:
        clip_grads_with_norm_([p for p in params if p.grad is not None], max_norm, total)
    return total


def clip_grad_value_(parameters: Any, clip_value: float) -> None:
    r"""Clamp every gradient coordinate to :math:`[-c, c]`, in place.

    Args:
        parameters: a Parameter, an iterable of Parameters or a Module; those without a gradient are skipped.
        clip_value: :math:`c`, >= 0.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> p = nn.Parameter(np.zeros(3)); p.grad = np.array([0.5, -4.0, 2.0])
        >>> clip_grad_value_(p, 1.0); p.grad
        array([ 0.5, -1. ,  1. ])
    """
    params = _parameter_list("clip_grad_value_", parameters)
    clip_value = check_float("clip_grad_value_", "clip_value", clip_value, low=0.0)
    for p in params:
        if p.grad is not None:
            xp = get_array_module(p.grad)
            xp.clip(p.grad, -clip_value, clip_value, out=p.grad)


def parameters_to_vector(parameters: Any) -> Any:
    """All parameters' values flattened and concatenated into one 1-D array (in the given order).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> parameters_to_vector([nn.Parameter(np.ones((2, 2))), nn.Parameter(np.zeros(1))])
        array([1., 1., 1., 1., 0.])
    """
    params = _parameter_list("parameters_to_vector", parameters)
    if not params:
        raise ValueError("parameters_to_vector: got no parameters")
    xp = get_array_module(params[0].data)
    return xp.concatenate([p.data.ravel() for p in params])


def vector_to_parameters(vec: Any, parameters: Any) -> None:
    """Copy the slices of a 1-D array into the parameters, in place (the inverse of :func:`parameters_to_vector`).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> a, b = nn.Parameter(np.zeros((2, 2))), nn.Parameter(np.zeros(1))
        >>> vector_to_parameters(np.arange(5.0), [a, b]); a.data, b.data
        (array([[0., 1.],
               [2., 3.]]), array([4.]))
    """
    params = _parameter_list("vector_to_parameters", parameters)
    if not hasattr(vec, "shape") or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-D array, got {getattr(vec, 'shape', type(vec).__name__)}")
    total = sum(p.size for p in params)
    if vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: the vector has {vec.shape[0]} entries, the parameters {total}")
    offset = 0
    for p in params:
        p.data[...] = vec[offset : offset + p.size].reshape(p.shape)
        offset += p.size
