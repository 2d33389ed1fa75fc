r"""Lookahead (Zhang, Lucas, Hinton and Ba 2019, arXiv 1907.08610): k fast steps forward, one step back.

Any optimizer (the *fast* one) takes k steps from the *slow* weights :math:`\phi`; then the slow weights move a
fraction :math:`\alpha` of the way towards where the fast weights :math:`\theta` arrived, and the fast weights restart
from there:

.. math::
    \phi \leftarrow \phi + \alpha\,(\theta - \phi) \qquad \theta \leftarrow \phi \qquad \text{(every k steps)}

With :math:`\alpha = 1` it is the inner optimizer alone; with a small :math:`\alpha` the slow weights are an
exponential moving average of the fast ones, sampled every k steps, and the training continues from that average.
airbench (arXiv 2404.00498) uses it with k = 5 and an :math:`\alpha` that falls from 1 to 0.23 during training
(``1 - 0.95**5 * (step / total_steps)**3``), and averages BatchNorm's running statistics the same way: pass them as
``buffers``. At the end of training, ``sync(alpha=0.0)`` puts the slow (averaged) weights into the model.

As in timm, the wrapper is itself an :class:`~minidl.optim.Optimizer` whose ``param_groups``, ``state`` and
``defaults`` *are* the inner optimizer's (the same objects, not copies): a learning-rate scheduler, the
:class:`~minidl.train.Trainer` or :func:`~minidl.train.lr_find` can be given either one, and a change of ``lr``
through one is seen by the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import check_float, check_int
from minidl.optim.optimizer import Optimizer

__all__ = ["Lookahead"]


class Lookahead(Optimizer):
    r"""Wraps an optimizer: every ``k`` of its steps, slow += alpha * (fast - slow), then fast = slow.

    The slow copies are taken when the wrapper is made, of every parameter in the optimizer's param groups (trained
    or frozen) and of every floating-point array in ``buffers`` (integer buffers such as BatchNorm's
    ``num_batches_tracked`` count batches and are left alone); :meth:`add_param_group` adds a group to the inner
    optimizer and slow copies of its parameters. ``param_groups``, ``state`` and ``defaults`` are the inner
    optimizer's, so a learning-rate scheduler may be given this object or the inner optimizer: either way it
    schedules the inner optimizer's learning rates (``StepLR(optim.Lookahead(optim.SGD(...)), 30)``).

    Args:
        optimizer: the inner (fast) optimizer, e.g. ``optim.SGD(...)``.
        k: fast steps between two synchronizations. Default: 5.
        alpha: the slow step size :math:`\alpha \in [0, 1]`; may be changed between steps (a schedule). Default: 0.5.
        buffers: arrays averaged like the parameters, e.g. ``model.buffers()``. Default: none.

    Attributes:
        step_count: the inner optimizer's steps taken through :meth:`step`.  slow: the slow copies, in order.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn, optim
        >>> w = nn.Parameter(np.array([4.0]))
        >>> opt = optim.Lookahead(optim.SGD([w], lr=0.25), k=2, alpha=0.5)
        >>> for _ in range(2):
        ...     opt.zero_grad(); w.grad = 2 * w.data; _ = opt.step()  # fast: 4 -> 2 -> 1
        >>> w.data, opt.slow[0]   # slow: 4 + 0.5 * (1 - 4) = 2.5, and the fast weights restart there
        (array([2.5]), array([2.5]))
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5, buffers: Iterable[Any] = ()) -> None:
        # Optimizer.__init__ is not called: the param groups, state and defaults are the inner optimizer's.
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Lookahead: expected a minidl optimizer to wrap, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.k = check_int("Lookahead", "k", k, minimum=1)
        self.alpha = check_float("Lookahead", "alpha", alpha, low=0.0, high=1.0)
        self.step_count = 0
        self._opt_called = False  # set by step(); lets a scheduler warn when it steps first
        self._fast: list[Any] = [p.data for group in optimizer.param_groups for p in group["params"]]
        self._num_params = len(self._fast)  # _fast and slow: the parameters, then the buffers
        for b in buffers:
            if not hasattr(b, "dtype") or not hasattr(b, "shape"):
                raise TypeError(f"Lookahead: buffers must be arrays, got a {type(b).__name__}")
            if np.issubdtype(np.dtype(b.dtype), np.floating):
                self._fast.append(b)
        self.slow: list[Any] = [a.copy() for a in self._fast]

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The inner optimizer's param groups (the same list)."""
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        """The inner optimizer's per-parameter state (the same dict)."""
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        """The inner optimizer's defaults (the same dict)."""
        return self.optimizer.defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer (checked by it) and slow copies of its parameters."""
        self.optimizer.add_param_group(param_group)
        added = [p.data for p in self.optimizer.param_groups[-1]["params"]]
        at = self._num_params
        self._fast[at:at] = added
        self.slow[at:at] = [a.copy() for a in added]
        self._num_params += len(added)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The inner optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the inner optimizer; every k-th one is followed by :meth:`sync`. Returns the closure's loss."""
        loss = self.optimizer.step(closure)
        self.step_count += 1
        if self.step_count % self.k == 0:
            self.sync()
        return loss

    def sync(self, alpha: float | None = None) -> None:
        r"""slow += alpha * (fast - slow); fast = slow, in place (``alpha`` defaults to ``self.alpha``; 0 only copies
        the slow weights into the model)."""
        a = self.alpha if alpha is None else check_float("Lookahead.sync", "alpha", alpha, low=0.0, high=1.0)
        for fast, slow in zip(self._fast, self.slow, strict=True):
            if fast.shape != slow.shape:
                raise RuntimeError(
                    f"Lookahead.sync: an array changed shape from {slow.shape} to {fast.shape} after wrapping"
                )
            slow += get_array_module(slow).asarray(a * (fast - slow), dtype=slow.dtype)
            fast[...] = slow

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state, the slow copies, ``k``, ``alpha`` and ``step_count``."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "slow": [a.copy() for a in self.slow],
            "k": self.k,
            "alpha": self.alpha,
            "step_count": self.step_count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the slow copies must match the wrapped arrays' shapes)."""
        slow = list(state_dict["slow"])
        if len(slow) != len(self.slow) or any(a.shape != b.shape for a, b in zip(slow, self.slow, strict=True)):
            raise ValueError(
                f"Lookahead.load_state_dict: expected {len(self.slow)} slow arrays of shapes "
                f"{[tuple(a.shape) for a in self.slow]}, got {[tuple(a.shape) for a in slow]}"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for mine, saved in zip(self.slow, slow, strict=True):
            mine[...] = saved
        self.k = check_int("Lookahead", "k", state_dict["k"], minimum=1)
        self.alpha = check_float("Lookahead", "alpha", state_dict["alpha"], low=0.0, high=1.0)
        self.step_count = check_int("Lookahead", "step_count", state_dict["step_count"], minimum=0)

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, step_count={self.step_count}, optimizer={self.optimizer!r})"
