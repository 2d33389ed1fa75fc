"""GridMask and Hide-and-Seek, tested by their properties: hidden fraction, grid period, fill value, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import minidl
from minidl import transforms as T
from minidl.transforms.occlusion import apply_mask
from tests.strategies import seeds


@given(seed=seeds, d=st.integers(2, 8), units=st.tuples(st.integers(1, 4), st.integers(1, 4)), ratio=st.floats(0, 1))
def test_gridmask_hides_a_periodic_grid_of_squares(seed, d, units, ratio):
    H, W = units[0] * d, units[1] * d
    hide = T.GridMask.get_params(H, W, (d, d), ratio, 1, np.random.default_rng(seed))
    kept = math.ceil(d * ratio)
    assert hide.shape == (H, W) and hide.dtype == bool
    assert hide.sum() == (units[0] * (d - kept)) * (units[1] * (d - kept))  # exactly (1 - l/d)^2 of the image
    np.testing.assert_array_equal(hide[d:], hide[:-d])  # period d down the rows
    np.testing.assert_array_equal(hide[:, d:], hide[:, :-d])  # and along the columns
    rows, cols = hide.any(axis=1), hide.any(axis=0)
    assert rows.sum() == units[0] * (d - kept) and cols.sum() == units[1] * (d - kept)
    np.testing.assert_array_equal(hide, rows[:, None] & cols[None, :])  # the holes are the crossings


def test_gridmask_fill_kinds_probability_and_seed():
    img = np.full((16, 16, 3), 200, np.uint8)
    mask = T.GridMask((4, 4), ratio=0.5, p=1.0, fill=(1, 2, 3), generator=np.random.default_rng(0))
    out = mask(img)
    hide = T.GridMask.get_params(16, 16, (4, 4), 0.5, 1, _after_p(0))
    assert (out[hide] == (1, 2, 3)).all() and (out[~hide] == 200).all() and hide.mean() == 0.25
    pil = T.GridMask((4, 4), ratio=0.5, p=1.0, generator=np.random.default_rng(0))(Image.fromarray(img))
    assert pil.mode == "RGB" and (np.asarray(pil)[hide] == 0).all()
    x = np.ones((2, 3, 16, 16), np.float32)
    fx = T.GridMask((4, 4), ratio=0.5, p=1.0, fill=-1.5, generator=np.random.default_rng(0))(x)
    assert fx.dtype == np.float32 and (fx[:, :, hide] == -1.5).all() and (fx[:, :, ~hide] == 1).all()
    assert T.GridMask((4, 8), p=0.0)(img) is img
    minidl.manual_seed(5)
    a = T.GridMask((3, 9), ratio=0.4, rotate=45, p=1.0)(img)
    minidl.manual_seed(5)
    b = T.GridMask((3, 9), ratio=0.4, rotate=45, p=1.0)(img)
    np.testing.assert_array_equal(a, b)
    assert 0 < (a == 0).all(axis=2).mean() < 0.6
    assert repr(T.GridMask((4, 8))) == "GridMask(d_range=(4, 8), ratio=0.6, rotate=1, p=0.8, fill=0)"


def _after_p(seed: int) -> np.random.Generator:
    """A generator in the state GridMask leaves it after its probability draw."""
    rng = np.random.default_rng(seed)
    rng.random()
    return rng


def test_gridmask_rotated_keeps_the_hidden_fraction_near_its_expectation():
    fractions = [T.GridMask.get_params(64, 48, (16, 16), 0.5, 90, np.random.default_rng(s)).mean() for s in range(20)]
    assert abs(np.mean(fractions) - 0.25) < 0.03  # a turned grid still hides about (1 - r)^2


@given(seed=seeds, H=st.integers(1, 20), W=st.integers(1, 20), size=st.integers(1, 8), prob=st.floats(0, 1))
def test_hide_and_seek_hides_whole_patches(seed, H, W, size, prob):
    hide = T.HideAndSeek.get_params(H, W, (size,), prob, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    rng.integers(1)  # the grid size draw
    expected = rng.random((math.ceil(H / size), math.ceil(W / size))) < prob
    for i in range(expected.shape[0]):
        for j in range(expected.shape[1]):
            patch = hide[i * size : (i + 1) * size, j * size : (j + 1) * size]  # the last ones may be cut short
            assert (patch == expected[i, j]).all()


def test_hide_and_seek_fill_extremes_and_seed():
    img = np.random.default_rng(0).integers(1, 256, (10, 14, 3), dtype=np.uint8)
    assert T.HideAndSeek((4,), hide_prob=0.0)(img) is img
    assert T.HideAndSeek((0,), hide_prob=1.0)(img) is img  # grid size 0: no hiding
    out = T.HideAndSeek((4,), hide_prob=1.0, fill=(5, 6, 7))(img)
    assert (out == (5, 6, 7)).all()
    gray = T.HideAndSeek((3,), hide_prob=1.0, fill=9)(Image.fromarray(img).convert("L"))
    assert gray.mode == "L" and (np.asarray(gray) == 9).all()
    x = np.random.default_rng(1).random((3, 10, 14)).astype(np.float32)
    outs = [T.HideAndSeek((0, 2, 4), generator=np.random.default_rng(3))(x) for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    hidden = (outs[0] == 0).all(axis=0)
    np.testing.assert_array_equal(outs[0][:, ~hidden], x[:, ~hidden])  # the rest is untouched
    assert repr(T.HideAndSeek()) == "HideAndSeek(grid_sizes=(0, 16, 32, 44, 56), hide_prob=0.5, fill=0)"


def test_occlusion_errors():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"GridMask: d_range must be a \(d_min, d_max\) pair of ints with 2 <= d_min"):
        T.GridMask((8, 4))
    with pytest.raises(ValueError, match="GridMask: ratio must be <= 1.0, got 1.5"):
        T.GridMask((4, 8), ratio=1.5)
    with pytest.raises(ValueError, match=r"GridMask: an 8-bit image needs fill values that are integers in \[0, 255\]"):
        T.GridMask((2, 3), p=1.0, fill=2.5)(img)
    with pytest.raises(ValueError, match="HideAndSeek: grid_sizes must be a non-empty sequence of ints >= 0"):
        T.HideAndSeek((16, -1))
    with pytest.raises(
        ValueError, match=r"apply_mask: an 8-bit image needs fill values that are integers in \[0, 255\]"
    ):
        apply_mask(img, np.ones((4, 4), bool), 300)
    with pytest.raises(ValueError, match=r"apply_mask: expected a boolean mask of shape \(H, W\) = \(4, 4\)"):
        apply_mask(img, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="apply_mask: fill has 2 values but the image has 3 channels"):
        apply_mask(img, np.ones((4, 4), bool), (1, 2))
