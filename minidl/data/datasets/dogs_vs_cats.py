"""Dogs vs. Cats (Kaggle 2013, Asirra images): colour photos of various sizes, label 0 = cat, 1 = dog.

Two layouts are recognised, in a folder or inside a zip (members are read in place, nothing is extracted), under an
optional top-level folder (e.g. ``cats_and_dogs_filtered/``):

* Kaggle's: ``train/cat.123.jpg``, ``train/dog.45.jpg`` (the label is the file-name prefix);
* class folders: ``train/cats/...``, ``train/dogs/...``, ``validation/cats/...``, ``validation/dogs/...`` (the
  ``cats_and_dogs_filtered`` subset).

``train=False`` reads ``validation/`` (or ``val/``, ``valid/``, or a labelled ``test/``); Kaggle's unlabelled
``test1/`` is ignored. The images are under Kaggle's competition terms (non-commercial research, no
redistribution), so there is no automatic download.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from minidl.data.datasets._base import check_bool
from minidl.data.datasets.folder import IMG_EXTENSIONS, _ImageFiles, pil_loader, read_member
from minidl.data.download import DownloadError

__all__ = ["DogsVsCats"]

_SPLITS = {True: ("train",), False: ("validation", "val", "valid", "test")}
_EXT = "|".join(e.lstrip(".") for e in IMG_EXTENSIONS)


def _pattern(split: str) -> re.Pattern[str]:
    # [prefix/]split/(cats|dogs)/file.ext  or  [prefix/]split/(cat|dog).anything.ext
    return re.compile(
        rf"^(?P<prefix>(?:[^/]+/)*?){split}/(?:(?P<folder>cats?|dogs?)/[^/]+|(?P<kaggle>cat|dog)\.[^/]+)\.(?:{_EXT})$",
        re.IGNORECASE,
    )


def _classify(names: list[str], train: bool) -> list[tuple[str, int]]:
    """(name, label) of the labelled images of the split among ``names`` (posix relative paths), sorted by name."""
    for split in _SPLITS[train]:
        pattern = _pattern(split)
        found = []
        for name in names:
            m = pattern.match(name)
            if m and "__MACOSX" not in name and not os.path.basename(name).startswith("._"):
                kind = (m.group("folder") or m.group("kaggle")).lower()
                found.append((name, 0 if kind.startswith("cat") else 1))
        if found:
            return sorted(found)
    return []


class DogsVsCats(_ImageFiles):
    """The Dogs vs. Cats images, from a folder or a zip; samples are ``(image, label)``, 0 = cat, 1 = dog.

    ``root`` may be a zip file, or a folder that holds the layout itself, or holds it under ``dogs-vs-cats/`` or
    ``cats_and_dogs_filtered/``, or holds a ``*.zip`` with it (tried in sorted order).

    Args:
        root: see above. Default: ``$MINIDL_DATA_DIR`` or ``~/.cache/minidl/datasets``.
        train: ``train/`` or the validation folder. Default: True.
        transform: applied to each image (an RGB PIL image with the default loader). Default: None.
        target_transform: applied to each label. Default: None.
        download: no public checksummed source exists; True only changes the error message. Default: False.
        loader: turns a path or a file object into an image. Default: :func:`~minidl.data.datasets.pil_loader`.
        skip_corrupt: test-decode every file now and leave out the broken ones. Default: False.

    Attributes:
        classes: ``["cat", "dog"]``. class_to_idx. samples: [(path or zip member, label)]. targets.
        source: the folder or zip read. skipped: [(file, reason)] left out by ``skip_corrupt``.
    """

    classes = ["cat", "dog"]
    root_may_be_file = True  # the zip itself

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
        loader: Callable[[Any], Any] = pil_loader,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train, download = self._split_flags(train, download)
        self.loader = loader
        self.skip_corrupt = check_bool("DogsVsCats", "skip_corrupt", skip_corrupt)
        self._set_classes(self.classes)  # cat 0, dog 1
        self._zip: Path | None = None
        self._zip_cache: dict[str, Any] = {}
        if not self._locate():
            where = "train/ (cat.N.jpg or cats/, dogs/)" if self.train else "validation/ (cats/, dogs/)"
            message = (
                f"DogsVsCats: no labelled {'training' if self.train else 'validation'} images found under {self.root}. "
                f"Put the Kaggle train.zip or cats_and_dogs_filtered.zip (or its extracted folder with {where}) "
                f"there, or point root / $MINIDL_DATA_DIR at it."
            )
            if download:
                raise DownloadError(
                    message + " Automatic download is not available: the images are under Kaggle's competition "
                    "terms (https://www.kaggle.com/c/dogs-vs-cats/data) and have no published checksum."
                )
            raise FileNotFoundError(message)
        self.targets = [label for _, label in self.samples]
        self._drop_corrupt()

    def _locate(self) -> bool:
        root = Path(self.root)
        if root.is_file():
            if not zipfile.is_zipfile(root):
                raise NotADirectoryError(
                    f"DogsVsCats: root {root} is a file but not a zip archive (expected a folder, or Kaggle's "
                    "train.zip or cats_and_dogs_filtered.zip)"
                )
            return self._use_zip(root)
        folders = [d for d in (root, root / "dogs-vs-cats", root / "cats_and_dogs_filtered") if d.is_dir()]
        for folder in folders:
            names = []
            for sub in [folder / s for s in _SPLITS[self.train]]:
                if sub.is_dir():
                    for dirpath, _, files in os.walk(sub):
                        rel = Path(dirpath).relative_to(folder).as_posix()
                        names += [f"{rel}/{f}" for f in files]
            samples = _classify(names, self.train)
            if samples:
                self.source = folder
                self.samples = [(str(folder / name), label) for name, label in samples]
                return True
        for folder in folders:
            for path in sorted(folder.glob("*.zip")):
                if zipfile.is_zipfile(path) and self._use_zip(path):
                    return True
        return False

    def _use_zip(self, path: Path) -> bool:
        with zipfile.ZipFile(path) as zf:
            samples = _classify([i.filename for i in zf.infolist() if not i.is_dir()], self.train)
        if not samples:
            return False
        self.source = self._zip = path
        self.samples = samples
        return True

    def _open(self, source: str) -> str | IO[bytes]:
        return read_member(self._zip, self._zip_cache, source) if self._zip is not None else source

    def _describe(self, source: str) -> str:
        return f"{self._zip}:{source}" if self._zip is not None else source

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip_cache"] = {}  # an open ZipFile is reopened in the process that unpickles the dataset
        return state

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Validation'}\nSource: {self.source}"
