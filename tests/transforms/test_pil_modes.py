"""Every per-sample transform on a PIL image of every mode Pillow has: it keeps the values (geometric transforms keep
the mode, 16-bit stays 16-bit) or refuses with a message naming the function and the mode. No colour transform may
clip a 16- or 32-bit image to 0..255 silently."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl import transforms as T

H, W = 8, 9
_HIGH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def _source(mode: str) -> Image.Image:
    if mode == "F":
        return Image.fromarray(np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W), mode="F")
    if mode in _HIGH:
        img = Image.new(mode, (W, H))
        img.putdata(np.linspace(0, 65535, H * W).round().astype(int).tolist())
        return img
    i, j = np.mgrid[0:H, 0:W]
    rgb = np.stack([i * 255 // (H - 1), j * 255 // (W - 1), (i + j) * 255 // (H + W - 2)], axis=2).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB").convert(mode)


_GEOMETRIC = {
    "Resize": lambda: T.Resize(5),
    "CenterCrop": lambda: T.CenterCrop(5),
    "RandomCrop": lambda: T.RandomCrop(6, padding=2, padding_mode="edge"),
    "Pad": lambda: T.Pad(1, fill=0),
    "RandomHorizontalFlip": lambda: T.RandomHorizontalFlip(1.0),
    "RandomRotation": lambda: T.RandomRotation(20),
    "RandomResizedCrop": lambda: T.RandomResizedCrop(5, scale=(0.5, 1.0)),
    "RandomAffine": lambda: T.RandomAffine(10, translate=(0.1, 0.1)),
    "RandomPerspective": lambda: T.RandomPerspective(0.3, p=1.0),
}
_COLOUR = {
    "ColorJitter": lambda: T.ColorJitter(0.4, 0.4, 0.4, 0.1),
    "Grayscale": lambda: T.Grayscale(3),
    "RandomGrayscale": lambda: T.RandomGrayscale(1.0),
    "RandomEqualize": lambda: T.RandomEqualize(1.0),
    "GaussianBlur": lambda: T.GaussianBlur(3, 1.0),
    "RandomAdjustSharpness": lambda: T.RandomAdjustSharpness(2.0, p=1.0),
    "RandomPosterize": lambda: T.RandomPosterize(3, p=1.0),
    "RandomSolarize": lambda: T.RandomSolarize(100, p=1.0),
    "RandomAutocontrast": lambda: T.RandomAutocontrast(p=1.0),
    "RandomInvert": lambda: T.RandomInvert(p=1.0),
    "AutoAugment": lambda: T.AutoAugment(),
    "RandAugment": lambda: T.RandAugment(),
    "TrivialAugmentWide": lambda: T.TrivialAugmentWide(),
    "GridMask": lambda: T.GridMask((3, 4), p=1.0),
    "HideAndSeek": lambda: T.HideAndSeek((3,), hide_prob=0.5),
}


@pytest.mark.parametrize("name", sorted(_GEOMETRIC))
@pytest.mark.parametrize("mode", Image.MODES)
def test_geometric_transforms_keep_the_mode_and_the_value_range(mode, name):
    minidl.manual_seed(0)
    src = _source(mode)
    out = _GEOMETRIC[name]()(src)
    assert out.mode == mode
    got, values = np.asarray(out), np.asarray(src)
    assert got.dtype == values.dtype
    if mode in _HIGH:  # not squeezed into 8 bits
        assert got.max() > 1 if mode != "F" else 0 < got.max() <= 1
        assert got.max() <= _HIGH[mode] and got.min() >= 0


@pytest.mark.parametrize("name", sorted(_COLOUR))
@pytest.mark.parametrize("mode", Image.MODES)
def test_colour_transforms_adjust_8_bit_images_or_refuse_by_name(mode, name):
    minidl.manual_seed(0)
    src = _source(mode)
    try:
        out = _COLOUR[name]()(src)
    except (TypeError, ValueError) as err:
        message = str(err)
        assert mode not in ("L", "RGB", "RGBA"), f"{name} refused a {mode} image: {message}"
        assert f"mode {mode!r}" in message or f"mode '{mode}'" in message, message
        function = message.split(":", 1)[0]
        assert function in {name, "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
                            "rgb_to_grayscale", "equalize", "gaussian_blur", "adjust_sharpness", "posterize",
                            "solarize", "autocontrast", "invert"}, message  # fmt: skip
        if mode in _HIGH:
            assert isinstance(err, TypeError) and "expected an 8-bit image" in message
        return
    assert mode not in _HIGH, f"{name} accepted a {mode} image: PIL clips it to 0..255"
    got = np.asarray(out)
    assert got.dtype == np.uint8 and got.min() < got.max()


def test_to_array_keeps_16_and_32_bit_values_as_torchvision_does():
    for mode, top in _HIGH.items():
        x = T.ToArray()(_source(mode))
        assert x.shape == (1, H, W) and x.dtype == np.float32
        assert x.min() == 0 and x.max() == pytest.approx(top)
