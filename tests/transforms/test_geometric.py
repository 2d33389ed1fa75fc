"""Flips, pads, crops and resizing, tested against their definitions (torchvision is not installed here)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

import minidl
from minidl import transforms as T
from minidl.transforms import functional as F
from tests.strategies import seeds

kinds = st.sampled_from(["array", "pil", "float"])


def make_image(seed: int, H: int, W: int, C: int, kind: str):
    """A random image of the given kind: uint8 (H, W, C), PIL (RGB or L) or float (C, H, W)."""
    a = np.random.default_rng(seed).integers(0, 256, (H, W, C), dtype=np.uint8)
    if kind == "array":
        return a
    if kind == "pil":
        return Image.fromarray(a[:, :, 0] if C == 1 else a)
    return a.transpose(2, 0, 1).astype(np.float64) / 255


def as_hwc(img) -> np.ndarray:
    """Any kind as an (H, W, C) array, for comparisons."""
    if isinstance(img, Image.Image):
        a = np.asarray(img)
        return a[:, :, None] if a.ndim == 2 else a
    if np.issubdtype(img.dtype, np.floating):
        return img.transpose(1, 2, 0)
    return img[:, :, None] if img.ndim == 2 else img


@given(seed=seeds, H=st.integers(1, 9), W=st.integers(1, 9), C=st.sampled_from([1, 3]), kind=kinds)
def test_flipping_twice_is_the_identity_and_flip_follows_the_definition(seed, H, W, C, kind):
    img = make_image(seed, H, W, C, kind)
    for flip, axis in ((F.hflip, 1), (F.vflip, 0)):
        once = flip(img)
        assert type(once) is type(img)
        np.testing.assert_array_equal(as_hwc(flip(once)), as_hwc(img))
        np.testing.assert_array_equal(as_hwc(once), np.flip(as_hwc(img), axis=axis))


def test_random_flips_respect_p_and_keep_the_kind():
    img = make_image(0, 5, 7, 3, "array")
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(img), img[:, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(img), img[::-1])
    assert T.RandomHorizontalFlip(p=0.0)(img) is img
    pil = Image.fromarray(img)
    assert isinstance(T.RandomHorizontalFlip(p=1.0)(pil), Image.Image)
    flips = [bool((T.RandomHorizontalFlip(0.3)(img) != img).any()) for _ in range(400)]
    assert 0.2 < np.mean(flips) < 0.4


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_probability_outside_unit_interval_is_rejected(p):
    for cls in (T.RandomHorizontalFlip, T.RandomVerticalFlip, T.RandomGrayscale, T.RandomErasing):
        with pytest.raises(ValueError, match=r"p must be"):
            cls(p=p)


def reference_pad(a: np.ndarray, left: int, top: int, right: int, bottom: int, mode: str, fill: int) -> np.ndarray:
    widths = ((top, bottom), (left, right), (0, 0))
    if mode == "constant":
        return np.pad(a, widths, mode="constant", constant_values=fill)
    return np.pad(a, widths, mode=mode)


@given(
    seed=seeds,
    H=st.integers(2, 8),
    W=st.integers(2, 8),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]),
    fill=st.integers(0, 255),
    kind=kinds,
)
def test_pad_matches_numpy_pad(seed, H, W, pads, mode, fill, kind):
    assume(mode != "reflect" or max(pads) < min(H, W))
    img = make_image(seed, H, W, 3, kind)
    value = fill / 255 if kind == "float" else fill
    out = F.pad(img, pads, fill=value, padding_mode=mode)
    expected = reference_pad(as_hwc(img), *pads, mode, value)
    np.testing.assert_array_equal(as_hwc(out), expected)


def test_pad_forms_and_per_channel_fill():
    img = np.zeros((2, 3, 3), np.uint8)
    assert F.pad(img, 1).shape == (4, 5, 3)
    assert F.pad(img, (1, 2)).shape == (6, 5, 3)  # (left/right, top/bottom)
    assert F.pad(img, (1, 2, 3, 4)).shape == (8, 7, 3)  # (left, top, right, bottom)
    out = F.pad(img, 1, fill=(10, 20, 30))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    with pytest.raises(ValueError, match="non-negative"):
        F.pad(img, -1)
    with pytest.raises(ValueError, match="padding_mode"):
        F.pad(img, 1, padding_mode="wrap")
    with pytest.raises(ValueError, match="fill has 2 values but the image has 3 channels"):
        F.pad(img, 1, fill=(1, 2))


@given(
    seed=seeds,
    H=st.integers(1, 10),
    W=st.integers(1, 10),
    OH=st.integers(1, 10),
    OW=st.integers(1, 10),
    padding=st.integers(0, 3),
    mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]),
    kind=kinds,
)
def test_random_crop_has_the_size_and_comes_from_the_padded_image(seed, H, W, OH, OW, padding, mode, kind):
    assume(OH <= H + 2 * padding and OW <= W + 2 * padding)
    assume(mode != "reflect" or padding < min(H, W))
    img = make_image(seed, H, W, 3, kind)
    out = T.RandomCrop((OH, OW), padding=padding, padding_mode=mode, fill=0, generator=np.random.default_rng(seed))(img)
    assert type(out) is type(img)
    got = as_hwc(out)
    assert got.shape[:2] == (OH, OW)
    padded = reference_pad(as_hwc(img), padding, padding, padding, padding, mode, 0)
    windows = sliding_window_view(padded, (OH, OW, 3)).reshape(-1, OH, OW, 3)
    assert (windows == got).reshape(len(windows), -1).all(axis=1).any(), "the crop is not a window of the padded image"


def test_random_crop_positions_cover_every_offset():
    rng = np.random.default_rng(0)
    img = np.arange(36, dtype=np.uint8).reshape(6, 6, 1)
    seen = {int(T.RandomCrop(4, generator=rng)(img)[0, 0, 0]) for _ in range(300)}
    assert seen == {i * 6 + j for i in range(3) for j in range(3)}


def test_random_crop_pad_if_needed_and_too_large_crop():
    img = np.zeros((5, 6, 3), np.uint8)
    assert T.RandomCrop((8, 9), pad_if_needed=True)(img).shape == (8, 9, 3)
    with pytest.raises(ValueError, match=r"RandomCrop: the crop size \(8, 9\) is larger than .*\(5, 6\)"):
        T.RandomCrop((8, 9))(img)
    with pytest.raises(ValueError, match="size must be >= 1"):
        T.RandomCrop(-3)
    with pytest.raises(TypeError, match="size must be an int or a pair"):
        T.RandomCrop("32")


def test_crop_and_center_crop_follow_the_definition():
    img = make_image(1, 9, 8, 3, "array")
    np.testing.assert_array_equal(F.crop(img, 2, 3, 4, 5), img[2:6, 3:8])
    np.testing.assert_array_equal(F.center_crop(img, (5, 4)), img[2:7, 2:6])  # top = round(4 / 2), left = 2
    outside = F.crop(img, -1, -2, 3, 3)  # out of bounds: zeros, as PIL does
    np.testing.assert_array_equal(outside[1:, 2:], img[:2, :1])
    assert (outside[0] == 0).all()
    np.testing.assert_array_equal(np.asarray(F.crop(Image.fromarray(img), -1, -2, 3, 3)), outside)
    big = F.center_crop(img, (11, 10))  # larger than the image: zero-padded around it
    assert big.shape == (11, 10, 3)
    np.testing.assert_array_equal(big[1:10, 1:9], img)
    assert T.CenterCrop(4)(make_image(0, 9, 8, 3, "float")).shape == (3, 4, 4)


@given(H=st.integers(4, 40), W=st.integers(4, 40), size=st.integers(1, 20), kind=st.sampled_from(["array", "pil"]))
def test_resize_int_matches_the_shorter_side(H, W, size, kind):
    img = make_image(0, H, W, 3, kind)
    out = as_hwc(T.Resize(size)(img))
    if W <= H:
        assert out.shape[:2] == (int(size * H / W), size)
    else:
        assert out.shape[:2] == (size, int(size * W / H))
    assert as_hwc(T.Resize((size, size + 1))(img)).shape[:2] == (size, size + 1)


def test_resize_array_and_pil_agree_and_constant_stays_constant():
    a = make_image(3, 17, 23, 3, "array")
    for interp in ("nearest", "bilinear", "bicubic"):
        np.testing.assert_array_equal(
            F.resize(a, (9, 31), interp), np.asarray(F.resize(Image.fromarray(a), (9, 31), interp))
        )
    const = np.full((10, 14, 2), 77, np.uint8)  # 2 channels have no PIL mode: resampled channel by channel
    assert (F.resize(const, 5) == 77).all() and F.resize(const, 5).shape == (5, 7, 2)
    assert F.resize(a, 8, max_size=9).shape[:2] == (7, 9)  # int(8 * 23 / 17) = 10 > 9: long side capped
    with pytest.raises(TypeError, match="apply this transform before ToArray"):
        F.resize(a.astype(np.float32), 5)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        T.Resize(5, interpolation="cubic-ish")


@given(
    seed=seeds,
    H=st.integers(1, 40),
    W=st.integers(1, 40),
    scale=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    ratio=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)).map(sorted),
)
def test_random_resized_crop_box_lies_inside_and_output_has_the_size(seed, H, W, scale, ratio):
    img = make_image(seed, H, W, 3, "array")
    rng = np.random.default_rng(seed)
    top, left, h, w = T.RandomResizedCrop.get_params(img, scale, ratio, rng)
    assert 0 <= top and 0 <= left and 1 <= h and 1 <= w and top + h <= H and left + w <= W
    out = T.RandomResizedCrop((7, 5), scale=tuple(scale), ratio=tuple(ratio), generator=rng)(img)
    assert out.shape == (7, 5, 3)


def test_random_resized_crop_fallback_is_the_central_crop():
    img = np.zeros((10, 100, 3), np.uint8)  # aspect 10 > 4/3 and scale too large: no attempt fits
    box = T.RandomResizedCrop.get_params(img, (0.9, 1.0), (0.75, 4 / 3), np.random.default_rng(0))
    assert box == (0, (100 - 13) // 2, 10, 13)
    with pytest.raises(ValueError, match="min <= max"):
        T.RandomResizedCrop(8, scale=(0.9, 0.1))


def test_five_and_ten_crop_views():
    img = make_image(2, 7, 9, 3, "array")
    tl, tr, bl, br, center = T.FiveCrop((3, 4))(img)
    np.testing.assert_array_equal(tl, img[:3, :4])
    np.testing.assert_array_equal(tr, img[:3, 5:])
    np.testing.assert_array_equal(bl, img[4:, :4])
    np.testing.assert_array_equal(br, img[4:, 5:])
    np.testing.assert_array_equal(center, img[2:5, 2:6])
    views = T.TenCrop(4)(img)
    assert len(views) == 10 and all(v.shape == (4, 4, 3) for v in views)
    for v, w in zip(views[5:], F.five_crop(img[:, ::-1], 4), strict=True):
        np.testing.assert_array_equal(v, w)
    vviews = T.TenCrop(4, vertical_flip=True)(Image.fromarray(img))
    np.testing.assert_array_equal(np.asarray(vviews[5]), img[::-1][:4, :4])
    batch = np.zeros((2, 3, 8, 8), np.float32)  # float arrays of any leading shape work too
    assert all(v.shape == (2, 3, 5, 5) for v in F.ten_crop(batch, 5))
    with pytest.raises(ValueError, match=r"five_crop: the crop size \(8, 8\) is larger than the image size"):
        T.FiveCrop(8)(img)


@given(seed=seeds)
def test_same_generator_seed_gives_the_same_output(seed):
    img = make_image(seed, 20, 24, 3, "array")
    for make in (
        lambda g: T.RandomCrop(16, padding=2, generator=g),
        lambda g: T.RandomResizedCrop(12, generator=g),
        lambda g: T.RandomHorizontalFlip(generator=g),
    ):
        a = [make(np.random.default_rng(seed))(img) for _ in range(2)]
        np.testing.assert_array_equal(a[0], a[1])


def test_global_seed_makes_transforms_without_generator_reproducible():
    img = make_image(0, 20, 24, 3, "array")
    t = T.Compose([T.RandomResizedCrop(12), T.RandomHorizontalFlip()])
    minidl.manual_seed(5)
    first = [t(img) for _ in range(3)]
    minidl.manual_seed(5)
    second = [t(img) for _ in range(3)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_images_are_rejected_with_clear_messages():
    with pytest.raises(TypeError, match="expected a PIL image or an \\(H, W, C\\) uint8 array"):
        T.RandomCrop(2)([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="looks channels-first"):
        F.hflip(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="a floating array is read as \\(C, H, W\\)"):
        F.hflip(np.zeros((4, 4), np.float32))
    with pytest.raises(TypeError, match="generator must be a numpy.random.Generator"):
        T.RandomCrop(2, generator=0)


@pytest.mark.parametrize("fill", [300, -1, 0.5, (10, 20, 300)])
def test_an_8_bit_image_refuses_a_fill_it_cannot_hold(fill):
    # a cast wrapped 300 to 44 and -1 to 255, and truncated 0.5 to 0
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"pad: an 8-bit image needs fill values that are integers in \[0, 255\]"):
        T.Pad(1, fill=fill)(img)
    with pytest.raises(ValueError, match=r"an 8-bit image needs fill values that are integers in \[0, 255\]"):
        T.Pad(1, fill=fill)(Image.fromarray(img))
    with pytest.raises(ValueError, match=r"an 8-bit image needs fill values that are integers in \[0, 255\]"):
        T.RandomRotation(10, fill=fill)(Image.fromarray(img))
    assert T.Pad(1, fill=0.5)(np.zeros((3, 4, 4), np.float32))[0, 0, 0] == 0.5  # a float image takes any value


def test_random_grayscale_keeps_an_alpha_channel():
    rgba = np.random.default_rng(0).integers(0, 256, (6, 6, 4), dtype=np.uint8)
    out = T.RandomGrayscale(p=1.0)(rgba)
    assert out.shape == (6, 6, 4) and (out[:, :, 3] == rgba[:, :, 3]).all()
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()
    pil = T.RandomGrayscale(p=1.0)(Image.fromarray(rgba, "RGBA"))
    assert pil.mode == "RGBA" and (np.asarray(pil) == out).all()


def test_antialias_as_torchvision_takes_it():
    img = np.zeros((40, 30, 3), np.uint8)
    assert T.RandomResizedCrop(24, antialias=True)(img).shape == (24, 24, 3)
    assert T.Resize(16, antialias=None)(img).shape == (21, 16, 3)
    with pytest.raises(
        ValueError, match="RandomResizedCrop: antialias=False is not available: minidl resizes with PIL"
    ):
        T.RandomResizedCrop(24, antialias=False)
    with pytest.raises(TypeError, match="Resize: antialias must be True, False or None, got 'yes'"):
        T.Resize(16, antialias="yes")
