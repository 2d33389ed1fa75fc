"""ToArray, Normalize, Compose and friends; test-time augmentation; the augmentation grid picture."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import minidl
from minidl import transforms as T
from minidl.transforms import functional as F
from tests.helpers import arr, host
from tests.strategies import seeds


@given(seed=seeds, H=st.integers(1, 10), W=st.integers(2, 10), C=st.sampled_from([1, 3, 4]), as_pil=st.booleans())
def test_to_array_range_dtype_and_layout(seed, H, W, C, as_pil):
    img = np.random.default_rng(seed).integers(0, 256, (H, W, C), dtype=np.uint8)
    img.flat[0], img.flat[-1] = 0, 255
    source = Image.fromarray(img[:, :, 0] if C == 1 else img) if as_pil else img
    x = T.ToArray()(source)
    assert x.dtype == np.float32 and x.shape == (C, H, W) and x.flags.c_contiguous
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x, img.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert T.ToArray(np.float64)(source).dtype == np.float64
    np.testing.assert_array_equal(np.asarray(F.to_pil_image(x)).reshape(H, W, C), img)  # round trip


def test_to_array_rejects_what_is_not_an_image():
    with pytest.raises(
        TypeError, match=r"to_array: .* got a float32 array .*; ToArray converts 8-bit images; a float array is"
    ):
        T.ToArray()(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="got list"):
        T.ToArray()([[0, 1]])
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        T.ToArray(np.int32)
    assert T.ToArray()(np.zeros((5, 6), np.uint8)).shape == (1, 5, 6)


@given(seed=seeds, C=st.integers(1, 4), H=st.integers(1, 6))
def test_normalize_follows_the_definition(seed, C, H):
    rng = np.random.default_rng(seed)
    x = rng.random((C, H, H + 2))
    mean, std = rng.random(C).tolist(), (rng.random(C) + 0.1).tolist()
    y = host(T.Normalize(mean, std)(arr(x)))
    np.testing.assert_allclose(y, (x - np.array(mean)[:, None, None]) / np.array(std)[:, None, None], rtol=1e-12)
    batch = host(T.Normalize(mean, std)(arr(np.stack([x, x]))))
    np.testing.assert_allclose(batch[1], y, rtol=1e-12)


def test_normalize_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="every std must be > 0"):
        T.Normalize([0.5], [0.0])
    with pytest.raises(ValueError, match="mean has 2 values but std has 3"):
        T.Normalize([0.5, 0.5], [1, 1, 1])
    with pytest.raises(ValueError, match="need 1 or 3 values for an input with 3 channels"):
        T.Normalize([0.5, 0.5], [1.0, 1.0])(np.zeros((3, 2, 2)))
    with pytest.raises(TypeError, match="apply ToArray first"):
        T.Normalize([0.5], [1.0])(np.zeros((2, 2, 3), np.uint8))
    x = np.ones((1, 2, 2))
    assert T.Normalize([1.0], [2.0], inplace=True)(x) is x and (x == 0).all()


def test_compose_random_apply_choice_lambda_and_reprs():
    img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    pipeline = T.Compose([T.RandomHorizontalFlip(p=1.0), T.ToArray(), T.Lambda(lambda x: x * 2)])
    np.testing.assert_allclose(pipeline(img), img[:, ::-1].transpose(2, 0, 1) / 255.0 * 2, rtol=1e-6)
    assert repr(pipeline).splitlines()[:3] == ["Compose(", "    RandomHorizontalFlip(p=1.0)", "    ToArray()"]
    assert T.RandomApply([T.Grayscale(3)], p=0.0)(img) is img
    np.testing.assert_array_equal(T.RandomApply([T.RandomHorizontalFlip(1.0)], p=1.0)(img), img[:, ::-1])
    picks = {T.RandomChoice([T.RandomHorizontalFlip(1.0), T.RandomVerticalFlip(1.0)])(img).tobytes() for _ in range(30)}
    assert picks == {img[:, ::-1].tobytes(), img[::-1].tobytes()}
    with pytest.raises(TypeError, match="Compose: transform 1 is a int, which is not callable"):
        T.Compose([T.ToArray(), 3])
    assert "RandomCrop(size=(32, 32), padding=4)" == repr(T.RandomCrop(32, padding=4))
    assert "Normalize(mean=[0.5], std=[0.25])" == repr(T.Normalize([0.5], [0.25]))


def test_full_pipeline_same_seed_same_output():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def pipeline(seed):
        g = np.random.default_rng(seed)
        return T.Compose(
            [
                T.RandomCrop(32, padding=4, padding_mode="reflect", generator=g),
                T.RandomHorizontalFlip(generator=g),
                T.ColorJitter(0.3, 0.3, 0.3, 0.05, generator=g),
                T.RandomRotation(10, generator=g),
                T.ToArray(),
                T.Lighting(generator=g),
                T.RandomErasing(p=1.0, generator=g),
                T.GaussianNoise(generator=g),
            ]
        )

    np.testing.assert_array_equal(pipeline(1)(img), pipeline(1)(img))
    assert not np.array_equal(pipeline(1)(img), pipeline(2)(img))


def flip_sensitive_model(x):
    """Logits (N, 2): the mean of the left half and of the right half of channel 0."""
    W = x.shape[-1]
    return minidl.get_backend().xp.stack(
        [x[:, 0, :, : W // 2].mean(axis=(1, 2)), x[:, 0, :, W // 2 :].mean(axis=(1, 2))], axis=1
    )


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_tta_predict_averages_softmax_over_the_views():
    x = np.random.default_rng(0).random((5, 2, 6, 8))
    expected = (
        softmax(host(flip_sensitive_model(arr(x)))) + softmax(host(flip_sensitive_model(arr(x[..., ::-1]))))
    ) / 2
    np.testing.assert_allclose(host(T.tta_predict(flip_sensitive_model, arr(x), "flip")), expected, rtol=1e-12)
    np.testing.assert_allclose(
        host(T.tta_predict(flip_sensitive_model, arr(x), "flip", batch_size=2)), expected, rtol=1e-12
    )
    ten = host(T.tta_predict(flip_sensitive_model, arr(x), "tencrop", crop_size=4))
    views = F.ten_crop(x, 4)
    assert len(views) == 10
    np.testing.assert_allclose(ten, sum(softmax(host(flip_sensitive_model(arr(v)))) for v in views) / 10, rtol=1e-12)
    custom = host(T.tta_predict(flip_sensitive_model, arr(x), [lambda b: b, lambda b: b * 2]))
    np.testing.assert_allclose(custom.sum(axis=1), 1.0)
    assert len(T.tta_views(arr(x), "fivecrop", crop_size=(3, 5))) == 5


def test_tta_predict_bad_arguments():
    x = arr(np.zeros((2, 1, 4, 4)))
    with pytest.raises(ValueError, match="needs crop_size"):
        T.tta_predict(flip_sensitive_model, x, "tencrop")
    with pytest.raises(ValueError, match="views must be one of"):
        T.tta_predict(flip_sensitive_model, x, "rotate")
    with pytest.raises(ValueError, match="the model must return logits \\(N, K\\)"):
        T.tta_predict(lambda b: b, x)
    with pytest.raises(ValueError, match="tta_predict: expected a 4-D"):
        T.tta_predict(flip_sensitive_model, arr(np.zeros((2, 4, 4))))


def test_save_augmentation_grid_layout_atomic_and_seeded(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    path = tmp_path / "grid.png"
    out = T.save_augmentation_grid(
        images,
        T.Compose([T.RandomCrop(8, padding=2), T.ToArray(), T.Normalize([0.5] * 3, [0.25] * 3)]),
        path,
        n_augmentations=4,
        seed=1,
        scale=2,
        padding=1,
    )
    assert out == str(path)
    assert os.listdir(tmp_path) == ["grid.png"]  # no temporary file left behind
    with Image.open(path) as grid:
        assert grid.size == (5 * (20 + 1) + 1, 3 * (16 + 1) + 1)
        tile = np.asarray(grid.convert("RGB"))[1:17, 1:21]
    np.testing.assert_array_equal(tile[::2, ::2], images[0])  # the first column is the original
    again = tmp_path / "again.png"
    T.save_augmentation_grid(
        images,
        T.Compose([T.RandomCrop(8, padding=2), T.ToArray(), T.Normalize([0.5] * 3, [0.25] * 3)]),
        again,
        n_augmentations=4,
        seed=1,
        scale=2,
        padding=1,
    )
    assert path.read_bytes() == again.read_bytes()
    crops = T.augmentation_grid(list(images[:1]), T.FiveCrop(4), n_augmentations=1)
    assert crops.size == (6 * (10 + 2) + 2, 8 + 4)  # original + 5 crops in the row
    with pytest.raises(ValueError, match="non-empty list of images"):
        T.save_augmentation_grid([], T.ToArray(), tmp_path / "x.png")


def test_pipelines_pickle_for_worker_processes():
    import pickle

    data = np.random.default_rng(0).random((20, 1, 2, 2))
    zca = T.ZCAWhitening().fit(data)
    zca(data[0])  # fills the per-backend cache, which is not pickled
    pipeline = T.Compose([T.RandomCrop(4, padding=1), T.ColorJitter(0.2), T.ToArray(), T.RandomErasing()])
    clone = pickle.loads(pickle.dumps(pipeline))
    img = np.zeros((4, 4, 3), np.uint8)
    assert clone(img).shape == pipeline(img).shape == (3, 4, 4)
    zca_clone = pickle.loads(pickle.dumps(zca))
    np.testing.assert_allclose(zca_clone(data[1]), zca(data[1]))


def test_pil_modes_keep_their_mode():
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 4), dtype=np.uint8))
    gray = rgba.convert("L")
    for t in (
        T.RandomRotation(20),
        T.RandomAffine(10, shear=5),
        T.RandomResizedCrop(8),
        T.RandomCrop(8, padding=2),
        T.ColorJitter(0.3, 0.3, 0.3, 0.1),
        T.Equalize(),
    ):
        for img in (rgba, gray):
            assert t(img).mode == img.mode, repr(t)
    assert T.ToArray()(rgba).shape == (4, 12, 10)
    assert T.ToArray()(rgba.convert("P")).shape == (3, 12, 10)  # palette images are expanded to RGB


def test_render_cifar10_sample_grid(tmp_path):
    pytest.importorskip("minidl.data.sample")
    path = T.visualize.render_cifar10_sample_grid(tmp_path / "augmentations.png")
    with Image.open(path) as grid:
        assert grid.size == (9 * (128 + 2) + 2, 4 * (128 + 2) + 2)
