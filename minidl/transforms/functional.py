"""The stateless functions behind the transform classes (torchvision's ``transforms.functional``).

Use them when the parameters are yours to choose (``F.crop(img, top, left, h, w)``), e.g. to apply the *same*
random crop to an image and its segmentation mask: draw the parameters once with ``RandomCrop.get_params`` and
call ``F.crop`` on both.

Examples:
    >>> import numpy as np
    >>> from minidl.transforms import functional as F
    >>> F.crop(np.zeros((32, 32, 3), np.uint8), 4, 4, 24, 24).shape
    (24, 24, 3)
"""

from minidl.transforms.affine import affine, inverse_affine_matrix, perspective, rotate
from minidl.transforms.blur import gaussian_blur
from minidl.transforms.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    equalize,
    rgb_to_grayscale,
)
from minidl.transforms.convert import normalize, to_array, to_pil_image
from minidl.transforms.geometric import (
    center_crop,
    crop,
    hflip,
    pad,
    resize,
    resized_crop,
    vflip,
)
from minidl.transforms.noise import erase, lighting
from minidl.transforms.photometric import adjust_sharpness, autocontrast, invert, posterize, solarize
from minidl.transforms.tta import five_crop, ten_crop

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "adjust_sharpness",
    "affine",
    "autocontrast",
    "center_crop",
    "crop",
    "equalize",
    "erase",
    "five_crop",
    "gaussian_blur",
    "hflip",
    "inverse_affine_matrix",
    "invert",
    "lighting",
    "normalize",
    "pad",
    "perspective",
    "posterize",
    "resize",
    "resized_crop",
    "rgb_to_grayscale",
    "rotate",
    "solarize",
    "ten_crop",
    "to_array",
    "to_pil_image",
    "vflip",
]
