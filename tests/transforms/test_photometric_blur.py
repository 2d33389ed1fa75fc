"""Sharpness, posterize, solarize, autocontrast, invert, Gaussian blur and perspective: against their definitions
(loop references), and against torchvision on PIL images when it is installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from minidl import transforms as T
from minidl.transforms import functional as F
from minidl.transforms.affine import perspective_coefficients
from minidl.transforms.blur import gaussian_kernel1d
from tests.strategies import seeds
from tests.transforms.torchvision_oracle import torchvision_or_skip

sizes = st.integers(3, 12)


def image(seed: int, H: int = 9, W: int = 11, C: int = 3) -> np.ndarray:
    shape = (H, W) if C == 0 else (H, W, C)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def as_kind(img: np.ndarray, as_pil: bool):
    return Image.fromarray(img) if as_pil else img


@given(seed=seeds, H=sizes, W=sizes, C=st.sampled_from([0, 1, 3]), as_pil=st.booleans(), bits=st.integers(0, 8))
def test_point_operations_are_their_lookup_tables(seed, H, W, C, as_pil, bits):
    img = image(seed, H, W, C)
    if as_pil and C == 1:
        img = img[:, :, 0]
    x = img.astype(np.int64)
    threshold = float(np.random.default_rng(seed).uniform(0, 256))
    cases = (
        (F.invert(as_kind(img, as_pil)), 255 - x),
        (F.posterize(as_kind(img, as_pil), bits), x & (256 - 2 ** (8 - bits))),
        (F.solarize(as_kind(img, as_pil), threshold), np.where(x < threshold, x, 255 - x)),
    )
    for out, expected in cases:
        assert isinstance(out, Image.Image) == as_pil
        assert np.asarray(out).shape == img.shape
        np.testing.assert_array_equal(np.asarray(out), expected)


@given(seed=seeds, H=sizes, W=sizes, as_pil=st.booleans())
def test_autocontrast_stretches_each_channel_to_the_full_range(seed, H, W, as_pil):
    rng = np.random.default_rng(seed)
    img = (rng.integers(40, 60, (H, W, 3)) * np.array([1, 2, 3])).astype(np.uint8)  # a different range per channel
    out = np.asarray(F.autocontrast(as_kind(img, as_pil)))
    for c in range(3):
        v = img[:, :, c].astype(np.float64)
        lo, hi = v.min(), v.max()
        if hi == lo:
            np.testing.assert_array_equal(out[:, :, c], img[:, :, c])
            continue
        scale = 255.0 / (hi - lo)
        expected = np.clip(np.floor(v * scale - lo * scale), 0, 255)  # PIL's table: int(ix * scale + offset)
        np.testing.assert_array_equal(out[:, :, c], expected)
        # the brightest level maps to int(hi * scale - lo * scale), which float rounding can leave at 254
        assert out[:, :, c].min() == 0 and out[:, :, c].max() in (254, 255)
    constant = np.full((4, 4, 3), 77, np.uint8)
    np.testing.assert_array_equal(F.autocontrast(constant), constant)


def smooth_reference(img: np.ndarray) -> np.ndarray:
    """PIL's SMOOTH filter: [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 on the interior, the border pixels kept."""
    x = img.astype(np.float64)
    out = x.copy()
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0
    for i in range(1, img.shape[0] - 1):
        for j in range(1, img.shape[1] - 1):
            out[i, j] = np.tensordot(kernel, x[i - 1 : i + 2, j - 1 : j + 2], axes=([0, 1], [0, 1]))
    return out


@given(seed=seeds, H=sizes, W=sizes, factor=st.floats(0.0, 2.0))
def test_sharpness_blends_with_the_smoothed_image(seed, H, W, factor):
    img = image(seed, H, W)
    expected = np.clip(factor * img + (1 - factor) * np.round(smooth_reference(img)), 0, 255)
    out = F.adjust_sharpness(img, factor)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out - expected).max() <= 1.0  # PIL rounds the smoothing and the blend in fixed point
    np.testing.assert_array_equal(F.adjust_sharpness(img, 1.0), img)
    np.testing.assert_array_equal(np.asarray(F.adjust_sharpness(Image.fromarray(img), factor)), out)


def blur_reference(x: np.ndarray, kernel_size: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Direct 2-D correlation of a (C, H, W) float64 array with the outer-product kernel, reflect-padded."""
    kx, ky = kernel_size
    k2 = np.outer(gaussian_kernel1d(ky, sigma[1]), gaussian_kernel1d(kx, sigma[0]))
    padded = np.pad(x, ((0, 0), (ky // 2, ky // 2), (kx // 2, kx // 2)), mode="reflect")
    out = np.zeros_like(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[:, i, j] = (padded[:, i : i + ky, j : j + kx] * k2).sum(axis=(1, 2))
    return out


@given(
    seed=seeds,
    H=sizes,
    W=sizes,
    kx=st.sampled_from([1, 3, 5]),
    ky=st.sampled_from([1, 3, 5]),
    sx=st.floats(0.2, 3.0),
    sy=st.floats(0.2, 3.0),
)
def test_gaussian_blur_is_the_reflect_padded_correlation(seed, H, W, kx, ky, sx, sy):
    x = np.random.default_rng(seed).random((2, H, W))
    np.testing.assert_allclose(
        F.gaussian_blur(x, (kx, ky), (sx, sy)), blur_reference(x, (kx, ky), (sx, sy)), atol=1e-12
    )
    img = image(seed, H, W)
    expected = blur_reference(img.transpose(2, 0, 1).astype(np.float64), (kx, ky), (sx, sy)).transpose(1, 2, 0)
    out = F.gaussian_blur(img, (kx, ky), (sx, sy))
    assert out.dtype == np.uint8 and np.abs(out - np.round(expected)).max() <= 1  # float32 passes, then rounding
    pil = F.gaussian_blur(Image.fromarray(img), (kx, ky), (sx, sy))
    assert pil.mode == "RGB" and np.array_equal(np.asarray(pil), out)


def test_gaussian_kernel_and_blur_class():
    for k, s in ((1, 1.0), (3, 0.5), (7, 2.0)):
        g = gaussian_kernel1d(k, s)
        assert g.sum() == pytest.approx(1.0) and np.allclose(g, g[::-1]) and g.argmax() == k // 2
    img = image(0)
    np.testing.assert_array_equal(T.GaussianBlur(3, sigma=0.01)(img), img)  # the side taps are exp(-5000) ~ 0
    blur = T.GaussianBlur(5, sigma=(0.5, 1.5), generator=np.random.default_rng(3))
    sigma = T.GaussianBlur.get_params(0.5, 1.5, np.random.default_rng(3))
    assert 0.5 <= sigma <= 1.5
    np.testing.assert_array_equal(blur(img), F.gaussian_blur(img, 5, sigma))
    assert repr(T.GaussianBlur((3, 5), 1.0)) == "GaussianBlur(kernel_size=(3, 5), sigma=(1.0, 1.0))"
    x = np.ones((1, 3, 8, 8), np.float32)
    out = T.GaussianBlur(3)(x)
    assert out.dtype == np.float32 and out.shape == x.shape and np.allclose(out, 1.0)


def test_blur_and_point_errors():
    img = image(0, 4, 4)
    with pytest.raises(ValueError, match=r"gaussian_blur: kernel_size must hold odd positive ints, got \(4, 4\)"):
        F.gaussian_blur(img, 4)
    with pytest.raises(ValueError, match=r"GaussianBlur: sigma must be positive: 0 < min <= max, got \(0, 1\)"):
        T.GaussianBlur(3, sigma=(0, 1))
    with pytest.raises(TypeError, match="GaussianBlur: sigma must be a positive number or a .min, max. pair, got 'a'"):
        T.GaussianBlur(3, sigma="a")
    with pytest.raises(ValueError, match=r"kernel_size \(9, 9\) for an image of H x W = 4 x 4"):
        F.gaussian_blur(img, 9, 1.0)
    with pytest.raises(ValueError, match=r"posterize: bits must be an int in \[0, 8\], got 9"):
        F.posterize(img, 9)
    with pytest.raises(ValueError, match="RandomPosterize: bits must be an int in"):
        T.RandomPosterize(bits=2.5)
    with pytest.raises(ValueError, match="solarize: expected a PIL image of mode L, RGB or RGBA, got mode 'P'"):
        F.solarize(Image.fromarray(img).convert("P"), 128)
    with pytest.raises(TypeError, match="adjust_sharpness: expected a PIL image or an"):
        F.adjust_sharpness(img.astype(np.float32), 2.0)
    with pytest.raises(ValueError, match="adjust_sharpness: sharpness_factor"):
        F.adjust_sharpness(img, -1.0)


def test_random_point_transforms_apply_with_probability_p():
    img = image(1)
    rgba = Image.fromarray(np.dstack([img, np.full(img.shape[:2], 99, np.uint8)]), mode="RGBA")
    cases = (
        (T.RandomAdjustSharpness, (2.0,), lambda im: F.adjust_sharpness(im, 2.0)),
        (T.RandomPosterize, (3,), lambda im: F.posterize(im, 3)),
        (T.RandomSolarize, (100,), lambda im: F.solarize(im, 100)),
        (T.RandomAutocontrast, (), F.autocontrast),
        (T.RandomInvert, (), F.invert),
    )
    for cls, args, fn in cases:
        assert cls(*args, p=0.0)(img) is img
        np.testing.assert_array_equal(cls(*args, p=1.0)(img), fn(img))
        out = cls(*args, p=1.0)(rgba)
        assert out.mode == "RGBA" and (np.asarray(out)[:, :, 3] == 99).all()  # alpha kept
        seeded = [cls(*args, p=0.5, generator=np.random.default_rng(7))(img) for _ in range(2)]
        np.testing.assert_array_equal(seeded[0], seeded[1])
    assert repr(T.RandomPosterize(3)) == "RandomPosterize(bits=3, p=0.5)"


# ------------------------------------------------------------------------------------------------ perspective
def test_perspective_identity_shift_and_coefficients():
    img = image(2, 10, 12)
    corners = [[0, 0], [11, 0], [11, 9], [0, 9]]
    np.testing.assert_array_equal(F.perspective(img, corners, corners, "nearest"), img)
    shifted = [[x + 2, y + 1] for x, y in corners]  # the input's corners land 2 right and 1 down
    out = F.perspective(img, corners, shifted, "nearest", fill=(7, 8, 9))
    np.testing.assert_array_equal(out[1:, 2:], img[:-1, :-2])
    assert (out[0] == (7, 8, 9)).all() and (out[:, :2] == (7, 8, 9)).all()
    rng = np.random.default_rng(0)
    ends = [[x + rng.uniform(-2, 2), y + rng.uniform(-2, 2)] for x, y in corners]
    a, b, c, d, e, f, g, h = perspective_coefficients(corners, ends)
    for (u, v), (x, y) in zip(corners, ends, strict=True):  # each endpoint maps back to its startpoint
        w = g * x + h * y + 1
        assert (a * x + b * y + c) / w == pytest.approx(u, abs=1e-4)
        assert (d * x + e * y + f) / w == pytest.approx(v, abs=1e-4)
    with pytest.raises(ValueError, match="perspective: the corners .* define no perspective map"):
        F.perspective(img, corners, [[0, 0], [1, 1], [2, 2], [3, 3]])
    with pytest.raises(ValueError, match="perspective: endpoints must be four"):
        F.perspective(img, corners, corners[:3])


@given(seed=seeds, W=st.integers(2, 40), H=st.integers(2, 40), scale=st.floats(0.0, 1.0))
def test_random_perspective_corners_stay_in_their_ranges(seed, W, H, scale):
    start, end = T.RandomPerspective.get_params(W, H, scale, np.random.default_rng(seed))
    assert start == [[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]]
    dx, dy = int(scale * (W // 2)), int(scale * (H // 2))
    (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = end
    assert 0 <= tlx <= dx and 0 <= tly <= dy and W - 1 - dx <= trx <= W - 1 and 0 <= try_ <= dy
    assert W - 1 - dx <= brx <= W - 1 and H - 1 - dy <= bry <= H - 1 and 0 <= blx <= dx and H - 1 - dy <= bly <= H - 1


def test_random_perspective_probability_and_identity():
    img = image(3, 16, 16)
    assert T.RandomPerspective(p=0.0)(img) is img
    np.testing.assert_array_equal(T.RandomPerspective(0.0, p=1.0)(img), img)  # no distortion: the identity
    pil = T.RandomPerspective(0.5, p=1.0, generator=np.random.default_rng(0))(Image.fromarray(img))
    rng = np.random.default_rng(0)
    rng.random()
    start, end = T.RandomPerspective.get_params(16, 16, 0.5, rng)
    np.testing.assert_array_equal(np.asarray(pil), F.perspective(img, start, end))
    with pytest.raises(ValueError, match="RandomPerspective: distortion_scale"):
        T.RandomPerspective(1.5)


# ------------------------------------------------------------------------------------------------ torchvision
def test_functionals_match_torchvision_on_pil_images():
    torchvision_or_skip()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(0)
    for mode, shape in (("RGB", (23, 29, 3)), ("L", (17, 13))):
        pil = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
        W, H = pil.size

        def same(ours, theirs, tol=0, what="", mode=mode):
            diff = np.abs(np.asarray(ours, np.int64) - np.asarray(theirs, np.int64)).max()
            assert ours.mode == theirs.mode and diff <= tol, f"{what} on {mode}: max difference {diff}"

        for k, s in ((3, 0.5), (5, 1.3), ((3, 7), (0.8, 2.0)), (9, 3.0), (5, None)):
            tk = list(k) if isinstance(k, tuple) else k
            ts = list(s) if isinstance(s, tuple) else s
            same(F.gaussian_blur(pil, k, s), TF.gaussian_blur(pil, tk, ts), 1, f"gaussian_blur {k} {s}")
        start = [[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]]
        end = [[3, 2], [W - 4, 1], [W - 2, H - 3], [1, H - 4]]
        same(F.perspective(pil, start, end), TF.perspective(pil, start, end), 0, "perspective")
        fill = [10, 20, 30] if mode == "RGB" else [40]
        same(
            F.perspective(pil, start, end, "nearest", fill),
            TF.perspective(pil, start, end, InterpolationMode.NEAREST, fill),
            0,
            "perspective nearest",
        )
        for factor in (0.0, 0.5, 1.0, 2.0):
            same(F.adjust_sharpness(pil, factor), TF.adjust_sharpness(pil, factor), 0, f"adjust_sharpness {factor}")
        for bits in range(1, 9):  # PIL (and so torchvision) refuses bits=0
            same(F.posterize(pil, bits), TF.posterize(pil, bits), 0, f"posterize {bits}")
        for threshold in (0, 64.5, 128, 255, 256):
            same(F.solarize(pil, threshold), TF.solarize(pil, threshold), 0, f"solarize {threshold}")
        same(F.autocontrast(pil), TF.autocontrast(pil), 0, "autocontrast")
        same(F.equalize(pil), TF.equalize(pil), 0, "equalize")
        same(F.invert(pil), TF.invert(pil), 0, "invert")
