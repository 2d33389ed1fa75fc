r"""Optimizers and learning-rate schedules, with PyTorch's names, defaults and update rules (``torch.optim``).

An optimizer updates, in place, every parameter whose gradient backward filled; the usual loop is

.. code-block:: python

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for epoch in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            opt.step()
        sched.step()

Every optimizer accepts param groups (dicts with their own hyperparameters), has ``state_dict()`` /
``load_state_dict()`` in PyTorch's layout, and works on NumPy or CuPy parameters alike. :class:`Lookahead` wraps
any of them and averages the weights every k steps.

Examples:
    >>> import numpy as np
    >>> from minidl import nn, optim
    >>> w = nn.Parameter(np.array([3.0]))
    >>> opt = optim.SGD([w], lr=0.25)
    >>> for _ in range(3):
    ...     opt.zero_grad(); w.grad = 2 * w.data; _ = opt.step()   # minimize w^2: w halves each step
    >>> w.data
    array([0.375])
"""

from minidl.optim import lr_scheduler
from minidl.optim.adagrad import Adadelta, Adagrad
from minidl.optim.adam import Adam, Adamax, AdamW, NAdam
from minidl.optim.lookahead import Lookahead
from minidl.optim.optimizer import Optimizer
from minidl.optim.rmsprop import RMSprop
from minidl.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lookahead",
    "NAdam",
    "Optimizer",
    "RMSprop",
    "lr_scheduler",
]
