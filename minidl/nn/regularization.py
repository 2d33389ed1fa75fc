r"""Weight penalties (L1, L2, elastic net) and the max-norm constraint.

A penalty :math:`R(\theta)` is added to the data loss, :math:`L = L_{data} + R(\theta)`, so its gradient must be
added to the parameters' gradients. minidl has no autograd, so each penalty function does both at once: it
*returns the value* :math:`R(\theta)` (add it to the loss you print, so what is printed is what is optimized) and
*accumulates* :math:`\partial R / \partial \theta` into every ``p.grad``. Call it after ``backward`` (or before:
gradients accumulate) and before ``optimizer.step()``:

.. code-block:: python

    opt.zero_grad()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]   # usually not biases or norms
    loss += l2_penalty(decay, weight=5e-4)
    opt.step()

The penalties and their gradients (:math:`\lambda` is ``weight``; frozen parameters are skipped):

.. math::
    R_{L1} = \lambda \sum_i |\theta_i|, \quad \frac{\partial R_{L1}}{\partial\theta} = \lambda\,\mathrm{sign}(\theta)
    \qquad (\text{the subgradient 0 at } \theta = 0) \\
    R_{L2} = \frac{\lambda}{2} \sum_i \theta_i^2, \quad \frac{\partial R_{L2}}{\partial\theta} = \lambda\,\theta

The factor 1/2 makes ``l2_penalty(params, wd)`` exactly the optimizers' *coupled* ``weight_decay=wd`` (SGD, Adam,
RMSprop add :math:`\lambda\theta` to the gradient without computing the value), so one can be swapped for the
other. It is *not* AdamW's decoupled decay, which shrinks the weights outside the adaptive scaling and has no loss
term. L1 drives weights to exactly zero (sparsity); L2 shrinks all of them proportionally.

**Max-norm** (Srivastava et al. 2014, used with dropout) is a constraint, not a penalty: after each optimizer step,
each unit's incoming weight vector (a row of a Linear weight, a filter of a Conv2d weight) whose norm exceeds ``c``
is rescaled to norm ``c``; nothing is added to the loss or the gradients.
"""

from __future__ import annotations

from typing import Any

from minidl.backend import get_array_module
from minidl.nn._checks import check_float, check_int
from minidl.nn.module import Module, Parameter

__all__ = ["elastic_net_penalty", "l1_penalty", "l2_penalty", "max_norm_"]


def _trainable(where: str, parameters: Any) -> list[Parameter]:
    """The Parameters with requires_grad among a Parameter, a Module or an iterable of Parameters."""
    if isinstance(parameters, Parameter):
        params = [parameters]
    elif isinstance(parameters, Module):
        params = list(parameters.parameters())
    elif hasattr(parameters, "shape"):
        raise TypeError(
            f"{where}: expected Parameters (their gradients are updated), got an array ({type(parameters).__name__})"
        )
    else:
        params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{where}: expected Parameters, but parameters[{i}] is a {type(p).__name__}")
    return [p for p in params if p.requires_grad]


def elastic_net_penalty(parameters: Any, l1: float, l2: float) -> float:
    r"""Elastic net (Zou & Hastie 2005): the L1 and the L2 penalties together; value returned, gradient accumulated.

    .. math:: R = \lambda_1 \sum_i |\theta_i| + \frac{\lambda_2}{2} \sum_i \theta_i^2

    Args:
        parameters: a Parameter, an iterable of Parameters or a Module; frozen parameters are skipped.
        l1: :math:`\lambda_1` >= 0.
        l2: :math:`\lambda_2` >= 0.

    Returns:
        :math:`R` as a float, to add to the loss.

    Backward:
        p.grad += l1 * sign(p.data) + l2 * p.data

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> elastic_net_penalty([w], l1=0.1, l2=0.5)       # 0.1 * 3 + 0.25 * 5
        1.55
        >>> w.grad                                          # 0.1 * sign(w) + 0.5 * w
        array([ 0.6, -1.1])
    """
    where = "elastic_net_penalty"
    l1 = check_float(where, "l1", l1, low=0.0)
    l2 = check_float(where, "l2", l2, low=0.0)
    total = 0.0
    for p in _trainable(where, parameters):
        xp = get_array_module(p.data)
        w = p.data
        value = 0.0
        dw = None
        if l1 != 0:
            value += l1 * float(xp.abs(w).sum())
            dw = l1 * xp.sign(w)
        if l2 != 0:
            value += 0.5 * l2 * float((w * w).sum())
            dw = l2 * w if dw is None else dw + l2 * w
        if dw is not None:
            p.accumulate_grad(dw.astype(w.dtype, copy=False))
        total += value
    return total


def l1_penalty(parameters: Any, weight: float) -> float:
    r"""L1 penalty (lasso): returns :math:`\lambda \sum |\theta|` and adds :math:`\lambda\,\mathrm{sign}(\theta)` to
    each ``p.grad``.

    Args:
        parameters: a Parameter, an iterable of Parameters or a Module; frozen parameters are skipped.
        weight: :math:`\lambda` >= 0.

    Returns:
        The penalty as a float, to add to the loss.

    Backward:
        p.grad += weight * sign(p.data)   (0 where p.data == 0)

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> w = nn.Parameter(np.array([1.0, -2.0, 0.0]))
        >>> l1_penalty(w, weight=0.1)
        0.3
        >>> w.grad
        array([ 0.1, -0.1,  0. ])
    """
    check_float("l1_penalty", "weight", weight, low=0.0)
    return elastic_net_penalty(_trainable("l1_penalty", parameters), l1=weight, l2=0.0)


def l2_penalty(parameters: Any, weight: float) -> float:
    r"""L2 penalty (ridge, weight decay): returns :math:`\frac{\lambda}{2} \sum \theta^2` and adds
    :math:`\lambda\theta` to each ``p.grad`` (the same update as an optimizer's ``weight_decay=λ``).

    Args:
        parameters: a Parameter, an iterable of Parameters or a Module; frozen parameters are skipped.
        weight: :math:`\lambda` >= 0.

    Returns:
        The penalty as a float, to add to the loss.

    Backward:
        p.grad += weight * p.data

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> w = nn.Parameter(np.array([1.0, -2.0]))
        >>> l2_penalty(w, weight=0.1)          # 0.05 * (1 + 4)
        0.25
        >>> w.grad
        array([ 0.1, -0.2])
    """
    check_float("l2_penalty", "weight", weight, low=0.0)
    return elastic_net_penalty(_trainable("l2_penalty", parameters), l1=0.0, l2=weight)


def max_norm_(parameters: Any, max_norm: float, dim: int = 0, norm_type: float = 2.0) -> Any:
    r"""Max-norm constraint, in place: rescale each slice along ``dim`` whose norm exceeds ``max_norm``.

    For a Linear weight (out_features, in_features) or a Conv2d weight (O, C, KH, KW), ``dim=0`` takes one slice per
    output unit, its incoming weights, as in Srivastava et al. 2014. Call it after ``optimizer.step()``:

    .. math:: w_j \leftarrow w_j \cdot \min\Big(1, \frac{c}{\lVert w_j \rVert_p + 10^{-7}}\Big)

    (the :math:`10^{-7}` and the result are those of ``torch.renorm(w, p, dim, c)``).

    Args:
        parameters: a Parameter or an array with at least 2 dimensions, an iterable of them, or a Module (then
            every parameter with at least 2 dimensions: the weights, not the biases).
        max_norm: :math:`c` > 0.
        dim: the dimension indexing the slices (output units). Default: 0.
        norm_type: :math:`p` > 0. Default: 2.0.

    Returns:
        The same ``parameters`` (changed in place).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> w = nn.Parameter(np.array([[3.0, 4.0], [0.3, 0.4]]))
        >>> _ = max_norm_(w, max_norm=1.0)
        >>> np.round(w.data, 4)                 # the first row had norm 5, the second 0.5
        array([[0.6, 0.8],
               [0.3, 0.4]])
    """
    where = "max_norm_"
    c = check_float(where, "max_norm", max_norm, low=0.0, low_open=True)
    p_norm = check_float(where, "norm_type", norm_type, low=0.0, low_open=True)
    if isinstance(parameters, Module):
        arrays = [p.data for p in parameters.parameters() if p.ndim >= 2]
    elif isinstance(parameters, Parameter) or hasattr(parameters, "shape"):
        arrays = [parameters.data if isinstance(parameters, Parameter) else parameters]
    else:
        arrays = [p.data if isinstance(p, Parameter) else p for p in parameters]
    for i, w in enumerate(arrays):
        if not hasattr(w, "shape"):
            raise TypeError(f"{where}: expected Parameters or arrays, but item {i} is a {type(w).__name__}")
        if w.ndim < 2:
            raise ValueError(
                f"{where}: expected a weight with at least 2 dimensions (one slice per output unit), got shape "
                f"{tuple(w.shape)}"
            )
        d = check_int(where, "dim", dim, minimum=-w.ndim)
        if d >= w.ndim:
            raise ValueError(f"{where}: dim={dim} is out of range for a weight of shape {tuple(w.shape)}")
        d %= w.ndim
        xp = get_array_module(w)
        axes = tuple(a for a in range(w.ndim) if a != d)
        a = xp.abs(w)
        norms = (a**p_norm).sum(axis=axes, keepdims=True) ** (1.0 / p_norm)  # one norm per slice, kept broadcastable
        scale = xp.where(norms > c, c / (norms + 1e-7), 1.0).astype(w.dtype)
        w *= scale
    return parameters
