"""What ``Module.__call__`` keeps track of: the module calls running now (one forward pass is one outermost call),
and how an error a functional pair raised is reported under the module's name."""

from __future__ import annotations

import re
import threading
from typing import Any

Module = Any  # a minidl.nn.Module (not imported: module.py imports this file)


class _PassState(threading.local):
    """The module calls running now, outermost first (empty outside any), and the number of the current outermost
    call (one forward pass)."""

    number = 0

    def __init__(self) -> None:
        self.calls: list[Module] = []


_pass_state = _PassState()


def _calling_module(module: Module) -> Module | None:
    """The module whose forward called ``module`` (now running), or None: ``module`` was called at the top level, or
    its ``forward`` was called directly. (What :class:`~minidl.nn.fusion.ConvBn2d` checks before it folds.)"""
    calls = _pass_state.calls
    if len(calls) < 2 or calls[-1] is not module:
        return None
    return calls[-2]


def _running_module() -> Module | None:
    """The module whose forward runs now (the innermost call), or None outside any. (What a ResNet block asks
    :class:`~minidl.nn.fusion.ConvBn2d` about before it hands it the shortcut: see ``joins_residual``.)"""
    calls = _pass_state.calls
    return calls[-1] if calls else None


# a functional pair's errors start with its name and a colon, e.g. "conv2d_forward: expected ..."
_PAIR_PREFIX = re.compile(r"^[a-z][a-z0-9_]*_(forward|backward): ")


def _named_backward(module: Module, dout: Any) -> Any:
    """``module.backward(dout)``, with an error a pair raises under the module's name (what ``__call__`` does for the
    forward); the containers call their children's backward through it."""
    try:
        return module.backward(dout)
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        renamed = _under_module_name(err, module, ".backward")
        if renamed is None:
            raise
        raise renamed.with_traceback(err.__traceback__) from None


def _under_module_name(err: Exception, module: Module, suffix: str = "") -> Exception | None:
    """``err`` with the pair's name in front replaced by the module's, plus ``suffix`` (e.g. ``".backward"``);
    None when the message does not start with a pair's name."""
    renamable = (TypeError, ValueError, RuntimeError, IndexError)
    if type(err) not in renamable or len(err.args) != 1 or not isinstance(err.args[0], str):
        return None
    message = err.args[0]
    match = _PAIR_PREFIX.match(message)
    if match is None:
        return None
    return type(err)(f"{module._where()}{suffix}: {message[match.end() :]}")
