"""Pretrained weights that ship with minidl, with torchvision's ``weights=`` API.

A factory that has shipped weights takes ``weights=``: ``None`` (random initialization, the default), a member of
its weights enum (``Airbench94_Weights.CIFAR10``), or its name as a string (``"CIFAR10"``, ``"cifar10"``,
``"DEFAULT"`` or ``"Airbench94_Weights.CIFAR10"``). The model is built as usual, then the file's state dict is loaded
with ``load_state_dict`` (strict)::

    net = models.airbench94(weights="cifar10")          # = models.airbench94(weights=Airbench94_Weights.CIFAR10)
    preprocess = Airbench94_Weights.CIFAR10.transforms()  # ToArray + Normalize with the training set's statistics
    Airbench94_Weights.CIFAR10.meta["metrics"]            # the test accuracy the file reaches, and how it was made

Where the files are, and how they are checked:

* each file is package data, ``minidl/models/_weights/<name>.npz`` (``np.savez`` of arrays: loading runs no code), a
  few MB at most; ``_weights/manifest.json`` records, per weights, the file's SHA-256, the recipe (the command that
  trained it), the CPU and the accuracy measured on the CIFAR-10 test set and on the 500 test images embedded in
  minidl;
* every load computes the file's SHA-256 and refuses a file that differs from the manifest (``RuntimeError``);
* ``scripts/make_weights.py`` rebuilds a file and its manifest entry from a training run.

A file may store its floating-point arrays in float16 (``meta["dtype"]``) to halve its size; ``load_state_dict``
casts them to the model's float32, and the accuracy in the manifest is measured on the loaded file.

Examples:
    >>> from minidl import models
    >>> w = models.get_weight("Airbench94_Weights.CIFAR10")
    >>> w is models.Airbench94_Weights.DEFAULT, w.meta["num_params"], w.meta["categories"][3]
    (True, 1972792, 'cat')
    >>> models.get_model_weights("airbench94") is models.Airbench94_Weights
    True
"""

from __future__ import annotations

import copy
import enum
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "_weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"

__all__ = [
    "WEIGHTS_DIR",
    "Airbench94_Weights",
    "CifarCNN_Weights",
    "ResNet20_Weights",
    "Weights",
    "WeightsEnum",
    "cifar_eval_transforms",
    "get_model_weights",
    "get_weight",
]


@functools.lru_cache(maxsize=1)
def _manifest() -> dict[str, dict[str, Any]]:
    """The manifest, read on first use (not at import: ``import minidl`` works without it)."""
    if not MANIFEST.is_file():
        raise FileNotFoundError(f"minidl.models.weights: the manifest {MANIFEST} is missing; reinstall minidl")
    try:
        return json.loads(MANIFEST.read_text())
    except json.JSONDecodeError as err:
        raise RuntimeError(f"minidl.models.weights: {MANIFEST} is not valid JSON ({err}); reinstall minidl") from err


def cifar_eval_transforms(mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The evaluation preprocessing of CIFAR weights: (H, W, 3) uint8 or PIL -> (3, H, W) float32, standardized."""
    from minidl import transforms as T

    return T.Compose([T.ToArray(), T.Normalize(mean, std)])


@dataclass(frozen=True)
class Weights:
    """One shipped weights file, named by its manifest key ("Airbench94_Weights.CIFAR10"); everything else (the
    file, its SHA-256, the metadata) is read from ``manifest.json`` when first asked for.

    Attributes:
        key: the entry's name in ``manifest.json``.
        file: the file name in ``minidl/models/_weights/``.
        sha256: the hex digest the file must have.
        meta: ``num_params``, ``categories``, ``metrics``, ``recipe``, ``builder_kwargs``, ``dtype``, ... (see
            ``manifest.json``).
    """

    key: str

    @property
    def entry(self) -> dict[str, Any]:
        """A copy of the manifest's entry (changing it changes nothing that is loaded)."""
        manifest = _manifest()
        if self.key not in manifest:
            raise KeyError(f"minidl.models.weights: {self.key} has no entry in {MANIFEST}; reinstall minidl")
        return copy.deepcopy(manifest[self.key])

    @property
    def file(self) -> str:
        return self.entry["file"]

    @property
    def sha256(self) -> str:
        return self.entry["sha256"]

    @property
    def meta(self) -> dict[str, Any]:
        return {k: v for k, v in self.entry.items() if k not in ("file", "sha256")}

    def transforms(self) -> Any:
        """The evaluation transform (``weights.transforms()``, as in torchvision)."""
        return cifar_eval_transforms(tuple(self.entry["mean"]), tuple(self.entry["std"]))


class WeightsEnum(enum.Enum):
    """The weights one factory can load; members' values are :class:`Weights` (torchvision's ``WeightsEnum``)."""

    @classmethod
    def verify(cls, obj: Any, where: str | None = None) -> WeightsEnum | None:
        """``obj`` as a member: ``None`` stays ``None``; a member of this enum; a member's name, any case, alone or
        prefixed by the enum's name. Anything else raises ``ValueError`` naming the valid choices."""
        if obj is None or isinstance(obj, cls):
            return obj
        if isinstance(obj, str):
            name = obj[len(cls.__name__) + 1 :] if obj.startswith(cls.__name__ + ".") else obj
            for member_name, member in cls.__members__.items():
                if member_name.lower() == name.lower():
                    return member
        choices = ", ".join(repr(n) for n in cls.__members__)
        raise ValueError(f"{where or cls.__name__}: weights must be None or one of {choices}, got {obj!r}")

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.value.file

    @property
    def meta(self) -> dict[str, Any]:
        return self.value.meta

    def transforms(self) -> Any:
        return self.value.transforms()

    def get_state_dict(self) -> dict[str, Any]:
        """The file's state dict, after checking its SHA-256 against the manifest (``RuntimeError`` if it differs)."""
        from minidl.serialization import load

        check_sha256(self.path, self.value.sha256, f"{type(self).__name__}.{self.name}")
        return load(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


def check_sha256(path: Path, expected: str, where: str) -> None:
    """Raise ``RuntimeError`` (or ``FileNotFoundError``) unless the file at ``path`` has the SHA-256 ``expected``."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: the weights file {path} is missing; reinstall minidl")
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != expected:
        raise RuntimeError(
            f"{where}: {path} has SHA-256 {got}, expected {expected}: the file is damaged or was changed; reinstall "
            "minidl or rebuild it with scripts/make_weights.py"
        )


class Airbench94_Weights(WeightsEnum):  # noqa: N801 (torchvision's naming)
    """``models.airbench94(weights=...)``: trained by ``examples/speedrun_cifar10.py`` (see ``meta["recipe"]``)."""

    CIFAR10 = Weights("Airbench94_Weights.CIFAR10")
    DEFAULT = CIFAR10


class ResNet20_Weights(WeightsEnum):  # noqa: N801 (torchvision's naming)
    """``models.resnet20(weights=...)``: trained by ``examples/train_cifar10.py`` (see ``meta["recipe"]``)."""

    CIFAR10 = Weights("ResNet20_Weights.CIFAR10")
    DEFAULT = CIFAR10


class CifarCNN_Weights(WeightsEnum):  # noqa: N801 (torchvision's naming)
    """``models.cifar_cnn(weights=...)``: trained by ``examples/train_cifar10.py`` (see ``meta["recipe"]``)."""

    CIFAR10 = Weights("CifarCNN_Weights.CIFAR10")
    DEFAULT = CIFAR10


_BY_MODEL: dict[str, type[WeightsEnum]] = {
    "airbench94": Airbench94_Weights,
    "cifar_cnn": CifarCNN_Weights,
    "resnet20": ResNet20_Weights,
}


def get_model_weights(name: str) -> type[WeightsEnum]:
    """The weights enum of the zoo model ``name`` (``ValueError`` naming the models that have shipped weights, as
    torchvision's ``get_model_weights`` raises for an unknown model)."""
    if name not in _BY_MODEL:
        valid = sorted(_BY_MODEL)
        raise ValueError(f"get_model_weights: {name!r} has no shipped weights; models with weights: {valid}")
    return _BY_MODEL[name]


def get_weight(name: str) -> WeightsEnum:
    """The member named ``"<Enum>.<MEMBER>"``, e.g. ``get_weight("Airbench94_Weights.CIFAR10")``."""
    enum_name, _, member = name.partition(".")
    for weights_enum in _BY_MODEL.values():
        if weights_enum.__name__ == enum_name and member in weights_enum.__members__:
            return weights_enum[member]
    valid = [f"{e.__name__}.{m}" for e in _BY_MODEL.values() for m in e.__members__]
    raise ValueError(f"get_weight: unknown weights {name!r}; valid: {valid}")


def load_pretrained(model: Any, weights: WeightsEnum, where: str) -> Any:
    """Load ``weights`` into ``model`` (built by the factory ``where``) after checking that the model was built as
    the weights were trained: its ``num_classes`` and each of ``meta["builder_kwargs"]`` (``widths``,
    ``in_channels``), read back from the model's attributes of those names."""
    classes = len(weights.meta["categories"])
    if model.num_classes != classes:
        raise ValueError(
            f"{where}: {weights!r} has {classes} classes, got num_classes={model.num_classes}; load the weights with "
            f"num_classes={classes}, then replace the head (minidl.train.replace_head)"
        )
    for key, expected in weights.meta["builder_kwargs"].items():
        value = getattr(model, key)
        as_json = list(value) if isinstance(value, (tuple, list)) else value  # the manifest's JSON has lists
        if as_json != expected:
            raise ValueError(f"{where}: {weights!r} was trained with {key}={expected}, got {key}={value}")
    model.load_state_dict(weights.get_state_dict())
    return model
