r"""``Optimizer``: the base class of every optimizer (PyTorch's ``torch.optim.Optimizer`` semantics).

An optimizer holds

* ``param_groups``: a list of dicts, each with its ``"params"`` (a list of :class:`~minidl.nn.Parameter`) and its
  own hyperparameters (``"lr"``, ``"momentum"``, ...). A value missing from a group is taken from ``defaults``, so
  one optimizer can train a pretrained backbone at a tenth of the learning rate of a new head;
* ``state``: per-parameter buffers (momentum, running averages, the step count), allocated on the first step of
  each parameter, on the parameter's own backend (NumPy or CuPy) and in its dtype.

``step()`` updates every parameter whose ``grad`` is not None *in place* (``p.data`` stays the same array object,
so views of it, e.g. a model's ``state_dict()``, stay valid). Frozen parameters (``requires_grad=False``) and
parameters without a gradient are skipped, as in PyTorch.

Writing an optimizer: subclass, pass the hyperparameter defaults to ``super().__init__(params, defaults)``,
check the hyperparameters of a group in ``_check_group`` and implement ``step``:

.. math:: \theta_t = \theta_{t-1} - \gamma\, g_t \qquad \text{(plain gradient descent)}

Examples:
    >>> import numpy as np
    >>> from minidl import nn, optim
    >>> backbone, head = nn.Linear(4, 4), nn.Linear(4, 2)
    >>> opt = optim.SGD([{"params": backbone.parameters(), "lr": 0.01},
    ...                  {"params": head.parameters()}], lr=0.1, momentum=0.9)
    >>> [group["lr"] for group in opt.param_groups]
    [0.01, 0.1]
    >>> sorted(opt.state_dict()["param_groups"][1])
    ['dampening', 'lr', 'maximize', 'momentum', 'nesterov', 'params', 'weight_decay']
"""

from __future__ import annotations

import copy
import functools
import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from minidl import backend as _backend
from minidl.nn._checks import check_float
from minidl.nn.module import Module, Parameter

__all__ = ["Optimizer"]

# Keys of PyTorch's param groups that mean nothing here (implementation switches); dropped when a PyTorch state dict
# is loaded.
_TORCH_ONLY_KEYS = ("foreach", "fused", "differentiable", "capturable")


def _check_flag(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _check_betas(where: str, betas: Any) -> tuple[float, float]:
    """``betas`` as a pair of floats, each in [0, 1)."""
    if hasattr(betas, "tolist"):  # an array read back from a file
        betas = betas.tolist()
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{where}: betas must be a pair of floats (beta1, beta2), got {betas!r}")
    return (
        check_float(where, "betas[0]", betas[0], low=0.0, high=1.0, high_open=True),
        check_float(where, "betas[1]", betas[1], low=0.0, high=1.0, high_open=True),
    )


class Optimizer:
    """Base class of all optimizers: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``.

    Args:
        params: an iterable of :class:`~minidl.nn.Parameter` (e.g. ``model.parameters()``), of ``(name, Parameter)``
            pairs (``model.named_parameters()``), or of dicts, each a parameter group ``{"params": ..., "lr": ...}``
            whose hyperparameters override ``defaults``.
        defaults: the hyperparameters of a group that does not set them.

    Raises:
        TypeError: ``params`` is a single Parameter or Module, or holds something that is not a Parameter.
        ValueError: no parameters, a parameter listed twice, or a hyperparameter out of range.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._check_group(self.defaults, self._where())
        self.state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._opt_called = False  # set by step(); lets a scheduler warn when it steps before the optimizer

        where = self._where()
        if isinstance(params, (Parameter, Module)) or hasattr(params, "shape"):
            hint = "model.parameters()" if isinstance(params, Module) else "[param]"
            raise TypeError(
                f"{where}: params must be an iterable of Parameters or of dicts (param groups), got a "
                f"{type(params).__name__}; pass {hint}"
            )
        if isinstance(params, set):
            raise TypeError(
                f"{where}: parameters must be given in an ordered collection (a list), not a set: a set's order "
                "changes between runs"
            )
        if isinstance(params, dict):
            params = [params]
        groups = list(params)
        if len(groups) == 0:
            raise ValueError(f"{where}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ subclass hooks
    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Wrap each subclass's step() so that the optimizer records that it was called (for LRScheduler's warning).
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_records_call", False):

            @functools.wraps(step)
            def recorded_step(self: Optimizer, *args: Any, **kw: Any) -> Any:
                self._opt_called = True
                return step(self, *args, **kw)

            recorded_step._records_call = True  # type: ignore[attr-defined]
            cls.step = recorded_step  # type: ignore[method-assign]

    def _where(self, index: int | None = None) -> str:
        return type(self).__name__ if index is None else f"{type(self).__name__} (param group {index})"

    def _check_group(self, group: dict[str, Any], where: str) -> None:
        """Validate (and normalize, in place) the hyperparameters of one group; subclasses extend it."""
        if "lr" in group:
            group["lr"] = check_float(where, "lr", group["lr"], low=0.0)
        for name in ("weight_decay", "eps", "momentum"):
            if name in group:
                group[name] = check_float(where, name, group[name], low=0.0)
        if "betas" in group:
            group["betas"] = _check_betas(where, group["betas"])
        for name in ("maximize", "amsgrad", "nesterov", "centered", "decoupled_weight_decay"):
            if name in group:
                group[name] = _check_flag(where, name, group[name])

    # ------------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (e.g. layers unfrozen while fine-tuning).

        Missing hyperparameters are taken from ``defaults``; a parameter may belong to one group only.
        """
        index = len(self.param_groups)
        where = self._where(index)
        if not isinstance(param_group, dict):
            raise TypeError(f"{where}: a param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{where}: a param group needs a 'params' entry, got keys {sorted(param_group)}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                f"{where}: parameters must be given in an ordered collection (a list), not a set: a set's order "
                "changes between runs"
            )
        elif isinstance(params, Module):
            raise TypeError(f"{where}: 'params' is a Module; pass module.parameters()")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        if names:
            if len(names) != len(params):
                raise ValueError(f"{where}: give all parameters with names (name, Parameter) or none of them")
            params = [p[1] for p in params]
            group["param_names"] = names
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{where}: an optimizer can only optimize minidl.nn.Parameter objects, but params[{i}] is a "
                    f"{type(p).__name__} (wrap an array with nn.Parameter(array))"
                )
            if not np.issubdtype(np.dtype(p.dtype), np.floating):
                raise TypeError(f"{where}: params[{i}] has dtype {p.dtype}; only floating-point parameters train")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{where}: a parameter appears more than once in the group")
        if len(params) == 0:
            raise ValueError(f"{where}: the param group has no parameters")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_group(group, where)
        for other in self.param_groups:
            if ("param_names" in other) != ("param_names" in group):
                raise ValueError(f"{where}: all param groups must be given with names or all without")
        taken = {id(p) for other in self.param_groups for p in other["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(f"{where}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _grads(self, group: dict[str, Any]) -> Iterable[tuple[Parameter, Any]]:
        """``(param, grad)`` for the parameters of ``group`` that have a gradient and are not frozen."""
        for p in group["params"]:
            if p.grad is None or not p.requires_grad:
                continue
            if tuple(p.grad.shape) != tuple(p.data.shape):
                raise ValueError(
                    f"{self._where()}: a gradient of shape {tuple(p.grad.shape)} was set on a parameter of shape "
                    f"{tuple(p.data.shape)}"
                )
            if type(p.grad) is not type(p.data):
                raise RuntimeError(
                    f"{self._where()}: the gradient is a {type(p.grad).__module__}.{type(p.grad).__name__} but the "
                    f"parameter is a {type(p.data).__module__}.{type(p.data).__name__}; keep both on one backend"
                )
            yield p, p.grad

    # ------------------------------------------------------------------ the public API
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient: ``grad = None`` (default), or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the parameters once; returns ``closure()`` (evaluated first) when a closure is given."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def _closure_loss(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        if not callable(closure):
            raise TypeError(f"{self._where()}.step: closure must be callable, got {type(closure).__name__}")
        return closure()

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in PyTorch's layout, with parameters replaced by their index.

        ``{"state": {index: {"step": int, "exp_avg": array, ...}}, "param_groups": [{"lr": ..., "params":
        [indices]}]}``; indices count the parameters in group order. The arrays are the live state buffers (as
        PyTorch returns tensors): ``copy.deepcopy`` the result for a snapshot that later steps do not change.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) in index and s:
                state[index[id(p)]] = dict(s)
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state from :meth:`state_dict` (of this optimizer or of PyTorch's same optimizer).

        The parameter groups must have the same sizes; arrays are copied to each parameter's backend and dtype.
        Nothing changes unless everything can be loaded.
        """
        where = f"{self._where()}.load_state_dict"
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(
                f"{where}: expected a dict with 'state' and 'param_groups', got {type(state_dict).__name__}"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{where}: the state dict has {len(saved_groups)} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{where}: parameter group {i} has {len(saved['params'])} parameters in the state dict but "
                    f"{len(group['params'])} in the optimizer"
                )
        id_map = {}
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            for saved_index, p in zip(saved["params"], group["params"], strict=True):
                id_map[int(saved_index)] = p
        new_state: defaultdict[Parameter, dict[str, Any]] = defaultdict(dict)
        for key, values in state_dict["state"].items():
            if int(key) not in id_map:
                raise ValueError(f"{where}: state entry {key!r} names no parameter of the param groups")
            p = id_map[int(key)]
            new_state[p] = {name: self._cast_state(where, p, name, v) for name, v in values.items()}
        new_groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            new_group = {k: copy.deepcopy(v) for k, v in saved.items() if k not in _TORCH_ONLY_KEYS and k != "params"}
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            self._check_group(new_group, f"{where} (param group {i})")
            new_groups.append(new_group)
        self.state = new_state
        self.param_groups = new_groups

    @staticmethod
    def _cast_state(where: str, p: Parameter, name: str, value: Any) -> Any:
        """A state value on ``p``'s backend: arrays copied in ``p``'s dtype; 0-d values as Python numbers."""
        if hasattr(value, "detach"):  # a torch tensor from a PyTorch state dict
            value = value.detach().cpu().numpy()
        if hasattr(value, "shape") and len(value.shape) > 0:
            if tuple(value.shape) != p.shape:
                raise ValueError(f"{where}: state {name!r} has shape {tuple(value.shape)}, the parameter {p.shape}")
            xp = _backend.get_array_module(p.data)
            host = value if xp is not np else _backend.to_numpy(value)
            return xp.array(host, dtype=p.dtype, copy=True)
        if hasattr(value, "shape") or isinstance(value, numbers.Number):
            number = float(_backend.to_numpy(value)) if hasattr(value, "shape") else value
            if name == "step":
                return int(number)
            return float(number) if not isinstance(number, bool) else number
        return copy.deepcopy(value)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
