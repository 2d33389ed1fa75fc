"""What the image datasets share: root resolution and checks, flag checks, transforms, the repr, finding the files
(or downloading them), and the "where to put the files" message."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from minidl.data.dataset import Dataset
from minidl.data.download import default_root

__all__ = ["VisionDataset", "check_bool"]


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` as a bool, if it is one (Python's or NumPy's); a TypeError naming ``owner`` and ``name`` otherwise:
    ``bool("test")`` is True, so a string or a number would silently pick the training split."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


class VisionDataset(Dataset):
    """Base of the image datasets: ``root``, ``transform`` (applied to the image) and ``target_transform`` (applied
    to the label), as in torchvision.

    Args:
        root: folder holding the data. Default: ``$MINIDL_DATA_DIR`` or ``~/.cache/minidl/datasets``.
        transform: callable applied to each image. Default: None.
        target_transform: callable applied to each label. Default: None.

    Raises:
        TypeError: ``root`` is not a path.  NotADirectoryError: ``root`` is a file (a dataset whose ``root_may_be_file``
            is True, such as :class:`DogsVsCats` reading a zip, checks the file itself).
    """

    root_may_be_file: ClassVar[bool] = False

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(
                f"{type(self).__name__}: root must be a folder path (str or os.PathLike) or None, got "
                f"{type(root).__name__} {root!r}"
            )
        self.root = Path(root).expanduser() if root is not None else default_root()
        if self.root.is_file() and not self.root_may_be_file:
            raise NotADirectoryError(
                f"{type(self).__name__}: root {self.root} is a file (expected the folder that holds the dataset's "
                "files, or where to put them)"
            )
        for name, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{type(self).__name__}: {name} must be callable, got {type(fn).__name__}")
        self.transform = transform
        self.target_transform = target_transform

    def _split_flags(self, train: Any, download: Any) -> tuple[bool, bool]:
        """``(train, download)`` checked to be bools (:func:`check_bool`): the two flags of every dataset that has a
        train and a test split."""
        owner = type(self).__name__
        return check_bool(owner, "train", train), check_bool(owner, "download", download)

    def _find_or_download(self, what: Any, download: bool) -> Any:
        """``self._find(what)``; if that finds no copy (None) and ``download`` is True, ``self._download(what)`` and
        ``self._find(what)`` again; a FileNotFoundError with ``self._missing_message(what)`` if there is still none.

        For the datasets that look for their files (``what`` is what to look for: a split, a list of files); they
        define the three methods.
        """
        found = self._find(what)
        if found is None and download:
            self._download(what)
            found = self._find(what)
        if found is None:
            raise FileNotFoundError(self._missing_message(what))
        return found

    def _set_classes(self, classes: Any) -> None:
        """``classes`` (names, in label order) and ``class_to_idx`` (name -> label), as torchvision's datasets."""
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _apply(self, img: Any, target: Any) -> tuple[Any, Any]:
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"Number of datapoints: {len(self)}", f"Root location: {self.root}"]
        lines += [line for line in self.extra_repr().splitlines() if line]
        if self.transform is not None:
            lines.append(f"Transform: {self.transform!r}")
        if self.target_transform is not None:
            lines.append(f"Target transform: {self.target_transform!r}")
        return f"Dataset {type(self).__name__}\n    " + "\n    ".join(lines)


def search_dirs(root: Path, *subfolders: str) -> list[Path]:
    """``root`` and the given subfolders of it that exist (where a dataset's files may sit)."""
    return [d for d in [root, *(root / s for s in subfolders)] if d.is_dir()]


def missing_files_message(name: str, root: Path, files: Sequence[tuple[str, str]], extra: str = "") -> str:
    """The error text listing exactly which files (with MD5) to put where."""
    listing = "\n".join(f"    {root / f}  (md5 {md5})" for f, md5 in files)
    return (
        f"{name}: dataset not found under {root}. Put these files there (or pass download=True when online, or "
        f"point root / $MINIDL_DATA_DIR at the folder that holds them):\n{listing}{extra}"
    )
