r"""Transfer learning: freeze a pretrained backbone, replace the head, train the backbone at a tenth of the lr.

The recipes of the lectures, from least to most data:

1. **Fixed feature extractor** (small dataset): freeze everything, replace the last Linear by a new one for your C
   classes, train only it::

       freeze(model); replace_head(model, "fc", num_classes)      # the new head is trainable
       opt = optim.SGD(trainable_parameters(model), lr=1e-3, momentum=0.9)

2. **Fine-tune the top** (more data): also unfreeze the last stage(s): ``unfreeze(model, ["layer4"])``.
3. **Fine-tune everything** (bigger dataset): train all layers, the pretrained ones with a lower learning rate
   ("1/10 of the original LR is a good starting point")::

       opt = optim.SGD(param_groups_with_lr(model, base_lr=0.01, backbone_lr_factor=0.1, head_prefixes=("fc",)),
                       lr=0.01, momentum=0.9)

Names are the dotted names of ``model.named_modules()`` / ``named_parameters()`` (``"layer4"``, ``"features.0"``,
``"classifier.6"``); a prefix matches a name equal to it or starting with it followed by a dot, so ``"layer4"``
matches ``layer4.0.conv1.weight`` but not ``layer40``.

**BatchNorm while fine-tuning.** A BatchNorm layer in ``train()`` mode normalizes with the statistics of each batch
and overwrites its running averages; with small fine-tuning batches (or a dataset unlike the pretraining one) that
destroys the pretrained statistics. The usual choice is to keep the pretrained BN layers in eval mode -- normalize with
the stored running mean/variance, leave them unchanged -- while the rest of the model trains. In minidl the backward
of an eval-mode BatchNorm is exact (layers cache for backward whenever gradients are enabled, in eval mode too; the
running statistics are constants, so :math:`dx = dout \cdot \gamma / \sqrt{\sigma^2_{run} + \epsilon}`), so gradients
flow through frozen BN layers to the layers below. :func:`freeze_batchnorm` does this and keeps it so: PyTorch users
override ``model.train()``; here the frozen layers get a ``training`` attribute that stays False, whichever
``train()`` call (of the model or of any submodule) comes later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from minidl.nn.linear import Linear
from minidl.nn.module import Module, Parameter
from minidl.nn.normalization import _BatchNorm

__all__ = [
    "count_parameters",
    "find_last_linear",
    "freeze",
    "freeze_batchnorm",
    "get_submodule",
    "param_groups_with_lr",
    "replace_head",
    "trainable_parameters",
    "unfreeze",
    "unfreeze_batchnorm",
]


def _as_prefixes(where: str, prefixes: Any) -> list[str]:
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    prefixes = list(prefixes)
    for p in prefixes:
        if not isinstance(p, str) or not p:
            raise TypeError(f"{where}: prefixes must be non-empty module or parameter names, got {p!r}")
    return prefixes


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _select(where: str, model: Module, prefixes: Any) -> list[tuple[str, Parameter]]:
    """The named parameters under ``prefixes`` (every one when None); an unknown prefix is an error."""
    if not isinstance(model, Module):
        raise TypeError(f"{where}: expected a minidl.nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    if prefixes is None:
        return named
    prefixes = _as_prefixes(where, prefixes)
    for prefix in prefixes:
        if not any(_matches(name, prefix) for name, _ in named):
            top = sorted({name.split(".")[0] for name, _ in named})
            raise ValueError(f"{where}: no parameter is named {prefix!r} or below it; top-level names: {top}")
    return [(name, p) for name, p in named if any(_matches(name, prefix) for prefix in prefixes)]


def freeze(model: Module, prefixes: str | Iterable[str] | None = None, exclude: str | Iterable[str] = ()) -> Module:
    """Freeze parameters (``requires_grad = False``, gradient dropped): all, or those under ``prefixes``.

    Frozen parameters get no gradient in backward and optimizers skip them. This does not touch BatchNorm's
    running statistics (see :func:`freeze_batchnorm`).

    Args:
        model: the model.
        prefixes: module or parameter names (``"features"``, ``"layer4"``, ``"fc.weight"``), or None for all.
            Default: None.
        exclude: names to leave trainable, e.g. ``freeze(model, exclude="fc")``. Default: ().

    Returns:
        ``model``.

    Examples:
        >>> from minidl import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = freeze(model, exclude="2")
        >>> [name for name, p in model.named_parameters() if p.requires_grad]
        ['2.weight', '2.bias']
    """
    keep = _as_prefixes("freeze", exclude)
    for name, p in _select("freeze", model, prefixes):
        if not any(_matches(name, prefix) for prefix in keep):
            p.requires_grad = False
            p.grad = None
    return model


def unfreeze(model: Module, prefixes: str | Iterable[str] | None = None) -> Module:
    """Make parameters trainable again: all, or those under ``prefixes`` (e.g. ``["layer4", "fc"]``).

    Examples:
        >>> from minidl import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> count_parameters(unfreeze(freeze(model), "2"))
        18
    """
    for _, p in _select("unfreeze", model, prefixes):
        p.requires_grad = True
    return model


def trainable_parameters(model: Module) -> list[Parameter]:
    """The parameters with ``requires_grad`` (what to give the optimizer after freezing)."""
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model: Module, trainable_only: bool = True) -> int:
    """The number of scalar parameters, trainable ones only by default.

    Examples:
        >>> from minidl import nn
        >>> count_parameters(nn.Linear(3, 2)), count_parameters(nn.Linear(3, 2).requires_grad_(False))
        (8, 0)
    """
    return sum(p.size for p in model.parameters() if p.requires_grad or not trainable_only)


def get_submodule(model: Module, path: str) -> Module:
    """The module at dotted ``path`` (``"layer4.1.conv2"``, ``"classifier.6"``); ``""`` is the model itself."""
    module = model
    if path == "":
        return module
    walked = []
    for part in path.split("."):
        children = module._modules
        if part not in children or children[part] is None:
            where = ".".join(walked) or "the model"
            raise ValueError(
                f"get_submodule: {where} has no child {part!r} (path {path!r}); children: {list(children)}"
            )
        module = children[part]
        walked.append(part)
    return module


def find_last_linear(model: Module) -> tuple[str, Linear]:
    """``(name, module)`` of the last :class:`~minidl.nn.Linear` in ``model.named_modules()`` order: the
    classification head of the usual architectures (``fc`` in ResNet, ``classifier.6`` in VGG).

    Examples:
        >>> from minidl import nn
        >>> find_last_linear(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))[0]
        '2'
    """
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, Linear)]
    if not found:
        raise ValueError(f"find_last_linear: {type(model).__name__} has no Linear layer")
    return found[-1]


def replace_head(model: Module, path: str | None, new_module: Module | int) -> Module:
    """Replace the submodule at ``path`` (``"fc"``, ``"classifier.6"``; None: the last Linear) by ``new_module``.

    Args:
        model: the model (changed in place).
        path: dotted name of the module to replace, or None for :func:`find_last_linear`.
        new_module: the new module, or an int ``C``: a new ``Linear(in_features, C)`` (bias as the old head's),
            freshly initialized and trainable.

    Returns:
        The old module.

    Examples:
        >>> from minidl import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1000))
        >>> old = replace_head(model, None, 10)
        >>> old.out_features, model[2].out_features, model[2].in_features
        (1000, 10, 8)
    """
    if path is None:
        path, _ = find_last_linear(model)
    if path == "":
        raise ValueError("replace_head: path must name a submodule, not the model itself")
    parent_path, _, name = path.rpartition(".")
    parent = get_submodule(model, parent_path)
    old = get_submodule(model, path)
    if isinstance(new_module, int) and not isinstance(new_module, bool):
        if not isinstance(old, Linear):
            raise TypeError(
                f"replace_head: an int (number of classes) can only replace a Linear, but {path!r} is a "
                f"{type(old).__name__}; pass a module"
            )
        new_module = Linear(old.in_features, new_module, bias=old.bias is not None)
    if not isinstance(new_module, Module):
        raise TypeError(f"replace_head: new_module must be a Module or an int, got {type(new_module).__name__}")
    new_module.train(parent.training)
    parent.add_module(name, new_module)  # same key: keeps the child's position (and the state_dict order)
    return old


def param_groups_with_lr(
    model: Module,
    base_lr: float,
    backbone_lr_factor: float = 0.1,
    head_prefixes: str | Sequence[str] = ("fc",),
    trainable_only: bool = True,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head at ``base_lr``, the pretrained backbone at ``base_lr * factor``.

    Args:
        model: the model.
        base_lr: the head's learning rate.
        backbone_lr_factor: the backbone's lr relative to the head's (the lectures' "1/10 of the original LR").
            Default: 0.1.
        head_prefixes: names of the new layers (``"fc"``, ``"classifier"``). Default: ("fc",).
        trainable_only: leave out frozen parameters. Default: True.

    Returns:
        ``[{"params": backbone, "lr": base_lr * factor, "name": "backbone"}, {"params": head, "lr": base_lr,
        "name": "head"}]``, leaving out a group without parameters.

    Examples:
        >>> from minidl import nn, optim
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> opt = optim.SGD(param_groups_with_lr(model, 0.01, head_prefixes="2"), lr=0.01, momentum=0.9)
        >>> [(g["name"], g["lr"], len(g["params"])) for g in opt.param_groups]
        [('backbone', 0.001, 2), ('head', 0.01, 2)]
    """
    where = "param_groups_with_lr"
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not base_lr >= 0:
        raise ValueError(f"{where}: base_lr must be a number >= 0, got {base_lr!r}")
    if (
        isinstance(backbone_lr_factor, bool)
        or not isinstance(backbone_lr_factor, (int, float))
        or backbone_lr_factor < 0
    ):
        raise ValueError(f"{where}: backbone_lr_factor must be a number >= 0, got {backbone_lr_factor!r}")
    head_names = {name for name, _ in _select(where, model, head_prefixes)}
    backbone, head = [], []
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        (head if name in head_names else backbone).append(p)
    groups = [
        {"params": backbone, "lr": float(base_lr) * float(backbone_lr_factor), "name": "backbone"},
        {"params": head, "lr": float(base_lr), "name": "head"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(f"{where}: the model has no trainable parameters (unfreeze some, or trainable_only=False)")
    return groups


# ---------------------------------------------------------------------- BatchNorm in eval mode
class _EvalOnly:
    """Mixin of the frozen BatchNorm classes: ``training`` reads False and ignores assignments."""

    _frozen_from: type

    @property
    def training(self) -> bool:  # type: ignore[override]
        return False

    @training.setter
    def training(self, mode: bool) -> None:
        pass  # model.train() sets every module's flag; a frozen BN stays in eval mode


_FROZEN_CLASSES: dict[type, type] = {}


def _frozen_class(cls: type) -> type:
    if cls not in _FROZEN_CLASSES:
        _FROZEN_CLASSES[cls] = type(
            f"Frozen{cls.__name__}", (_EvalOnly, cls), {"_frozen_from": cls, "__module__": __name__}
        )
    return _FROZEN_CLASSES[cls]


def _batchnorms(model: Module, prefixes: Any) -> Iterator[tuple[str, Module]]:
    prefixes = None if prefixes is None else _as_prefixes("freeze_batchnorm", prefixes)
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and (prefixes is None or any(_matches(name, p) for p in prefixes)):
            yield name, m


def freeze_batchnorm(
    model: Module, prefixes: str | Iterable[str] | None = None, freeze_affine: bool = True
) -> list[str]:
    """Keep BatchNorm layers in eval mode for good: running statistics used and never updated, even after
    ``model.train()``; their ``weight``/``bias`` frozen too unless ``freeze_affine=False``.

    Each BN module's class is swapped for a ``Frozen<Class>`` subclass whose ``training`` always reads False (its
    parameters, buffers, ``state_dict`` keys and backward are unchanged; ``isinstance(m, nn.BatchNorm2d)`` still
    holds). Backward through it is exact (see the module docstring). :func:`unfreeze_batchnorm` undoes it.

    Args:
        model: the model.
        prefixes: only BN layers under these names; None for all. Default: None.
        freeze_affine: also freeze gamma (``weight``) and beta (``bias``). Default: True.

    Returns:
        The names of the BN layers frozen.

    Examples:
        >>> from minidl import nn
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
        >>> freeze_batchnorm(model)
        ['1']
        >>> model.train()[1].training, model[0].training, model[1].weight.requires_grad
        (False, True, False)
    """
    names = []
    for name, m in _batchnorms(model, prefixes):
        if not isinstance(m, _EvalOnly):
            m.__class__ = _frozen_class(type(m))
        if freeze_affine:
            for p in m.parameters():
                p.requires_grad = False
                p.grad = None
        names.append(name)
    return names


def unfreeze_batchnorm(
    model: Module, prefixes: str | Iterable[str] | None = None, unfreeze_affine: bool = True
) -> list[str]:
    """Undo :func:`freeze_batchnorm`: the BN layers follow ``train()``/``eval()`` again (and take the mode of the
    model now); their affine parameters become trainable unless ``unfreeze_affine=False``. Returns their names."""
    names = []
    for name, m in _batchnorms(model, prefixes):
        if isinstance(m, _EvalOnly):
            m.__class__ = m._frozen_from
            object.__setattr__(m, "training", model.training)
        if unfreeze_affine:
            for p in m.parameters():
                p.requires_grad = True
        names.append(name)
    return names
