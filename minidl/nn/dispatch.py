r"""How a layer reaches its math, and the one place where a fast backend may replace that math.

**1. Modules compute through their public pairs.** Every op is a pair in :mod:`minidl.nn.functional`,
``F.<op>_forward(x, ...) -> (out, cache)`` and ``F.<op>_backward(dout, cache) -> gradients``, written in plain NumPy
next to its math. A Module calls them the way ``torch.nn.Conv2d.forward`` calls ``F.conv2d``::

    from minidl.nn.dispatch import F

    class ReLU(Module):
        def forward(self, x):
            out, cache = F.relu_forward(x)
            ...

``F`` here is :mod:`minidl.nn.functional` itself, read when the call happens: ``functional.py`` hands itself to this
file when it is imported (importing it here would make every layer file and ``functional.py`` import each other).
So replacing a pair replaces what the layers compute (``minidl.nn.functional.relu_forward = ...`` or, the same,
through ``F``)::

    F.relu_forward = my_relu_forward      # every ReLU now runs my_relu_forward

**2. One seam for fast kernels.** A pair that a backend accelerates is marked on both halves with ``@kernel("<op>")``.
Each backend lists the pairs it replaces in one table, ``backend.kernels`` (``minidl/backend/numba_backend.py`` has
the Numba backend's; the NumPy backend's is empty: it is the reference mode). When a marked pair is called:

* on a backend without a kernel for it, the reference body runs: exactly the code you read;
* on a backend with one, the kernel runs instead, for the forward *and* the backward (the cache it returns is wrapped
  in a :class:`KernelCache`, which sends the backward back to the same kernel);
* but only while both halves in :mod:`minidl.nn.functional` are still the reference pair, and so are the pairs its
  reference calls (``uses``: ``batch_norm_relu`` is ``batch_norm`` then ``relu``; ``conv2d`` pads with ``pad2d``;
  and through a pair without a kernel, marked with :func:`composes`: ``batch_norm_relu6`` calls ``relu6``, which is
  ``hardtanh(0, 6)``) (:func:`is_reference`): a pair you replaced runs as you wrote it, on every backend, also inside
  the pairs built on it;
* a kernel may decline a case it does not cover (its ``accepts`` returns False: a grouped convolution, an unusual
  dtype); the reference runs then.

Validation runs once per call either way: the reference body starts by calling the op's *setup* (checks and derived
sizes); before a kernel, the seam calls that same setup and hands its result to the kernel, which then only computes.
(A fused pair's reference, ``conv2d_relu`` say, checks its arguments under its own name and then calls the pairs it
is built from, which check them again: twice on the NumPy backend, so that an error names the pair you called.)

``minidl.set_backend("numpy")`` therefore runs every op as the code in the docstrings, and the kernel tests compare
each registered kernel with its reference pair (``tests/backend/test_kernels.py``).

Examples:
    >>> import numpy as np
    >>> from minidl.nn.dispatch import F, declared_ops
    >>> F.relu_forward(np.array([-1.0, 2.0]))[0]
    array([0., 2.])
    >>> "conv2d" in declared_ops()
    True
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, NamedTuple

from minidl.backend import get_backend
from minidl.nn._checks import check_grad_output

__all__ = [
    "F",
    "KernelCache",
    "composes",
    "declared_ops",
    "is_reference",
    "kernel",
    "kernel_for",
    "reference_pair",
    "register_functional",
    "using_reference_pairs",
]


_HALVES = ("_forward", "_backward")
_functional: ModuleType | None = None  # minidl.nn.functional, once it has registered itself
_ORIGINALS: dict[str, Any] = {}  # "<op>_forward" / "<op>_backward" -> the function minidl defines (see is_reference)


def register_functional(module: ModuleType) -> None:
    """Called once by :mod:`minidl.nn.functional` (at its import): the namespace ``F`` reads. Its pairs as they are
    then are the originals :func:`is_reference` compares with."""
    global _functional
    _functional = module
    _ORIGINALS.update({name: getattr(module, name) for name in module.__all__ if name.endswith(_HALVES)})
    _CHAINS.clear()


def _namespace() -> ModuleType:
    if _functional is None:  # (minidl.nn imports minidl.nn.functional before any layer can run)
        raise RuntimeError("minidl.nn.functional has not been imported yet: import minidl.nn first")
    return _functional


class _Functional:
    """:mod:`minidl.nn.functional`, looked up at each attribute read (so at call time); setting or deleting an
    attribute sets or deletes it there."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(_namespace(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_namespace(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(_namespace(), name)

    def __repr__(self) -> str:
        return "<minidl.nn.functional, read at call time>"


#: :mod:`minidl.nn.functional`, read when an attribute is used: ``F.relu_forward(x)`` calls whatever
#: ``minidl.nn.functional.relu_forward`` is at that moment.
F = _Functional()


class KernelCache(NamedTuple):
    """The cache of a pair that ran as a backend's kernel: the backward goes back to that kernel.

    Attributes:
        op: the op's name.
        kernel: the backend's :class:`~minidl.backend.numpy_backend.KernelPair` that ran the forward.
        cache: what its forward returned for its backward (its own layout, not the reference's).
        out_shape, out_dtype: the forward output's shape and dtype (the backward checks ``dout`` against them).

    The reference cache's fields that the kernel's cache keeps under the same names, with the same values (the
    kernel's ``shares``), read through: ``cache.attn_weights`` of the attention kernel, which
    :class:`~minidl.nn.MultiheadAttention` returns as its weights. Any other name raises an AttributeError that says
    why (a field of the kernel's own cache too: its layout is not the reference's).
    """

    op: str
    kernel: Any
    cache: Any
    out_shape: tuple[int, ...]
    out_dtype: Any

    def __repr__(self) -> str:
        return f"KernelCache(op={self.op!r}, out_shape={self.out_shape}, out_dtype={self.out_dtype})"

    def __getattr__(self, name: str) -> Any:  # (only for names a KernelCache does not have)
        if name in getattr(self.kernel, "shares", ()):  # a reference field the kernel's cache keeps, the same values
            return getattr(self.cache, name)
        raise AttributeError(
            f"KernelCache has no attribute {name!r}: the {self.op} pair ran as the backend's kernel, whose cache is "
            f"its own; the reference's cache fields exist where the reference runs (minidl.set_backend('numpy'))"
        )


class _Declared(NamedTuple):
    forward: Callable[..., Any] | None
    backward: Callable[..., Any] | None
    uses: tuple[str, ...] = ()  # the pairs the reference is built from (their kernels stand in for them too)


_DECLARED: dict[str, _Declared] = {}
_COMPOSED: dict[str, tuple[str, ...]] = {}  # pairs without a kernel -> the pairs their reference calls
_CHAINS: dict[str, tuple[tuple[str, Any], ...]] = {}  # op -> what is_reference compares (emptied by each new mark)


def composes(op: str, uses: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark ``<op>_forward``, a pair no backend accelerates, as built from the pairs ``uses`` (what its reference
    calls through ``F``): :func:`is_reference` follows them, so a kernel built on ``op`` steps aside when one of them
    is replaced too (``relu6`` is ``hardtanh(0, 6)``: a student's hardtanh must run inside ``batch_norm_relu6``).
    Returns the function unchanged.

    Examples:
        >>> from minidl.nn.dispatch import F, is_reference
        >>> original = F.hardtanh_forward
        >>> is_reference("relu6"), is_reference("batch_norm_relu6")
        (True, True)
        >>> F.hardtanh_forward = lambda x, lo=-1.0, hi=1.0: original(x, lo, hi)  # a student's hardtanh
        >>> is_reference("relu6"), is_reference("batch_norm_relu6")  # (relu6 is marked @composes(uses=hardtanh))
        (False, False)
        >>> F.hardtanh_forward = original
    """

    def decorate(reference: Callable[..., Any]) -> Callable[..., Any]:
        if reference.__name__ != f"{op}_forward":
            raise ValueError(f"@composes({op!r}) decorates {op}_forward, got {reference.__name__}")
        _COMPOSED[op] = tuple(uses)
        _CHAINS.clear()
        return reference

    return decorate


def declared_ops() -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """Every op a backend may accelerate: name -> (reference forward, reference backward), as marked with
    :func:`kernel` (the undecorated functions, i.e. the code in the docstrings)."""
    return {
        op: (pair.forward.__wrapped__, pair.backward.__wrapped__)  # type: ignore[union-attr]
        for op, pair in sorted(_DECLARED.items())
        if pair.forward is not None and pair.backward is not None
    }


def reference_pair(op: str) -> tuple[Any, Any]:
    """The ``(forward, backward)`` functions minidl defines for ``op``, even while a student's replacement sits in
    :mod:`minidl.nn.functional`: what :mod:`minidl.testing` and the assignment graders compare against.

    Examples:
        >>> import minidl.nn.functional as F
        >>> reference_pair("relu") == (F.relu_forward, F.relu_backward)
        True
    """
    _namespace()  # registers the functional pairs on first use
    try:
        return _ORIGINALS[f"{op}_forward"], _ORIGINALS[f"{op}_backward"]
    except KeyError:
        ops = sorted({name.rsplit("_", 1)[0] for name in _ORIGINALS})
        raise KeyError(f"reference_pair: no functional pair named {op!r}; the pairs are {ops}") from None


@contextlib.contextmanager
def using_reference_pairs() -> Iterator[None]:
    """Inside the block every pair of :mod:`minidl.nn.functional` is minidl's own again; replacements come back after.

    A reference that calls another pair through ``F`` (conv2d calls pad2d) then cannot run a candidate someone
    patched in: :mod:`minidl.testing` computes its expected values this way.

    Examples:
        >>> import minidl.nn.functional as F
        >>> mine = F.relu_forward
        >>> F.relu_forward = lambda x: (x, None)  # a student's replacement
        >>> with using_reference_pairs():
        ...     F.relu_forward is reference_pair("relu")[0]
        True
        >>> F.relu_forward is not mine  # the replacement is back after the block
        True
        >>> F.relu_forward = mine
    """
    functional = _namespace()
    replaced = {n: getattr(functional, n) for n, f in _ORIGINALS.items() if getattr(functional, n, None) is not f}
    for name in replaced:
        setattr(functional, name, _ORIGINALS[name])
    try:
        yield
    finally:
        for name, f in replaced.items():
            setattr(functional, name, f)


def is_reference(op: str) -> bool:
    """Whether both halves of ``op`` in :mod:`minidl.nn.functional` are still the ones minidl defines, and so are
    those of every pair its reference calls (``uses`` of :func:`kernel` or of :func:`composes`, followed down the
    chain): then a kernel, or a fused module's shortcut (:class:`~minidl.nn.fusion.ConvBn2d` folding a BatchNorm),
    computes what the reference would."""
    functional = _namespace()
    for name, original in _reference_halves(op):
        if getattr(functional, name, None) is not original:
            return False
    return True


def _reference_halves(op: str) -> tuple[tuple[str, Any], ...]:
    """``(name, original)`` for both halves of ``op`` and of every pair its reference calls, down the chain (each
    once): what :func:`is_reference` checks, worked out at the first call (a pair runs it at each call) and again
    after :func:`kernel` or :func:`composes` marks another function or :func:`register_functional` runs (each empties
    ``_CHAINS``)."""
    halves = _CHAINS.get(op)
    if halves is None:
        declared = _DECLARED.get(op)
        uses = _COMPOSED.get(op, ()) if declared is None else declared.uses
        own = tuple((op + half, _ORIGINALS.get(op + half)) for half in _HALVES)
        halves = tuple(dict.fromkeys(own + tuple(h for used in uses for h in _reference_halves(used))))
        _CHAINS[op] = halves
    return halves


def kernel_for(op: str) -> Any:
    """The current backend's kernel for ``op``, or None: none registered, or a pair it stands for is no longer the
    reference in :mod:`minidl.nn.functional` (someone replaced a half: then the pairs run as written)."""
    fast = get_backend().kernels.get(op)
    if fast is None or not is_reference(op):
        return None
    return fast


def _check_call(reference: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The TypeError Python gives for calling ``reference(*args, **kwargs)``, if the arguments do not fit it (a
    kernel's own signature would name the kernel's method instead)."""
    try:
        inspect.signature(reference).bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"{reference.__name__}() {err}") from None


def kernel(
    op: str, setup: Callable[..., Any] | None = None, uses: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a reference pair that a backend may replace with a fast kernel (decorate both halves).

    Args:
        op: the op's name; the decorated functions must be ``<op>_forward`` and ``<op>_backward``.
        setup: (forward only) the function the reference forward calls first with the same arguments, which
            validates them and returns what the math needs (sizes, normalized hyperparameters, or nothing). Before
            a kernel the seam calls it and passes its result to the kernel as the first argument.
        uses: (forward only) the other pairs the reference calls through ``F`` (``("batch_norm", "relu")`` for
            ``batch_norm_relu``): the kernel runs only while they are the originals too.

    A kernel is a :class:`~minidl.backend.numpy_backend.KernelPair` of the backend: ``forward(prepared, *args,
    **kwargs) -> (out, cache)`` with the reference's arguments, ``backward(dout, cache, **kwargs)`` with the
    reference backward's, returning what the reference returns.
    """

    def decorate(reference: Callable[..., Any]) -> Callable[..., Any]:
        half = reference.__name__.removeprefix(f"{op}_")
        if half not in ("forward", "backward") or reference.__name__ != f"{op}_{half}":
            raise ValueError(f"@kernel({op!r}) decorates {op}_forward and {op}_backward, got {reference.__name__}")
        declared = _DECLARED.get(op, _Declared(None, None))

        if half == "forward":

            @functools.wraps(reference)
            def forward(*args: Any, **kwargs: Any) -> Any:
                fast = kernel_for(op)
                if fast is None:
                    return reference(*args, **kwargs)  # the reference: the code you read
                try:
                    if fast.accepts is not None and not fast.accepts(*args, **kwargs):
                        return reference(*args, **kwargs)
                    prepared = setup(*args, **kwargs) if setup is not None else None
                    out, cache = fast.forward(prepared, *args, **kwargs)
                except TypeError:
                    _check_call(reference, args, kwargs)  # a wrong call: the reference's own message
                    raise
                return out, KernelCache(op, fast, cache, tuple(out.shape), out.dtype)

            _DECLARED[op] = declared._replace(forward=forward, uses=tuple(uses))
            _CHAINS.clear()
            return forward

        @functools.wraps(reference)
        def backward(dout: Any, cache: Any, **kwargs: Any) -> Any:
            if isinstance(cache, KernelCache):  # the forward ran a kernel: its own backward, on its own cache
                check_grad_output(f"{op}_backward", dout, cache.out_shape, cache.out_dtype)
                try:
                    return cache.kernel.backward(dout, cache.cache, **kwargs)
                except TypeError:
                    _check_call(reference, (dout, cache), kwargs)
                    raise
            return reference(dout, cache, **kwargs)

        _DECLARED[op] = declared._replace(backward=backward)
        return backward

    return decorate
