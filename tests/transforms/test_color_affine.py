"""Colour transforms and affine warps, tested against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from minidl import transforms as T
from minidl.transforms import functional as F
from tests.strategies import seeds

sizes = st.integers(1, 12)


def rgb(seed: int, H: int = 9, W: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


@given(seed=seeds, H=sizes, W=sizes, as_pil=st.booleans())
def test_color_jitter_with_all_zeros_is_the_identity(seed, H, W, as_pil):
    img = rgb(seed, H, W)
    out = T.ColorJitter(0, 0, 0, 0)(Image.fromarray(img) if as_pil else img)
    assert isinstance(out, Image.Image) == as_pil
    np.testing.assert_array_equal(np.asarray(out), img)
    assert repr(T.ColorJitter()) == "ColorJitter(brightness=None, contrast=None, saturation=None, hue=None)"


@given(seed=seeds, H=sizes, W=sizes)
def test_grayscale_is_the_itu_r_601_2_luma(seed, H, W):
    img = rgb(seed, H, W)
    luma = img.astype(np.float64) @ np.array([299, 587, 114]) / 1000
    gray = T.Grayscale()(img)
    assert gray.shape == (H, W, 1) and gray.dtype == np.uint8
    assert np.abs(gray[:, :, 0] - luma).max() <= 1.0  # PIL rounds in fixed point
    three = T.Grayscale(num_output_channels=3)(Image.fromarray(img))
    assert three.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(three), np.repeat(gray, 3, axis=2))
    assert F.rgb_to_grayscale(gray[:, :, 0]).shape == (H, W)  # a 2-D image stays 2-D


def test_random_grayscale_keeps_the_channel_count():
    img = rgb(0)
    out = T.RandomGrayscale(p=1.0)(img)
    assert out.shape == img.shape
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()
    assert T.RandomGrayscale(p=1.0)(Image.fromarray(img).convert("L")).mode == "L"
    assert T.RandomGrayscale(p=0.0)(img) is img


@given(seed=seeds, factor=st.floats(0.0, 2.0))
def test_brightness_contrast_saturation_are_blends_with_a_degenerate_image(seed, factor):
    img = rgb(seed)
    x = img.astype(np.float64)
    gray = np.asarray(Image.fromarray(img).convert("L"), dtype=np.float64)[:, :, None]
    mean_gray = int(gray.mean() + 0.5)
    cases = (
        (F.adjust_brightness, 0.0),
        (F.adjust_contrast, float(mean_gray)),
        (F.adjust_saturation, gray),
    )
    for fn, degenerate in cases:
        expected = np.clip(factor * x + (1 - factor) * degenerate, 0, 255)
        # within one level (PIL rounds to uint8); 1e-9 for the float roundings of the expected value itself
        assert np.abs(fn(img, factor).astype(np.float64) - expected).max() <= 1.0 + 1e-9, fn.__name__
        np.testing.assert_array_equal(fn(img, 1.0), img)


def test_hue_shift_rotates_primary_colours():
    img = np.zeros((2, 3, 3), np.uint8)
    img[:, 0] = (255, 0, 0)
    img[:, 1] = (0, 255, 0)
    img[:, 2] = (0, 0, 255)
    shifted = F.adjust_hue(img, 1 / 3)  # red -> green -> blue -> red
    assert [int(np.argmax(shifted[0, j])) for j in range(3)] == [1, 2, 0]
    np.testing.assert_array_equal(F.adjust_hue(img, 0.0), img)
    gray = np.full((2, 2, 1), 100, np.uint8)  # no colour: unchanged
    np.testing.assert_array_equal(F.adjust_hue(gray, 0.3), gray)
    with pytest.raises(ValueError, match="hue_factor must be <= 0.5"):
        F.adjust_hue(img, 0.7)


def test_color_jitter_ranges_and_bad_arguments():
    assert T.ColorJitter(brightness=0.5).brightness == (0.5, 1.5)
    assert T.ColorJitter(contrast=2).contrast == (0.0, 3.0)
    assert T.ColorJitter(hue=0.2).hue == (-0.2, 0.2)
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        T.ColorJitter(brightness=-0.1)
    with pytest.raises(ValueError, match="hue values must satisfy -0.5 <= min <= max <= 0.5"):
        T.ColorJitter(hue=0.6)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        T.ColorJitter(brightness=0.5)(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="apply this transform before ToArray"):
        T.ColorJitter(brightness=0.5)(np.zeros((3, 4, 4), np.float32))


@given(seed=seeds)
def test_color_jitter_same_seed_same_output_and_changes_the_image(seed):
    img = rgb(seed)
    a, b = (T.ColorJitter(0.5, 0.5, 0.5, 0.2, generator=np.random.default_rng(seed))(img) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.uint8


def test_equalize_preserves_order_and_spreads_levels():
    rng = np.random.default_rng(0)
    img = rng.integers(100, 140, (32, 32, 3), dtype=np.uint8)  # a low-contrast image (PIL needs >= 256 pixels)
    for out in (T.Equalize()(img), np.asarray(T.Equalize()(Image.fromarray(img)))):
        for c in range(3):
            order = np.argsort(img[:, :, c], axis=None, kind="stable")
            assert (np.diff(out[:, :, c].ravel()[order].astype(int)) >= 0).all()  # monotone level mapping
            assert int(out[:, :, c].max()) - int(out[:, :, c].min()) > 200
    assert T.RandomEqualize(p=0.0)(img) is img


def test_rotate_by_90_degrees_is_rot90_and_fill_covers_corners():
    img = rgb(1, 6, 6)
    np.testing.assert_array_equal(F.rotate(img, 90), np.rot90(img))  # counter-clockwise
    out = F.rotate(rgb(1, 9, 9), 45, fill=(1, 2, 3))
    np.testing.assert_array_equal(out[0, 0], [1, 2, 3])
    assert F.rotate(img[:, :4], 90, expand=True).shape == (4, 6, 3)
    assert T.RandomRotation(0)(img) is not img
    np.testing.assert_array_equal(T.RandomRotation(0)(img), img)
    with pytest.raises(ValueError, match="degrees must be >= 0"):
        T.RandomRotation(-5)


@given(seed=seeds, tx=st.integers(-3, 3), ty=st.integers(-3, 3))
def test_affine_translation_moves_pixels(seed, tx, ty):
    img = rgb(seed, 8, 10)
    out = F.affine(img, angle=0.0, translate=(tx, ty), scale=1.0, shear=0.0)
    expected = np.zeros_like(img)
    H, W = img.shape[:2]
    expected[max(ty, 0) : H + min(ty, 0), max(tx, 0) : W + min(tx, 0)] = img[
        max(-ty, 0) : H - max(ty, 0), max(-tx, 0) : W - max(tx, 0)
    ]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.asarray(F.affine(Image.fromarray(img), 0.0, (tx, ty), 1.0, 0.0)), expected)


@given(
    angle=st.floats(-180, 180),
    scale=st.floats(0.5, 2.0),
    sx=st.floats(-40, 40),
    sy=st.floats(-40, 40),
    tx=st.floats(-5, 5),
    ty=st.floats(-5, 5),
)
def test_inverse_affine_matrix_inverts_the_forward_map(angle, scale, sx, sy, tx, ty):
    a, s1, s2 = math.radians(angle), math.radians(sx), math.radians(sy)
    R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    S = np.diag([scale, scale, 1.0])
    ShY = np.array([[1, 0, 0], [-math.tan(s2), 1, 0], [0, 0, 1]])  # torchvision: SHy(s) = [[1, 0], [-tan s, 1]]
    ShX = np.array([[1, -math.tan(s1), 0], [0, 1, 0], [0, 0, 1]])  # SHx(s) = [[1, -tan s], [0, 1]]
    C, T_ = np.eye(3), np.eye(3)
    C[:2, 2], T_[:2, 2] = (4.5, 3.0), (tx, ty)
    forward = T_ @ C @ R @ S @ ShY @ ShX @ np.linalg.inv(C)
    inverse = np.vstack(
        [np.reshape(F.inverse_affine_matrix((4.5, 3.0), angle, (tx, ty), scale, (sx, sy)), (2, 3)), [0, 0, 1]]
    )
    np.testing.assert_allclose(inverse @ forward, np.eye(3), atol=1e-9)


def test_random_affine_draws_within_ranges_and_keeps_size():
    rng = np.random.default_rng(0)
    for _ in range(50):
        angle, (tx, ty), scale, (shx, shy) = T.RandomAffine.get_params(
            (-10, 10), (0.1, 0.2), (0.8, 1.2), (-5, 5, -3, 3), (40, 30), rng
        )
        assert -10 <= angle <= 10 and abs(tx) <= 4 and abs(ty) <= 6 and 0.8 <= scale <= 1.2
        assert -5 <= shx <= 5 and -3 <= shy <= 3
    img = rgb(0, 30, 40)
    out = T.RandomAffine(20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, fill=(5, 6, 7))(img)
    assert out.shape == img.shape
    assert isinstance(T.RandomAffine(20)(Image.fromarray(img)), Image.Image)
    with pytest.raises(ValueError, match="translate must be <= 1.0"):
        T.RandomAffine(0, translate=(0.1, 1.5))
    with pytest.raises(ValueError, match="scale must be positive"):
        T.RandomAffine(0, scale=(0.0, 1.0))
