"""Standard datasets, read from the official files with checksums: CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST, image
folders and Dogs vs. Cats. Each takes ``root`` (default ``$MINIDL_DATA_DIR`` or ``~/.cache/minidl/datasets``),
``transform`` and ``target_transform``; the split datasets take ``train`` and ``download``.
"""

from minidl.data.datasets._base import VisionDataset
from minidl.data.datasets.cifar import CIFAR10, CIFAR10Sample, RestrictedUnpickler, restricted_loads
from minidl.data.datasets.cifar100 import CIFAR100
from minidl.data.datasets.dogs_vs_cats import DogsVsCats
from minidl.data.datasets.folder import (
    IMG_EXTENSIONS,
    CorruptImageError,
    ImageFolder,
    UnsupportedImageError,
    find_classes,
    pil_loader,
)
from minidl.data.datasets.mnist import MNIST, FashionMNIST, read_idx

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "IMG_EXTENSIONS",
    "MNIST",
    "CIFAR10Sample",
    "CorruptImageError",
    "DogsVsCats",
    "FashionMNIST",
    "ImageFolder",
    "RestrictedUnpickler",
    "UnsupportedImageError",
    "VisionDataset",
    "find_classes",
    "pil_loader",
    "read_idx",
    "restricted_loads",
]
