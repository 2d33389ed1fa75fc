"""Containers and graph blocks: how layers are wired into a network.

``Sequential`` chains modules; ``ModuleList`` and ``ModuleDict`` hold modules for a forward you write yourself;
``Residual`` and ``Concat`` are the two graph shapes beyond a chain that modern CNNs need (ResNet's
``y = F(x) + x``; Inception/DenseNet's channel concatenation). Each block's backward follows from the chain rule: a
sum passes its gradient unchanged to both terms, a fork *adds* the gradients of its branches, a concatenation hands
each branch its own slice.

Containers only chain their children: nothing is fused or skipped here (see :func:`minidl.nn.fuse` for that), so
after ``y = seq(x)`` each child's own ``backward``, called in reverse order, works as well as ``seq.backward``.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from minidl.backend import get_array_module
from minidl.nn._calls import _named_backward
from minidl.nn._checks import check_grad_output, check_int
from minidl.nn.module import Module

__all__ = [
    "Concat",
    "Identity",
    "ModuleDict",
    "ModuleList",
    "Residual",
    "Sequential",
]


class Identity(Module):
    r"""Returns its input unchanged; backward returns the gradient unchanged.

    .. math:: y = x

    Shape:
        - Input: any.  - Output: the same.
    Backward:
        dx = dout
    Examples:
        >>> import numpy as np
        >>> ident = Identity(54, unused="ignored")  # arguments are accepted and ignored, as in PyTorch
        >>> ident(np.array([1.0, 2.0])), ident.backward(np.array([3.0, 4.0]))
        (array([1., 2.]), array([3., 4.]))
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # accepts and ignores arguments, as PyTorch's does
        super().__init__()

    def forward(self, x: Any) -> Any:
        self.save_for_backward(tuple(x.shape) if hasattr(x, "shape") else None, getattr(x, "dtype", None))
        return x

    def backward(self, dout: Any) -> Any:
        shape, dtype = self.pop_saved()
        if shape is not None:  # (an input that is not an array passes through unchecked, both ways)
            check_grad_output("Identity.backward", dout, shape, dtype)
        return dout


class Sequential(Module):
    r"""Modules applied one after another; backward runs them in reverse.

    .. math:: y = m_L(\cdots m_2(m_1(x)))

    Args:
        \*modules: the layers, or a single ``OrderedDict`` of name -> layer.

    Indexing, slicing (a new Sequential of the same modules), ``len``, iteration, item assignment and deletion,
    ``append``, ``insert`` and ``extend`` work as in PyTorch; keys are renumbered after a deletion or an insertion.

    Shape:
        - Input: what the first module accepts.  - Output: what the last module returns.
    Backward:
        dx = m_1.backward(m_2.backward(... m_L.backward(dout)))  (the chain rule, last module first)

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> y = net(np.zeros((5, 4), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((5, 2), (5, 4))
        >>> [name for name, _ in net.named_parameters()]
        ['0.weight', '0.bias', '2.weight', '2.bias']
        >>> net[2] = nn.Linear(3, 7)  # replace the head, as in model.classifier[1] = nn.Linear(1280, 2)
        >>> net(np.zeros((5, 4), np.float32)).shape
        (5, 7)
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(str(name), _checked_module("Sequential", f"item {name!r}", module))
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), _checked_module("Sequential", f"argument {i}", module))

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dout: Any) -> Any:
        for module in reversed(self._modules.values()):
            dout = _named_backward(module, dout)  # module.backward(dout); errors name the module
        return dout

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end; returns self."""
        self.add_module(str(len(self)), _checked_module("Sequential.append", "the argument", module))
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Append each of ``modules``; returns self."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Put ``module`` before position ``index`` (``len(self)`` appends); later keys shift by one; returns self."""
        n = len(self)
        index = _as_index("Sequential.insert", index)
        if not -n <= index <= n:
            raise IndexError(f"Sequential.insert: index {index} is out of range for {n} modules")
        if index < 0:  # PyTorch's rule: -1 inserts before the last module
            index += n
        modules = list(self._modules.values())
        modules.insert(index, _checked_module("Sequential.insert", "the module", module))
        self._renumber(modules)
        return self

    def _renumber(self, modules: list[Module]) -> None:
        """Register ``modules`` under the keys 0, 1, 2, ... (a numbered Sequential stays numbered)."""
        self._modules.clear()
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[_normalize_index(index, len(items), "Sequential")][1]

    def __setitem__(self, index: int, module: Module) -> None:
        key = list(self._modules)[_normalize_index(index, len(self), "Sequential")]
        self.add_module(key, _checked_module("Sequential", f"the module for index {index}", module))

    def __delitem__(self, index: int | slice) -> None:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            del modules[index]
        else:
            del modules[_normalize_index(index, len(modules), "Sequential")]
        self._renumber(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


def _checked_module(where: str, what: str, module: Any) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"{where}: {what} is a {type(module).__name__}, not a Module")
    return module


class ModuleList(Module):
    """A list of modules whose parameters are registered (it has no forward of its own).

    Examples:
        >>> from minidl import nn
        >>> blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
        >>> len(list(blocks.parameters()))
        6
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append expects a Module, got {type(module).__name__}")
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index: int | slice) -> Any:
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[_normalize_index(index, len(values), "ModuleList")]

    def __setitem__(self, index: int, module: Module) -> None:
        i = _normalize_index(index, len(self), "ModuleList")
        self.add_module(str(i), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleList has no forward(); iterate over it in your own module's forward")


class ModuleDict(Module):
    """Modules by name, registered so their parameters are found (PyTorch's ``nn.ModuleDict``; no forward).

    Args:
        modules: a mapping (or iterable of pairs) of name -> module. Default: None.

    Examples:
        >>> from minidl import nn
        >>> heads = nn.ModuleDict({"cls": nn.Linear(8, 10), "box": nn.Linear(8, 4)})
        >>> sorted(heads.keys()), len(list(heads.parameters()))
        (['box', 'cls'], 4)
        >>> heads["cls"]
        Linear(in_features=8, out_features=10, bias=True)
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace the given name -> module entries."""
        items = modules.items() if isinstance(modules, Mapping) else modules
        for name, module in items:
            self[name] = module

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict has no module {key!r}; it has {list(self._modules)}")
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be strings, got {key!r}")
        self.add_module(key, _checked_module("ModuleDict", f"the value for {key!r}", module))

    def __delitem__(self, key: str) -> None:
        self[key]  # a clear KeyError for a missing key
        del self._modules[key]

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def pop(self, key: str) -> Module:
        """Remove the module ``key`` and return it."""
        module = self[key]
        del self._modules[key]
        return module

    def clear(self) -> None:
        """Remove every module."""
        self._modules.clear()

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("ModuleDict has no forward(); use its modules in your own module's forward")


def _as_index(where: str, index: Any) -> int:
    """``index`` as a Python int (NumPy integers too), or a clear TypeError."""
    if isinstance(index, bool):
        raise TypeError(f"{where}: an index must be an integer, got {index!r}")
    try:
        return operator.index(index)
    except TypeError:
        raise TypeError(f"{where}: an index must be an integer, got {type(index).__name__}") from None


def _normalize_index(index: Any, length: int, where: str) -> int:
    index = _as_index(where, index)
    if not -length <= index < length:
        raise IndexError(f"{where}: index {index} is out of range for {length} modules")
    return index % length


class Residual(Module):
    r"""``out = body(x) + shortcut(x)``: the residual connection of ResNet.

    .. math:: y = \mathrm{body}(x) + \mathrm{shortcut}(x) \qquad (\mathrm{shortcut} = \mathrm{id} \text{ by default})

    Args:
        body: the residual branch F.
        shortcut: the skip branch; ``None`` means identity (then ``body`` must keep the shape). A projection such
            as ``Sequential(Conv2d(C, O, 1, stride=2, bias=False), BatchNorm2d(O))`` when the shape changes.

    Shape:
        - Input: whatever ``body`` and ``shortcut`` accept.  - Output: their common output shape.
    Backward:
        The sum passes ``dout`` to both branches, and the fork at ``x`` adds what they return:
        dx = body.backward(dout) + shortcut.backward(dout)   (shortcut = identity: + dout)

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> block = nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
        >>> y = block(np.ones((2, 4), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 4), (2, 4))
        >>> ident = nn.Residual(nn.Identity())  # y = 2 x, so dx = 2 dout
        >>> ident(np.array([1.0, 3.0])), ident.backward(np.array([1.0, 1.0]))
        (array([2., 6.]), array([2., 2.]))
    """

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, Module) or (shortcut is not None and not isinstance(shortcut, Module)):
            raise TypeError("Residual(body, shortcut=None) expects Modules")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Any) -> Any:
        y = self.body(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(
                f"Residual: the body's output has shape {tuple(y.shape)} but the shortcut's has {tuple(s.shape)}; "
                "give the block a projection shortcut (e.g. a 1x1 Conv2d with the body's stride) so they match"
            )
        self.save_for_backward(tuple(y.shape), y.dtype)
        return y + s

    def receptive_field_branches(self) -> list[list[Module]]:
        """The two parallel branches, for :func:`minidl.summary`'s receptive field (``[]`` is the identity)."""
        return [[self.body], [] if self.shortcut is None else [self.shortcut]]

    def backward(self, dout: Any) -> Any:
        shape, dtype = self.pop_saved()
        check_grad_output("Residual.backward", dout, shape, dtype)
        dx = _named_backward(self.body, dout)
        return dx + (dout if self.shortcut is None else _named_backward(self.shortcut, dout))


class Concat(Module):
    r"""Runs every branch on the same input and concatenates their outputs along ``dim`` (Inception, DenseNet).

    .. math:: y = \mathrm{concat}_{dim}\big(f_1(x), \ldots, f_K(x)\big)

    Args:
        \*branches: modules; their outputs must agree on every dimension except ``dim``.
        dim: the concatenation axis. Default: 1 (channels).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, sum of the branches' channels, H, W) for ``dim=1``.
    Backward:
        dout is split along ``dim`` into the branches' slices; dx = sum over branches of branch.backward(slice).

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> block = nn.Concat(nn.Identity(), nn.Conv2d(2, 3, 1))
        >>> y = block(np.zeros((1, 2, 4, 4), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((1, 5, 4, 4), (1, 2, 4, 4))
    """

    def __init__(self, *branches: Module, dim: int = 1) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, branch in enumerate(branches):
            if not isinstance(branch, Module):
                raise TypeError(f"Concat: branch {i} is a {type(branch).__name__}, not a Module")
            self.add_module(str(i), branch)
        self.dim = check_int("Concat", "dim", dim, minimum=-(2**31))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def receptive_field_branches(self) -> list[list[Module]]:
        """The parallel branches, for :func:`minidl.summary`'s receptive field."""
        return [[branch] for branch in self._modules.values()]

    def forward(self, x: Any) -> Any:
        outs = [branch(x) for branch in self._modules.values()]
        first = outs[0]
        if not -first.ndim <= self.dim < first.ndim:  # as torch.cat: IndexError, never taken modulo ndim
            raise IndexError(
                f"{self._where()}: dim {self.dim} is out of range for the branches' {first.ndim}-D outputs "
                f"(expected a dim in [{-first.ndim}, {first.ndim - 1}], got {self.dim}; shape {tuple(first.shape)})"
            )
        dim = self.dim % first.ndim
        for i, y in enumerate(outs):
            if y.ndim != first.ndim or any(
                a != b for k, (a, b) in enumerate(zip(y.shape, first.shape, strict=False)) if k != dim
            ):
                raise ValueError(
                    f"Concat: branch {i} returned shape {tuple(y.shape)}, which does not match branch 0's "
                    f"{tuple(first.shape)} outside dimension {dim}"
                )
        out = get_array_module(first).concatenate(outs, axis=dim)
        self.save_for_backward(dim, [y.shape[dim] for y in outs], tuple(out.shape), out.dtype)
        return out

    def backward(self, dout: Any) -> Any:
        dim, sizes, shape, dtype = self.pop_saved()
        check_grad_output("Concat.backward", dout, shape, dtype)
        dx = None
        start = 0
        for branch, size in zip(self._modules.values(), sizes, strict=False):
            index = [slice(None)] * dout.ndim
            index[dim] = slice(start, start + size)
            start += size
            g = _named_backward(branch, dout[tuple(index)])
            dx = g if dx is None else dx + g
        return dx
