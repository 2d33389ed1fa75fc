r"""Batch-level geometric augmentation for data kept in memory as one (N, C, H, W) array: translate and flip.

When the whole training set fits in memory as a normalized float array (CIFAR-10: 50,000 x 3 x 32 x 32 float32,
614 MB), a batch is drawn by index and augmented as a whole, with a few array operations instead of one Python call
per image. airbench (Jordan 2024, arXiv 2404.00498) trains this way.

* ``RandomTranslate(pad)``: each image is shifted by its own random offset :math:`(d_y, d_x)`, each uniform in
  :math:`\{-p, \dots, p\}`, the border filled by padding (reflection by default):

  .. math:: \tilde x_{n,c,i,j} = \mathrm{pad}_p(x)_{n,\,c,\,i + p + d_{y,n},\,j + p + d_{x,n}}

  It is a random crop of size (H, W) of the image padded by p on each side (``RandomCrop(32, padding=p)``), done
  for the whole batch at once.
* ``AlternatingFlip``: the derandomized horizontal flip of airbench. Every image i of the data set gets one random
  bit :math:`b_i` (drawn once); in epoch e it is mirrored iff :math:`b_i \oplus (e \bmod 2)`. Each image is thus
  seen mirrored in exactly every other epoch, where independent coin flips would show it the same way in two
  consecutive epochs half of the time; airbench measures this as worth a few tenths of a percent at short training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.backend import get_array_module, to_numpy
from minidl.nn._checks import check_array, check_int
from minidl.transforms._base import RandomTransform

__all__ = ["AlternatingFlip", "RandomTranslate", "translate"]

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_mode(where: str, padding_mode: Any) -> str:
    if padding_mode not in _PAD_MODES:
        raise ValueError(f"{where}: padding_mode must be one of {tuple(_PAD_MODES)}, got {padding_mode!r}")
    return padding_mode


def translate(x: Any, dy: int, dx: int, padding_mode: str = "reflect") -> Any:
    """Shift a batch (N, C, H, W) by ``dy`` rows and ``dx`` columns, all images alike, filling from the padding.

    Output pixel (i, j) is input pixel (i + dy, j + dx) of the padded image: ``dy = dx = 1`` moves the content up and
    left by one pixel. airbench's test-time augmentation uses the shifts (-1, -1) and (1, 1) with reflection.

    Examples:
        >>> import numpy as np
        >>> x = np.arange(4.0).reshape(1, 1, 1, 4)
        >>> translate(x, 0, 1), translate(x, 0, -1)
        (array([[[[1., 2., 3., 2.]]]]), array([[[[1., 0., 1., 2.]]]]))
    """
    check_array("translate", x, ndim=4)
    mode = _PAD_MODES[_pad_mode("translate", padding_mode)]
    dy, dx = check_int("translate", "dy", dy, minimum=-(2**31)), check_int("translate", "dx", dx, minimum=-(2**31))
    H, W = x.shape[2:]
    if abs(dy) >= H or abs(dx) >= W:
        raise ValueError(f"translate: shift ({dy}, {dx}) too large for {H}x{W} images")
    py, px = abs(dy), abs(dx)
    padded = get_array_module(x).pad(x, ((0, 0), (0, 0), (py, py), (px, px)), mode=mode)
    return padded[:, :, py + dy : py + dy + H, px + dx : px + dx + W]


class RandomTranslate(RandomTransform):
    r"""Shift each image of a batch by its own random offset in {-pad, ..., pad}^2 (a random crop of the padded
    batch), vectorized over the batch.

    Args:
        pad: p, the largest shift in pixels (rows and columns drawn independently). Default: 2.
        padding_mode: ``"reflect"``, ``"constant"`` (zeros), ``"replicate"`` or ``"circular"`` (the names of
            ``torch.nn.functional.pad``). Default: ``"reflect"``.
        generator: a ``numpy.random.Generator``. Default: None (minidl's global generator at call time).

    Shape:
        - Input: (N, C, H, W) float, of any backend.  - Output: (N, C, H, W), a new array.

    Examples:
        >>> import numpy as np
        >>> t = RandomTranslate(pad=2, generator=np.random.default_rng(0))
        >>> x = np.random.default_rng(1).random((4, 3, 8, 8), dtype=np.float32)
        >>> y = t(x)
        >>> y.shape, y.dtype
        ((4, 3, 8, 8), dtype('float32'))
    """

    def __init__(self, pad: int = 2, padding_mode: str = "reflect", generator: Any = None) -> None:
        self.pad = check_int("RandomTranslate", "pad", pad, minimum=0)
        self.padding_mode = _pad_mode("RandomTranslate", padding_mode)
        self._set_generator(generator)

    def get_params(self, n: int, generator: np.random.Generator | None = None) -> np.ndarray:
        """The shifts: an (n, 2) int array of (dy, dx), each uniform in {-pad, ..., pad}."""
        rng = generator if generator is not None else self._rng()
        return rng.integers(-self.pad, self.pad + 1, size=(n, 2))

    def __call__(self, x: Any, shifts: Any = None) -> Any:
        """Translate the batch ``x``; ``shifts`` (N, 2) of (dy, dx) replaces the random draw when given."""
        where = "RandomTranslate"
        check_array(where, x, ndim=4)
        N, _, H, W = x.shape
        p = self.pad
        if self.padding_mode == "reflect" and (p >= H or p >= W):
            raise ValueError(f"{where}: reflect padding of {p} needs images larger than {p}x{p}, got {H}x{W}")
        shifts = self.get_params(N) if shifts is None else np.asarray(to_numpy(shifts))
        if shifts.shape != (N, 2) or not np.issubdtype(shifts.dtype, np.integer) or np.abs(shifts).max(initial=0) > p:
            raise ValueError(
                f"{where}: shifts must be an ({N}, 2) int array with values in [-{p}, {p}], got shape "
                f"{shifts.shape}, dtype {shifts.dtype}"
            )
        xp = get_array_module(x)
        padded = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=_PAD_MODES[self.padding_mode])
        out = xp.empty_like(x)
        # one slice copy per distinct shift ((2p + 1)^2 of them), each for all the images that drew it
        for dy, dx in {(int(a), int(b)) for a, b in shifts}:
            rows = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            index = xp.asarray(rows)
            out[index] = padded[index, :, p + dy : p + dy + H, p + dx : p + dx + W]
        return out

    def extra_repr(self) -> str:
        return f"pad={self.pad}, padding_mode={self.padding_mode!r}"


class AlternatingFlip(RandomTransform):
    r"""Derandomized horizontal flip: image i is mirrored in epoch e iff :math:`b_i \oplus (e \bmod 2)`.

    The bits :math:`b_i` (one per image of the data set, probability 1/2 each) are drawn once, when the object is
    made; call ``set_epoch(e)`` at the start of every epoch and pass each batch with the data-set indices of its
    images.

    Args:
        num_samples: the data set's size N (the number of bits).
        generator: a ``numpy.random.Generator`` for the bits. Default: None (minidl's global generator, now).

    Attributes:
        base: (num_samples,) bool array of the bits :math:`b_i`.  epoch: the current epoch (0 at first).

    Shape:
        - Input: x (B, C, H, W) float, indices (B,) ints in [0, N).  - Output: (B, C, H, W), a new array.

    Examples:
        >>> import numpy as np
        >>> flip = AlternatingFlip(4, generator=np.random.default_rng(0))
        >>> x = np.arange(2.0).reshape(1, 1, 1, 2).repeat(4, axis=0)
        >>> seen0 = flip(x, np.arange(4))[:, 0, 0, 0]
        >>> flip.set_epoch(1)
        >>> seen1 = flip(x, np.arange(4))[:, 0, 0, 0]
        >>> bool(np.all(seen0 != seen1))   # every image is shown the other way round in the next epoch
        True
    """

    def __init__(self, num_samples: int, generator: Any = None) -> None:
        self.num_samples = check_int("AlternatingFlip", "num_samples", num_samples, minimum=1)
        self._set_generator(generator)
        self.base = self._rng().random(self.num_samples) < 0.5
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch e; images are mirrored iff base xor (e odd)."""
        self.epoch = check_int("AlternatingFlip", "epoch", epoch, minimum=0)

    def flip_mask(self, indices: Any) -> np.ndarray:
        """The (B,) bool mask of the images mirrored in the current epoch."""
        where = "AlternatingFlip"
        indices = np.asarray(to_numpy(indices))
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"{where}: indices must be a 1-D int array, got shape {indices.shape}, {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise ValueError(
                f"{where}: indices must lie in [0, {self.num_samples - 1}], got values from {indices.min()} to "
                f"{indices.max()}"
            )
        return self.base[indices] ^ bool(self.epoch % 2)

    def __call__(self, x: Any, indices: Any) -> Any:
        check_array("AlternatingFlip", x, ndim=4)
        mask = self.flip_mask(indices)
        if mask.shape[0] != x.shape[0]:
            raise ValueError(
                f"AlternatingFlip: the batch has {x.shape[0]} images but {mask.shape[0]} indices were given"
            )
        xp = get_array_module(x)
        out = x.copy()
        rows = xp.asarray(np.flatnonzero(mask))
        out[rows] = x[rows][..., ::-1]
        return out

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, epoch={self.epoch}"
