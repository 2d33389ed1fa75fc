"""Data augmentation and preprocessing with torchvision's names and semantics.

Per-sample transforms take a PIL image or an (H, W, C) uint8 array and return the same kind; ``ToArray`` turns it
into the (C, H, W) float32 array in [0, 1] the layers take; a few transforms work on that array (``Normalize``,
``RandomErasing``, ``GaussianNoise``, ``Lighting``, the fitted ``FeaturewiseStandardize`` and ``ZCAWhitening``), and
``GaussianBlur``, ``GridMask`` and ``HideAndSeek`` take either. ``AutoAugment``, ``RandAugment`` and
``TrivialAugmentWide`` apply operations drawn from torchvision's tables (see ``docs/augmentation.md``).
``Mixup``, ``CutMix`` and ``Mosaic`` act on a whole batch and return soft targets; ``RandomTranslate`` and
``AlternatingFlip`` augment a whole (N, C, H, W) batch at once. Random transforms draw from their
``generator`` argument, or from ``minidl.default_generator()`` at call time, so ``minidl.manual_seed`` makes them
reproducible.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> from minidl import transforms as T
    >>> _ = minidl.manual_seed(0)
    >>> train_tf = T.Compose([
    ...     T.RandomCrop(32, padding=4, padding_mode="reflect"),
    ...     T.RandomHorizontalFlip(),
    ...     T.ColorJitter(brightness=0.2, contrast=0.2),
    ...     T.ToArray(),
    ...     T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ...     T.RandomErasing(p=0.25),
    ... ])
    >>> x = train_tf(np.zeros((32, 32, 3), np.uint8))
    >>> x.shape, x.dtype
    ((3, 32, 32), dtype('float32'))
"""

from minidl.transforms import functional
from minidl.transforms._base import InterpolationMode, RandomTransform, Transform
from minidl.transforms.affine import RandomAffine, RandomPerspective, RandomRotation
from minidl.transforms.batch import CutMix, Mixup, Mosaic
from minidl.transforms.batch_geometric import AlternatingFlip, RandomTranslate, translate
from minidl.transforms.blur import GaussianBlur
from minidl.transforms.color import (
    ColorJitter,
    Equalize,
    Grayscale,
    RandomEqualize,
    RandomGrayscale,
)
from minidl.transforms.convert import (
    Compose,
    Lambda,
    Normalize,
    RandomApply,
    RandomChoice,
    ToArray,
    ToPILImage,
)
from minidl.transforms.fitted import FeaturewiseStandardize, ZCAWhitening, fit_pca_lighting
from minidl.transforms.geometric import (
    CenterCrop,
    Pad,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomVerticalFlip,
    Resize,
)
from minidl.transforms.noise import IMAGENET_EIGVAL, IMAGENET_EIGVEC, GaussianNoise, Lighting, RandomErasing
from minidl.transforms.occlusion import GridMask, HideAndSeek
from minidl.transforms.photometric import (
    RandomAdjustSharpness,
    RandomAutocontrast,
    RandomInvert,
    RandomPosterize,
    RandomSolarize,
)
from minidl.transforms.policy import AutoAugment, AutoAugmentPolicy, RandAugment, TrivialAugmentWide
from minidl.transforms.tta import FiveCrop, TenCrop, tta_predict, tta_views
from minidl.transforms.visualize import augmentation_grid, save_augmentation_grid

__all__ = [
    "AlternatingFlip",
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "AutoAugment",
    "AutoAugmentPolicy",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "CutMix",
    "Equalize",
    "FeaturewiseStandardize",
    "FiveCrop",
    "GaussianBlur",
    "GaussianNoise",
    "Grayscale",
    "GridMask",
    "HideAndSeek",
    "InterpolationMode",
    "Lambda",
    "Lighting",
    "Mixup",
    "Mosaic",
    "Normalize",
    "Pad",
    "RandAugment",
    "RandomAdjustSharpness",
    "RandomAffine",
    "RandomApply",
    "RandomAutocontrast",
    "RandomChoice",
    "RandomCrop",
    "RandomEqualize",
    "RandomErasing",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomInvert",
    "RandomPerspective",
    "RandomPosterize",
    "RandomResizedCrop",
    "RandomRotation",
    "RandomSolarize",
    "RandomTranslate",
    "RandomTransform",
    "RandomVerticalFlip",
    "Resize",
    "TenCrop",
    "ToArray",
    "ToPILImage",
    "Transform",
    "TrivialAugmentWide",
    "ZCAWhitening",
    "augmentation_grid",
    "fit_pca_lighting",
    "functional",
    "save_augmentation_grid",
    "translate",
    "tta_predict",
    "tta_views",
]
