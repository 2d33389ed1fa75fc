r"""Module hooks: functions that run when a module's ``forward`` or ``backward`` runs, with PyTorch's names and rules.

A hook lets a tool watch (or change) what flows through a module without editing the module: the training monitors
record activation statistics with forward hooks, Grad-CAM keeps a convolution's output (forward hook) and the
gradient that reaches it (backward hook). Four kinds, registered on any :class:`~minidl.nn.Module`:

=====================================  ==========================================  ================================
registered with                        called as                                   may return
=====================================  ==========================================  ================================
``register_forward_pre_hook``          ``hook(module, args)``                      new ``args`` (or None)
``register_forward_hook``              ``hook(module, args, output)``              new ``output`` (or None)
``register_full_backward_pre_hook``    ``hook(module, grad_output)``               new ``grad_output`` (or None)
``register_full_backward_hook``        ``hook(module, grad_input, grad_output)``   new ``grad_input`` (or None)
=====================================  ==========================================  ================================

``args`` is the tuple of positional inputs of the call (``with_kwargs=True`` adds the keyword arguments,
``hook(module, args, kwargs)`` and ``hook(module, args, kwargs, output)``). ``grad_output`` is the tuple of
gradients with respect to the module's outputs, the ``dout`` its ``backward`` receives (one entry for a
single-output module); ``grad_input`` is the tuple of gradients with respect to its inputs, what ``backward``
returns. Each registration returns a :class:`RemovableHandle`; ``handle.remove()`` takes the hook off.

**When they run.** Forward hooks run inside ``module(x)`` (``Module.__call__``), before and after ``forward``; a
call of ``module.forward(x)`` bypasses them, as in PyTorch. Backward hooks run whenever ``module.backward(dout)``
runs, whoever calls it (a container, a ResNet block, your training loop): registering the first one puts
:func:`backward_with_hooks` on the module instance in place of its class's ``backward``, and that function calls
the class's ``backward`` between the pre-hooks and the hooks (removing the last one takes it off again). On a
nested model the order is PyTorch's: forward, the outer pre-hook, then each child's hooks, then the outer hook;
backward, the outer pre-hook, each child's hooks in reverse order, then the outer hook (the gradient with respect to
the container's input is known last).

**No tape.** minidl has no autograd tape, so what a hook computes is not differentiated: a pre-hook that replaces
the inputs changes what ``forward`` sees, and ``backward`` returns the gradient with respect to those replaced
inputs (PyTorch would also differentiate the hook's own arithmetic). Change gradients with the backward hooks.

**Fusion.** :func:`minidl.nn.fuse` leaves a module that has hooks as it is (a fused module would not call them),
so a hook sees exactly the module it was registered on; the rest of the model is still fused.

Examples:
    >>> import numpy as np
    >>> from minidl import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> seen = []
    >>> h1 = net[1].register_forward_hook(lambda m, args, out: seen.append(("forward", out.shape)))
    >>> h2 = net[1].register_full_backward_hook(lambda m, gin, gout: seen.append(("backward", gin[0].shape)))
    >>> y = net(np.ones((5, 3), np.float32))
    >>> _ = net.backward(np.ones((5, 2), np.float32))
    >>> seen
    [('forward', (5, 4)), ('backward', (5, 4))]
    >>> h1.remove(); h2.remove()
    >>> _ = net(np.ones((5, 3), np.float32)); len(seen)
    2
"""

from __future__ import annotations

import inspect
import itertools
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["RemovableHandle", "HookEntry", "has_hooks", "forward_with_hooks", "backward_with_hooks"]

_next_id = itertools.count()


class HookEntry(NamedTuple):
    """One registered hook: the function and how to call it."""

    fn: Callable[..., Any]
    with_kwargs: bool = False
    always_call: bool = False


class RemovableHandle:
    """What ``register_*_hook`` returns: ``remove()`` takes the hook off (again: nothing happens). Also a context
    manager: ``with module.register_forward_hook(h): ...`` removes the hook on leaving the block."""

    def __init__(self, hooks: OrderedDict[int, HookEntry], module: Any = None) -> None:
        self.id = next(_next_id)
        self._hooks = hooks
        self._module = None if module is None else weakref.ref(module)  # a backward hook's module

    def remove(self) -> None:
        self._hooks.pop(self.id, None)
        module = None if self._module is None else self._module()
        if module is not None and not (module._backward_pre_hooks or module._backward_hooks):
            uninstall_backward_hooks(module)  # its last backward hook: the class's backward runs directly again

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"RemovableHandle(id={self.id}, active={self.id in self._hooks})"


def _check_flag(where: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a bool, got {value!r} ({type(value).__name__})")


_REGISTER = {
    "_forward_pre_hooks": "register_forward_pre_hook",
    "_forward_hooks": "register_forward_hook",
    "_backward_pre_hooks": "register_full_backward_pre_hook",
    "_backward_hooks": "register_full_backward_hook",
}


def add_hook(module: Any, kind: str, hook: Any, prepend: bool, **flags: bool) -> RemovableHandle:
    """Register ``hook`` in ``module``'s ``kind`` dict (``"_forward_hooks"``, ...), first when ``prepend``."""
    where = f"{type(module).__name__}.{_REGISTER[kind]}"
    if not callable(hook):
        raise TypeError(f"{where}: expected a callable hook, got {type(hook).__name__} {hook!r}")
    for name, value in {"prepend": prepend, **flags}.items():
        _check_flag(where, name, value)
    hooks: OrderedDict[int, HookEntry] = module.__dict__[kind]
    handle = RemovableHandle(hooks, module if kind.startswith("_backward") else None)
    hooks[handle.id] = HookEntry(hook, **flags)
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    if kind.startswith("_backward") and "backward" not in module.__dict__:
        install_backward_hooks(module)
    return handle


def install_backward_hooks(module: Any) -> None:
    """Put :func:`backward_with_hooks` on the instance, in front of its class's ``backward``."""
    object.__setattr__(module, "backward", types.MethodType(backward_with_hooks, module))


def uninstall_backward_hooks(module: Any) -> None:
    """Take :func:`backward_with_hooks` off the instance (when it is there)."""
    if getattr(module.__dict__.get("backward"), "__func__", None) is backward_with_hooks:
        del module.__dict__["backward"]


def has_hooks(module: Any) -> bool:
    """Whether any hook is registered on ``module`` (then :func:`minidl.nn.fuse` leaves it alone)."""
    d = module.__dict__
    return bool(d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_pre_hooks"] or d["_backward_hooks"])


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def forward_with_hooks(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``module.forward(*args, **kwargs)`` between its forward pre-hooks and its forward hooks (PyTorch's rules:
    a pre-hook's non-None result replaces the arguments, a hook's replaces the output)."""
    for entry in list(module._forward_pre_hooks.values()):
        if entry.with_kwargs:
            result = entry.fn(module, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise TypeError(
                        f"forward pre-hook {entry.fn!r} of {module._where()} (with_kwargs=True) must return None or "
                        f"a tuple (args, kwargs), got {type(result).__name__}"
                    )
                args, kwargs = _as_tuple(result[0]), result[1]
        else:
            result = entry.fn(module, args)
            if result is not None:
                args = _as_tuple(result)
    try:
        out = module.forward(*args, **kwargs)
    except Exception:
        for entry in list(module._forward_hooks.values()):
            if entry.always_call:
                entry.fn(module, args, kwargs, None) if entry.with_kwargs else entry.fn(module, args, None)
        raise
    for entry in list(module._forward_hooks.values()):
        result = entry.fn(module, args, kwargs, out) if entry.with_kwargs else entry.fn(module, args, out)
        if result is not None:
            out = result
    return out


def backward_with_hooks(module: Any, dout: Any, *, dx_add: Any = None) -> Any:
    """The class's ``backward`` between the module's backward pre-hooks and backward hooks.

    ``grad_output`` is ``dout`` as a tuple, ``grad_input`` what ``backward`` returns as a tuple; a hook that returns
    a tuple of the same length replaces them, and the module's caller receives the result in the shape ``backward``
    gave it (a single array stays a single array). ``dx_add`` (:meth:`~minidl.nn.Conv2d.backward`'s: another
    gradient of the input, from the other layers it fed) is added after the hooks, which see the module's own
    gradient, as PyTorch's hooks see a layer's own; a module whose ``backward`` takes no ``dx_add``, or a ``dx_add``
    that is no array, raises before anything runs (its shape after, against the gradient's).
    """
    if dx_add is not None:
        if "dx_add" not in inspect.signature(type(module).backward).parameters:  # as the class's backward would say
            raise TypeError(f"{type(module).__name__}.backward() got an unexpected keyword argument 'dx_add'")
        if not hasattr(dx_add, "shape") or not hasattr(dx_add, "dtype"):
            raise TypeError(f"{module._where()}.backward: dx_add must be an array, got {type(dx_add).__name__}")
    grad_output = _as_tuple(dout)
    for entry in list(module._backward_pre_hooks.values()):
        result = entry.fn(module, grad_output)
        if result is not None:
            grad_output = _replacement(module, "backward pre-hook", entry.fn, result, grad_output, "grad_output")
    dout = grad_output if isinstance(dout, tuple) else grad_output[0]
    grad = type(module).backward(module, dout)
    grad_input = _as_tuple(grad)
    for entry in list(module._backward_hooks.values()):
        result = entry.fn(module, grad_input, grad_output)
        if result is not None:
            grad_input = _replacement(module, "backward hook", entry.fn, result, grad_input, "grad_input")
    result = grad_input if isinstance(grad, tuple) else grad_input[0]
    if dx_add is not None:
        from minidl.nn._checks import check_dx_add  # (both import modules that import this one)
        from minidl.nn.dispatch import F

        check_dx_add(f"{module._where()}.backward", dx_add, result.shape, result.dtype)
        result = F.add_forward(result, dx_add)[0]
    return result


def _replacement(module: Any, kind: str, fn: Any, result: Any, given: tuple[Any, ...], what: str) -> tuple[Any, ...]:
    """A hook's result as the new ``what``: as many entries as ``given``, each of the shape of the one it replaces
    (as PyTorch, which refuses a hook that changes a gradient's size)."""
    result = _as_tuple(result)
    if len(result) != len(given):
        raise ValueError(
            f"{kind} {fn!r} of {module._where()} returned {len(result)} gradient(s), expected {len(given)} (one per "
            f"entry of {what}) or None"
        )
    for i, (new, old) in enumerate(zip(result, given, strict=True)):
        old_shape = getattr(old, "shape", None)
        if old_shape is not None and tuple(getattr(new, "shape", ())) != tuple(old_shape):
            raise ValueError(
                f"{kind} {fn!r} of {module._where()} returned {what}[{i}] of shape "
                f"{tuple(getattr(new, 'shape', ()))}, expected the shape of the gradient it replaces, "
                f"{tuple(old_shape)}"
            )
    return result
