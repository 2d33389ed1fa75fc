"""Datasets of image files: one class per sub-folder (:class:`ImageFolder`), decoded with Pillow.

A file that Pillow cannot decode (corrupt, truncated, not an image) raises :class:`CorruptImageError` naming the file
when its sample is loaded. With ``skip_corrupt=True`` every file is test-decoded once when the dataset is built
(JPEGs at 1/8 scale, which still reads the whole compressed stream); the bad ones are left out, listed in
``.skipped`` and reported by a warning.

Every mode Pillow opens becomes 8-bit RGB by a known rule, or is refused (:func:`pil_loader`):

* 8-bit modes (``1``, ``L``, ``LA``, ``La``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBa``, ``RGBX``, ``CMYK``,
  ``YCbCr``, ``LAB``, ``HSV``): Pillow's ``convert("RGB")`` (alpha dropped, as torchvision's ``pil_loader`` does);
* 16-bit grayscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``: 16-bit PNG and TIFF; a 16-bit PGM, which Pillow opens
  as ``I`` scaled to 0..65535): scaled to 0..255 by ``round(v * 255 / 65535)``; ``convert`` would clip everything
  above 255 to white, making a constant image;
* 32-bit integer (``I``, e.g. an int32 TIFF) and float (``F``) pixels: refused with :class:`UnsupportedImageError`,
  since their range is unknown (a float image in [0, 1] would become black, an int image above 255 white). Pass a
  ``loader`` that scales them with the range you know.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from minidl.data.dataset import _check_index
from minidl.data.datasets._base import VisionDataset, check_bool

__all__ = ["IMG_EXTENSIONS", "CorruptImageError", "ImageFolder", "UnsupportedImageError", "find_classes", "pil_loader"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)  # what Pillow raises on a broken file


class CorruptImageError(OSError):
    """An image file could not be decoded; the message names the file."""


class UnsupportedImageError(ValueError):
    """An image decodes, but its pixels cannot become 8-bit RGB by a known rule (32-bit int or float); names it."""


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _is_sixteen_bit(img: Any) -> bool:
    # Pillow opens a PGM/PPM with maxval > 255 as mode I, scaled to 0..65535
    return img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PPM")


def _check_mode(img: Any, name: str) -> None:
    """Refuse the modes :func:`pil_loader` cannot turn into 8-bit RGB without guessing a value range."""
    if img.mode in ("I", "F") and not _is_sixteen_bit(img):
        kind = "32-bit float" if img.mode == "F" else "32-bit integer"
        raise UnsupportedImageError(
            f"pil_loader: {name} has {kind} pixels (PIL mode {img.mode!r}); expected an 8-bit or 16-bit image, whose "
            "range is known (0..255, 0..65535). Converting it would clip the values to 0..255 (a float image in "
            "[0, 1] would be black); pass loader= a function that scales it with the range you know"
        )


def _to_rgb(img: Any, name: str) -> Any:
    """``img`` (decoded) as an 8-bit RGB PIL image, by the rules of the module docstring."""
    from PIL import Image

    if _is_sixteen_bit(img):
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):  # pragma: no cover - Pillow guarantees it
            raise UnsupportedImageError(f"pil_loader: {name}: 16-bit pixel values outside 0..65535")
        eight = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535)
        return Image.fromarray(eight, mode="L").convert("RGB")
    _check_mode(img, name)
    if img.mode in ("La", "RGBa"):  # premultiplied alpha: Pillow converts to RGB only from the straight form
        img = img.convert(img.mode.upper())
    try:
        return img.convert("RGB")
    except ValueError as exc:  # e.g. "conversion from La to RGB not supported"
        raise UnsupportedImageError(
            f"pil_loader: {name} has PIL mode {img.mode!r}, which Pillow cannot convert to RGB ({exc}); expected one "
            "of the modes listed in minidl.data.datasets.folder"
        ) from None


def _name_of(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else str(getattr(source, "name", "<file object>"))


def _source(source: Any) -> str | os.PathLike | IO[bytes]:
    """A path (bytes paths decoded as ``open`` would) or a binary file object; a TypeError naming pil_loader else."""
    if isinstance(source, bytes):
        return os.fsdecode(source)
    if isinstance(source, (str, os.PathLike)) or callable(getattr(source, "read", None)):
        return source
    raise TypeError(
        f"pil_loader: expected a path (str, bytes or os.PathLike) or a binary file object, got "
        f"{type(source).__name__} {source!r}"[:300]
    )


def pil_loader(source: str | bytes | os.PathLike | IO[bytes]) -> Any:
    """Decode an image file (path or binary file object) into an 8-bit RGB PIL image (torchvision's ``pil_loader``).

    16-bit grayscale is scaled to 0..255; 32-bit int and float images are refused (see the module docstring).

    Raises:
        CorruptImageError: the file is not a decodable image (names the file).
        UnsupportedImageError: the pixels are 32-bit int or float, or of a mode Pillow cannot convert to RGB.
        TypeError: ``source`` is neither a path nor a file object.
    """
    from PIL import Image

    source = _source(source)
    opened = open(source, "rb") if isinstance(source, (str, os.PathLike)) else contextlib.nullcontext(source)
    try:
        with opened as f, Image.open(f) as img:
            img.load()  # decodes the whole image, so truncation is caught here
            return _to_rgb(img, _name_of(source))
    except UnsupportedImageError:
        raise
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"pil_loader: cannot decode image {_name_of(source)}: {exc}") from exc


def _check_decodes(source: str | os.PathLike | IO[bytes]) -> None:
    """Decode ``source`` cheaply (JPEG at 1/8 scale); raise if it is broken."""
    from PIL import Image

    source = _source(source)
    opened = open(source, "rb") if isinstance(source, (str, os.PathLike)) else contextlib.nullcontext(source)
    with opened as f, Image.open(f) as img:
        _check_mode(img, _name_of(source))
        img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()


def find_classes(directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
    """The sub-folders of ``directory`` (sorted) as class names, and the name -> index map."""
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"ImageFolder: found no class sub-folder in {directory}")
    return classes, {c: i for i, c in enumerate(classes)}


class _ImageFiles(VisionDataset):
    """Shared part of the file-based datasets: ``samples`` [(source, label)], decoding, skip_corrupt."""

    samples: list[tuple[str, int]]

    def _open(self, source: str) -> str | IO[bytes]:
        """What the loader receives for ``source`` (a path here; a zip member's bytes in a subclass)."""
        return source

    def _describe(self, source: str) -> str:
        return source

    def _drop_corrupt(self) -> None:
        self.skipped: list[tuple[str, str]] = []
        if not self.skip_corrupt:
            return
        good = []
        for source, label in self.samples:
            try:
                if self.loader is pil_loader:
                    _check_decodes(self._open(source))
                else:
                    self.loader(self._open(source))
            except Exception as exc:
                self.skipped.append((self._describe(source), f"{type(exc).__name__}: {exc}"))
            else:
                good.append((source, label))
        self.samples = good
        self.targets = [label for _, label in good]
        if self.skipped:
            shown = "; ".join(f"{name} ({why})" for name, why in self.skipped[:3])
            warnings.warn(
                f"{type(self).__name__}: skipped {len(self.skipped)} corrupt or unreadable image(s) of "
                f"{len(good) + len(self.skipped)}: {shown}{' ...' if len(self.skipped) > 3 else ''}",
                stacklevel=3,
            )

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        source, label = self.samples[_check_index(type(self).__name__, index, len(self))]
        try:
            img = self.loader(self._open(source))
        except UnsupportedImageError as exc:
            raise UnsupportedImageError(f"{type(self).__name__}: {exc}") from exc
        except CorruptImageError as exc:
            raise CorruptImageError(f"{type(self).__name__}: cannot decode image {self._describe(source)}: "
                                    f"{exc.__cause__ or exc}") from exc  # fmt: skip
        except _DECODE_ERRORS as exc:
            raise CorruptImageError(
                f"{type(self).__name__}: cannot decode image {self._describe(source)}: {exc}"
            ) from exc
        return self._apply(img, label)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_skipped(self) -> int:
        """How many files ``skip_corrupt`` left out."""
        return len(self.skipped)


class ImageFolder(_ImageFiles):
    """Images arranged one folder per class: ``root/<class>/**/<file>`` (torchvision's ``ImageFolder``).

    Args:
        root: the folder whose sub-folders are the classes (sorted names get labels 0, 1, ...).
        transform: applied to each image (an RGB PIL image with the default loader). Default: None.
        target_transform: applied to each label. Default: None.
        loader: turns a path into an image. Default: :func:`pil_loader`.
        is_valid_file: ``f(path) -> bool`` choosing the files. Default: None (files with an image extension).
        skip_corrupt: test-decode every file now and leave out the broken ones (see the module docstring).
            Default: False.
        allow_empty: allow class folders without any valid file. Default: False.

    Attributes:
        classes: class names. class_to_idx: name -> label. samples: [(path, label)] sorted by class then path.
        targets: the labels of ``samples``. skipped: [(path, reason)] left out by ``skip_corrupt``.

    Raises:
        FileNotFoundError: no class folder, or a class folder without images (unless ``allow_empty``).
        CorruptImageError: when loading a file that cannot be decoded (names the file).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        loader: Callable[[Any], Any] = pil_loader,
        is_valid_file: Callable[[str], bool] | None = None,
        skip_corrupt: bool = False,
        allow_empty: bool = False,
    ) -> None:
        super().__init__(root, transform, target_transform)
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"ImageFolder: root {self.root} is not a folder")
        self.loader = loader
        self.skip_corrupt = check_bool("ImageFolder", "skip_corrupt", skip_corrupt)
        check_bool("ImageFolder", "allow_empty", allow_empty)
        self.classes, self.class_to_idx = find_classes(self.root)
        valid = is_valid_file or (lambda p: p.lower().endswith(IMG_EXTENSIONS))
        self.samples = []
        empty = []
        for cls in self.classes:
            found = []
            for folder, _, files in sorted(os.walk(self.root / cls, followlinks=True)):
                found += [os.path.join(folder, f) for f in sorted(files) if valid(os.path.join(folder, f))]
            if not found:
                empty.append(cls)
            self.samples += [(p, self.class_to_idx[cls]) for p in found]
        if empty and not allow_empty:
            raise FileNotFoundError(
                f"ImageFolder: found no valid file for the classes {empty} under {self.root} (extensions: "
                f"{', '.join(IMG_EXTENSIONS)}); pass allow_empty=True to accept empty classes"
            )
        self.targets = [label for _, label in self.samples]
        self._drop_corrupt()

    @property
    def imgs(self) -> list[tuple[str, int]]:
        """Alias of ``samples`` (torchvision)."""
        return self.samples


def read_member(zip_path: Path, cache: dict[str, Any], name: str) -> IO[bytes]:
    """A zip member's bytes as a named file object; the ZipFile is opened once per process (a handle inherited
    through ``fork`` would share its file position with the parent)."""
    import zipfile

    pid = os.getpid()
    if cache.get("pid") != pid:
        cache["zip"] = zipfile.ZipFile(zip_path)
        cache["pid"] = pid
    f = io.BytesIO(cache["zip"].read(name))
    f.name = f"{zip_path}:{name}"
    return f
