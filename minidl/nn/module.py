"""``Module``: the class every layer and model is built from (its arrays are ``Parameter`` objects).

minidl has no autograd tape. A module's ``forward(x)`` computes its output through its functional pair and keeps
what its ``backward`` will need with ``self.save_for_backward(...)``; ``backward(dout)`` takes it back with
``self.pop_saved()``, *accumulates* the gradient of every parameter into ``param.grad`` (as PyTorch does: call
``zero_grad()`` between steps) and returns the gradient with respect to the input. Containers (``Sequential``,
``Residual``, ...) chain those calls in reverse order.

**A module may run several times in one forward pass** (torchvision's ResNet block applies one ``relu`` twice): each
call saves its own values, and each ``backward`` takes back the most recent ones (last in, first out), which is the
order a backward pass visits the calls in. A new forward pass (the next outermost ``model(x)``) starts afresh, so
values a skipped backward left behind never pile up. Under ``minidl.no_grad()`` nothing is saved.

**Errors name the layer.** A functional pair reports bad input under its own name (``conv2d_forward: ...``); when a
module called it, ``module(x)`` reports the same message under the module's name (``Conv2d(3, 8,
kernel_size=(3, 3)): ...``), so the check itself runs once. The containers' ``backward`` does the same for their
children's backward (``ReLU.backward: the gradient has shape ...``). The bookkeeping is in ``_calls.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from minidl import anomaly_mode
from minidl import backend as _backend
from minidl.grad_mode import is_grad_enabled
from minidl.nn import hooks as _hooks
from minidl.nn._calls import _pass_state, _under_module_name
from minidl.nn.parameter import Parameter

_HOOK_KINDS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` could not match, as in PyTorch."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of every layer and model.

    Subclasses set parameters and submodules as attributes in ``__init__`` (they are registered automatically),
    register non-trainable state with ``register_buffer``, and implement ``forward`` and ``backward``.

    Examples:
        >>> from minidl import nn
        >>> class Scale(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.weight = nn.Parameter(np.full((1,), 2.0, np.float32))
        ...     def forward(self, x):
        ...         self.save_for_backward(x)
        ...         return x * self.weight.data
        ...     def backward(self, dout):
        ...         (x,) = self.pop_saved()
        ...         self.weight.accumulate_grad(np.array([(dout * x).sum()], np.float32))
        ...         return dout * self.weight.data
        >>> m = Scale(); y = m(np.ones(3, np.float32)); m.backward(np.ones(3, np.float32))
        array([2., 2., 2.], dtype=float32)
        >>> m.weight.grad
        array([3.], dtype=float32)
    """

    training: bool
    #: children that run back to back in ``forward``, by name, for :func:`minidl.nn.fuse` to find patterns in
    #: (a Sequential's are its consecutive children), e.g. ``(("conv1", "bn1", "relu1"), ("conv2", "bn2"))``; a
    #: ResNet block's ``("conv2", "bn2", "add", "relu2")`` lets the block hand its shortcut to ``conv2`` in inference.
    #: Each child named here must run once per forward, at that place (fusion turns a ReLU into an Identity).
    fusion_groups: tuple[tuple[str, ...], ...] = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_saved", [])  # what forward saved for backward, one entry per call (a stack)
        object.__setattr__(self, "_saved_pass", -1)  # the forward pass those entries belong to
        object.__setattr__(self, "_dropped", 0)  # entries the current pass dropped when it began (for the error)
        for kind in _HOOK_KINDS:  # hooks by handle id, in call order (minidl.nn.hooks)
            object.__setattr__(self, kind, OrderedDict())

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call (call super().__init__())")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            self.__dict__.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} (use Parameter or None)")
            params[name] = None
        elif name in buffers:
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} (use Module or None)")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for registered parameters, buffers and submodules.
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a None placeholder, e.g. ``bias=False``) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}) expects a Parameter or None, got {type(param).__name__}")
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add state that is saved in ``state_dict`` but not trained (e.g. BatchNorm's ``running_mean``)."""
        if tensor is not None and not hasattr(tensor, "shape"):
            raise TypeError(f"register_buffer({name!r}) expects an array or None, got {type(tensor).__name__}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name`` (what attribute assignment does, for names that aren't identifiers)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}) expects a Module or None, got {type(module).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"add_module: a module name must be a str, got {type(name).__name__}")
        if name == "" or "." in name:  # (state_dict keys join names with dots)
            raise KeyError(f"add_module: a module name must be non-empty and without '.', got {name!r}")
        if name not in self._modules and name not in self._parameters and name not in self._buffers:
            if hasattr(type(self), name) or name in self.__dict__:
                raise KeyError(f"add_module: {type(self).__name__} already has an attribute {name!r}")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ forward / backward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def backward(self, dout: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dout)")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` (between the forward hooks, if any are registered). The outermost call starts a new
        forward pass (see :meth:`save_for_backward`), and an error a functional pair raised under its own name is
        raised under this module's name. Under :func:`minidl.detect_anomaly` the output is checked for nan and
        inf."""
        state = _pass_state
        if not state.calls:
            state.number += 1
        state.calls.append(self)
        try:
            if self._forward_pre_hooks or self._forward_hooks:
                out = _hooks.forward_with_hooks(self, args, kwargs)
            else:
                out = self.forward(*args, **kwargs)
            if anomaly_mode._enabled:  # minidl.detect_anomaly(): the first module whose output is nan or inf raises
                anomaly_mode._check_forward(self, out, args)
            return out
        except (TypeError, ValueError, RuntimeError, IndexError) as err:
            renamed = _under_module_name(err, self)
            if renamed is None:
                raise
            raise renamed.with_traceback(err.__traceback__) from None
        finally:
            state.calls.pop()

    def __getstate__(self) -> dict[str, Any]:
        """For copy and pickle: everything but the values saved for a pending backward (they belong to one call),
        and the backward-hook runner, which :meth:`__setstate__` puts back on the copy."""
        state = self.__dict__.copy()
        state["_saved"] = []
        if getattr(state.get("backward"), "__func__", None) is _hooks.backward_with_hooks:
            del state["backward"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._backward_pre_hooks or self._backward_hooks:
            _hooks.install_backward_hooks(self)

    # ------------------------------------------------------------------ hooks (minidl.nn.hooks)
    def register_forward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> _hooks.RemovableHandle:
        """Call ``hook(module, args)`` before each ``forward`` (``hook(module, args, kwargs)`` with
        ``with_kwargs=True``); a non-None result replaces the arguments. ``prepend``: run it before the hooks
        already registered. Returns a handle whose ``remove()`` takes the hook off. See :mod:`minidl.nn.hooks`."""
        return _hooks.add_hook(self, "_forward_pre_hooks", hook, prepend, with_kwargs=with_kwargs)

    def register_forward_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False, always_call: bool = False
    ) -> _hooks.RemovableHandle:
        """Call ``hook(module, args, output)`` after each ``forward`` (``hook(module, args, kwargs, output)`` with
        ``with_kwargs=True``); a non-None result replaces the output. ``always_call``: call it (with output None)
        also when ``forward`` raised. See :mod:`minidl.nn.hooks`.

        Examples:
            >>> from minidl import nn
            >>> relu = nn.ReLU()
            >>> h = relu.register_forward_hook(lambda m, args, out: print("dead:", float((out == 0).mean())))
            >>> _ = relu(np.array([-1.0, 2.0, -3.0, 4.0]))
            dead: 0.5
            >>> h.remove()
        """
        return _hooks.add_hook(self, "_forward_hooks", hook, prepend, with_kwargs=with_kwargs, always_call=always_call)

    def register_full_backward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False
    ) -> _hooks.RemovableHandle:
        """Call ``hook(module, grad_output)`` each time this module's ``backward`` is about to run; a non-None
        result (a tuple as long as ``grad_output``) replaces the gradient it receives. See :mod:`minidl.nn.hooks`."""
        return _hooks.add_hook(self, "_backward_pre_hooks", hook, prepend)

    def register_full_backward_hook(self, hook: Callable[..., Any], *, prepend: bool = False) -> _hooks.RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` each time this module's ``backward`` has run:
        ``grad_output`` holds the gradient it received (``dout``), ``grad_input`` the gradient it returns, each as a
        tuple; a non-None result (a tuple as long as ``grad_input``) replaces what ``backward`` returns. Its
        parameters' ``.grad`` are filled by then. See :mod:`minidl.nn.hooks`.

        Examples:
            >>> from minidl import nn
            >>> lin = nn.Linear(3, 2)
            >>> h = lin.register_full_backward_hook(lambda m, gin, gout: print(gout[0].shape, "->", gin[0].shape))
            >>> _ = lin(np.ones((4, 3), np.float32)); _ = lin.backward(np.ones((4, 2), np.float32))
            (4, 2) -> (4, 3)
            >>> h.remove()
        """
        return _hooks.add_hook(self, "_backward_hooks", hook, prepend)

    def _where(self) -> str:
        """How errors name this module: its class and its hyperparameters (e.g. ``"Conv2d(3, 8, kernel_size=(3,
        3))"``); the default is the first line of its repr."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` for the ``backward`` of this call (nothing is kept when gradients are disabled).

        Each call of a module saves its own values, and :meth:`pop_saved` hands them back last in, first out, so a
        module may run several times in one forward pass. Values saved in an earlier forward pass (a backward that
        never came) are dropped when the next pass saves, so they never pile up.

        Examples:
            >>> from minidl import nn
            >>> class Square(nn.Module):
            ...     def forward(self, x):
            ...         self.save_for_backward(x)
            ...         return x * x
            ...     def backward(self, dout):
            ...         (x,) = self.pop_saved()
            ...         return 2 * x * dout
            >>> sq = Square()
            >>> twice = nn.Sequential(sq, sq)  # the same module twice in one pass: x = 3, then x = 9
            >>> twice(np.array([3.0]))
            array([81.])
            >>> twice.backward(np.array([1.0]))  # d(x^4)/dx = 4 x^3; each backward took its own call's x
            array([108.])
        """
        if not is_grad_enabled():
            return
        state = _pass_state
        if self._saved_pass != state.number or not state.calls:  # a new forward pass (or a bare forward() call)
            object.__setattr__(self, "_dropped", len(self._saved))
            self._saved.clear()
            object.__setattr__(self, "_saved_pass", state.number)
        self._saved.append(values)

    def pop_saved(self) -> tuple[Any, ...]:
        """The values the most recent :meth:`save_for_backward` kept, as a tuple; a clear error if there are none.

        Call it once in each ``backward``: it frees them (the earlier call's values, if the module ran twice, are
        next).
        """
        if not self._saved:
            if self._dropped:
                raise RuntimeError(
                    f"{type(self).__name__}.backward() has nothing left to take back: the module ran again in a new "
                    f"forward pass, which dropped the values of {self._dropped} earlier call(s). A pass is one "
                    "outermost module call: to use a module several times before the backward, call it inside one "
                    "module's forward and run that as model(x) (not model.forward(x), nor layer by layer at the top)"
                )
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called without a matching forward(): call forward first, "
                "with gradients enabled (not under minidl.no_grad()), and call backward once per forward"
            )
        return self._saved.pop()

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo: set[int] | None = None, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every module below it, with dotted names, each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs, e.g. ``("features.0.weight", p)``; a shared parameter appears once."""
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for module_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_prefix}.{name}" if module_prefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Any]]:
        modules = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for module_prefix, module in modules:
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Any]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> Module:
        """Set training mode (batch statistics in BatchNorm, dropout active) here and below; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: running statistics in BatchNorm, dropout off. Same as ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradient of every parameter (to None by default, as in PyTorch 2)."""
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter here and below; returns self."""
        if not isinstance(requires_grad, bool):  # bool("no") is True: a str would silently unfreeze
            raise TypeError(
                f"{type(self).__name__}.requires_grad_(requires_grad) expects a bool, "
                f"got {requires_grad!r} ({type(requires_grad).__name__})"
            )
        for p in self.parameters():
            p.requires_grad = requires_grad
            if not requires_grad:
                p.grad = None
        return self

    # ------------------------------------------------------------------ state
    def _state_entries(self, prefix: str = "") -> Iterator[tuple[str, Module, str, str]]:
        """(key, owner module, attribute name, 'param' | 'buffer') in PyTorch's state_dict order."""
        for module_prefix, module in self.named_modules(prefix=prefix):
            pre = f"{module_prefix}." if module_prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield pre + name, module, name, "param"
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    yield pre + name, module, name, "buffer"

    def state_dict(self) -> OrderedDict[str, Any]:
        """Every parameter and persistent buffer by dotted name (PyTorch's keys, e.g. ``"0.running_mean"``).

        The values are the live arrays (as PyTorch returns tensors sharing storage): copy them if you want a
        snapshot that later training does not change, e.g. ``{k: v.copy() for k, v in m.state_dict().items()}``.
        """
        out: OrderedDict[str, Any] = OrderedDict()
        for key, module, name, kind in self._state_entries():
            out[key] = module._parameters[name].data if kind == "param" else module._buffers[name]
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's parameters and buffers, in place (dtype and backend are kept).

        A value of another real dtype (bool, int or float) is cast to the entry's dtype, as PyTorch's ``copy_`` does:
        float64 values loaded into a float32 model are rounded to float32. Complex, string and object values are
        refused (a cast would drop the imaginary part, or fail halfway).

        Raises:
            RuntimeError: on missing or unexpected keys (when ``strict``) or any shape or dtype mismatch (always);
                nothing is copied unless every entry can be.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict expects a mapping of name -> array, got {type(state_dict).__name__}")
        entries = {key: (module, name, kind) for key, module, name, kind in self._state_entries()}
        missing = [k for k in entries if k not in state_dict]
        unexpected = [k for k in state_dict if k not in entries]
        problems = []
        if strict and missing:
            problems.append("missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected key(s): " + ", ".join(unexpected))
        plan = []
        for key, (module, name, kind) in entries.items():
            if key not in state_dict:
                continue
            target = module._parameters[name].data if kind == "param" else module._buffers[name]
            value = state_dict[key]
            value_dtype = np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype
            if value_dtype.kind not in "biuf":
                problems.append(
                    f"dtype mismatch for {key}: the file has dtype {value_dtype}, the model expects {target.dtype} "
                    "(load_state_dict casts bool, int and float values, never complex, string or object ones)"
                )
                continue
            value_shape = tuple(np.shape(value)) if not hasattr(value, "shape") else tuple(value.shape)
            if value_shape != tuple(target.shape):
                problems.append(
                    f"size mismatch for {key}: the file has shape {value_shape}, "
                    f"the model expects {tuple(target.shape)}"
                )
                continue
            plan.append((target, value))
        if problems:
            raise RuntimeError(f"error(s) loading state_dict into {type(self).__name__}:\n  " + "\n  ".join(problems))
        for target, value in plan:
            xp = _backend.get_array_module(target)
            target[...] = _backend.to_numpy(value) if xp is np else xp.asarray(value)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ moving and casting
    def _apply(self, fn: Callable[[Any], Any], floating_only: bool = False) -> Module:
        def convert(a: Any) -> Any:
            if floating_only and not np.issubdtype(np.dtype(a.dtype), np.floating):
                return a
            return fn(a)

        for module in self.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data = convert(p.data)
                    if p.grad is not None:
                        p.grad = convert(p.grad)
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = convert(b)
            module._saved.clear()
            object.__setattr__(module, "_dropped", 0)
        return self

    def to(self, target: Any) -> Module:
        """Move to a backend (``"numpy"``, ``"numba"``, ``"cupy"``/``"cuda"``, ``"cpu"``) or cast to a float dtype.

        Examples:
            >>> from minidl import nn
            >>> nn.Linear(2, 3).to(np.float64).weight.dtype
            dtype('float64')
        """
        if isinstance(target, str):
            try:
                be = _backend.get_backend(target)
            except ValueError:
                be = None
            if be is not None:
                return self._apply(be.asarray)
        try:
            dtype = np.dtype(target)
        except TypeError:
            raise TypeError(f"to() expects a backend name or a float dtype, got {target!r}") from None
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"to() can only cast to a floating dtype, got {dtype}")
        return self._apply(lambda a: a.astype(dtype, copy=False), floating_only=True)

    def float(self) -> Module:
        """Cast floating parameters and buffers to float32."""
        return self.to(np.float32)

    def double(self) -> Module:
        """Cast floating parameters and buffers to float64 (for gradient checks)."""
        return self.to(np.float64)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (its hyperparameters)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        main = f"{type(self).__name__}({self.extra_repr()}"
        if lines:
            main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"
