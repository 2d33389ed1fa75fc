"""See what an augmentation pipeline does: a PNG grid, one row per image (the original, then augmented versions).

Only pillow is needed. Float (C, H, W) outputs (after ToArray/Normalize) are shown as they are when they lie in
[0, 1], else min-max rescaled per tile; transforms that return several crops (FiveCrop, TenCrop) fill the row
with them.

Examples:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from minidl import transforms as T
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> save_augmentation_grid(images, T.RandomHorizontalFlip(), path, n_augmentations=3) == path
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from minidl import _random
from minidl._atomic import atomic_open
from minidl.backend import to_numpy
from minidl.nn._checks import check_int
from minidl.transforms._base import image_kind

__all__ = ["augmentation_grid", "render_cifar10_sample_grid", "save_augmentation_grid"]


def _to_rgb_tile(img: Any) -> Image.Image:
    """Any image kind (PIL, HWC uint8, CHW float) as an RGB PIL image for display."""
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    kind = image_kind("save_augmentation_grid", img, allow_float=True)
    if kind == "float":
        x = np.asarray(to_numpy(img), dtype=np.float64)
        if x.ndim != 3:
            raise ValueError(
                f"save_augmentation_grid: a transform returned a float array of shape {x.shape}; expected (C, H, W)"
            )
        if x.min() < 0 or x.max() > 1:  # e.g. after Normalize: stretch to [0, 1] for viewing
            x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
        img = np.rint(x.transpose(1, 2, 0) * 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise ValueError(f"save_augmentation_grid: cannot show an image with {img.shape[2]} channels")
    return Image.fromarray(np.ascontiguousarray(img)).convert("RGB")


def augmentation_grid(
    images: Sequence[Any] | np.ndarray,
    transform: Callable[[Any], Any],
    n_augmentations: int = 8,
    seed: int = 0,
    scale: int = 1,
    padding: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """The grid as a PIL image (see :func:`save_augmentation_grid`)."""
    n_augmentations = check_int("save_augmentation_grid", "n_augmentations", n_augmentations, minimum=1)
    scale = check_int("save_augmentation_grid", "scale", scale, minimum=1)
    padding = check_int("save_augmentation_grid", "padding", padding, minimum=0)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError("save_augmentation_grid: expected a non-empty list of images or an (N, H, W, C) uint8 array")
    if not callable(transform):
        raise TypeError(f"save_augmentation_grid: transform must be callable, got {type(transform).__name__}")
    rows = []
    with _random.fork_rng(seed):  # transforms drawing from the global generator are reproducible here
        for img in images:
            row = [_to_rgb_tile(img)]
            for _ in range(n_augmentations):
                out = transform(img)
                row.extend(_to_rgb_tile(o) for o in (out if isinstance(out, (tuple, list)) else (out,)))
            rows.append(row)
    cell_w = max(t.width for row in rows for t in row) * scale
    cell_h = max(t.height for row in rows for t in row) * scale
    columns = max(len(row) for row in rows)
    grid = Image.new(
        "RGB", (columns * (cell_w + padding) + padding, len(rows) * (cell_h + padding) + padding), background
    )
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
            x = padding + c * (cell_w + padding) + (cell_w - tile.width) // 2
            y = padding + r * (cell_h + padding) + (cell_h - tile.height) // 2
            grid.paste(tile, (x, y))
    return grid


def save_augmentation_grid(
    images: Sequence[Any] | np.ndarray,
    transform: Callable[[Any], Any],
    path: str | os.PathLike,
    n_augmentations: int = 8,
    seed: int = 0,
    scale: int = 1,
    padding: int = 2,
) -> str:
    """Save a PNG grid: row i holds ``images[i]`` and ``n_augmentations`` outputs of ``transform`` on it.

    The file is written atomically by :func:`minidl._atomic.atomic_open` (a temporary file in the same folder, then
    ``os.replace``).

    Args:
        images: a list of PIL images / (H, W, C) uint8 arrays, or an (N, H, W, C) uint8 array.
        transform: the per-sample pipeline to show (its output may be an image, a (C, H, W) float array or a tuple
            of them).
        path: where to write the PNG.  n_augmentations: augmented versions per row. Default: 8.
        seed: seed of minidl's global generator while the grid is drawn (the previous state is restored;
            transforms with their own ``generator`` use it instead). Default: 0.
        scale: integer upscaling of each tile (nearest neighbour; 4 makes 32x32 CIFAR images visible). Default: 1.
        padding: pixels of white between tiles. Default: 2.

    Returns:
        ``str(path)``.
    """
    grid = augmentation_grid(images, transform, n_augmentations, seed, scale, padding)
    path = os.fspath(path)
    with atomic_open(path, "save_augmentation_grid") as f:
        grid.save(f, format="PNG")
    return path


def render_cifar10_sample_grid(path: str | os.PathLike, seed: int = 0) -> str:
    """Save the grid of a CIFAR-10 training recipe on four embedded sample images (how
    ``docs/img/augmentations.png`` is made: ``render_cifar10_sample_grid("docs/img/augmentations.png")``)."""
    from minidl import transforms as T
    from minidl.data.sample import load_cifar10_sample

    x_train, y_train, _, _, _ = load_cifar10_sample()
    picks = [int(np.flatnonzero(y_train == c)[0]) for c in (0, 1, 3, 7)]  # airplane, automobile, cat, horse
    recipe = T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.6, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
            T.RandomRotation(10),
            T.ToArray(),
            T.RandomErasing(p=0.3, scale=(0.02, 0.15)),
        ]
    )
    return save_augmentation_grid(x_train[picks], recipe, path, n_augmentations=8, seed=seed, scale=4)
