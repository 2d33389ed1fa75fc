"""AutoAugment, RandAugment and TrivialAugmentWide: the op tables and every operation against torchvision (when it
is installed), and each transform against a replay of its documented draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import minidl
from minidl import transforms as T
from minidl.transforms import functional as F
from minidl.transforms.policy import _POLICIES, apply_op, magnitude_bins
from tests.strategies import seeds
from tests.transforms.torchvision_oracle import torchvision_or_skip

OPS = ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness",
       "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert", "Identity"]  # fmt: skip


def image(seed: int, H: int = 12, W: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_magnitude_tables():
    table = magnitude_bins("autoaugment", 10, (331, 662))
    assert list(table) == OPS[:-1] and table["TranslateX"][0][-1] == pytest.approx(300.0)
    assert table["TranslateY"][0][-1] == pytest.approx(150.0) and table["Solarize"][0].tolist()[::9] == [255.0, 0.0]
    assert table["Posterize"][0].tolist() == [8, 8, 7, 7, 6, 6, 5, 5, 4, 4] and table["Posterize"][1] is False
    wide = magnitude_bins("trivialaugmentwide", 31)
    assert list(wide) == ["Identity", *OPS[:-2]] and wide["Rotate"][0][-1] == 135.0 and wide["Posterize"][0][-1] == 2
    assert all(signed == (name in OPS[:9]) for name, (_, signed) in wide.items())
    with pytest.raises(ValueError, match="magnitude_bins: kind must be autoaugment, randaugment or"):
        magnitude_bins("augmix", 10)
    for policy in T.AutoAugmentPolicy:
        assert len(_POLICIES[policy]) == 25
        assert all(
            op in OPS and 0 <= p <= 1 and (m is None or 0 <= m < 10) for sub in _POLICIES[policy] for op, p, m in sub
        )


@pytest.mark.parametrize("op", OPS)
def test_each_operation_on_arrays_and_pil(op):
    img = image(0)
    for magnitude in (0.0, 0.3, -0.2, 4.0, -9.0):
        if op == "Posterize":
            magnitude = abs(magnitude) % 8 + 1
        if op in ("Brightness", "Color", "Contrast", "Sharpness") and magnitude < -1:
            continue  # the factor 1 + magnitude must be >= 0
        out = apply_op(img, op, magnitude)
        pil = apply_op(Image.fromarray(img), op, magnitude)
        assert out.shape == img.shape and out.dtype == np.uint8 and pil.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(pil), out)
    if op == "Identity":
        assert apply_op(img, op, 5.0) is img
    if op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"):
        np.testing.assert_array_equal(apply_op(img, op, 0.0), img)  # magnitude 0 changes nothing
    shift = apply_op(img, "TranslateX", 3.7, fill=(1, 2, 3))  # int(3.7) = 3 pixels to the right
    np.testing.assert_array_equal(shift[:, 3:], img[:, :-3])
    assert (shift[:, :3] == (1, 2, 3)).all()
    sheared = apply_op(img, "ShearX", 0.5)  # x_in = x_out + 0.5 y about the top-left corner: row 0 is unchanged
    np.testing.assert_array_equal(sheared[0], img[0])
    np.testing.assert_array_equal(apply_op(img, "Rotate", 30.0), F.rotate(img, 30.0))


def test_apply_op_unknown_name():
    with pytest.raises(ValueError, match=r"apply_op: unknown operation 'Blur'; expected one of \['AutoContrast'"):
        apply_op(image(0), "Blur", 1.0)


def replay_autoaugment(img, policy, seed):
    rng = np.random.default_rng(seed)
    subs = _POLICIES[policy]
    policy_id, probs, signs = int(rng.integers(len(subs))), rng.random(2), rng.integers(2, size=2)
    table = magnitude_bins("autoaugment", 10, img.shape[:2])
    for i, (op, p, m) in enumerate(subs[policy_id]):
        if probs[i] <= p:
            mags, signed = table[op]
            value = float(mags[m]) if m is not None else 0.0
            img = apply_op(img, op, -value if signed and signs[i] == 0 else value)
    return img


def replay_randaugment(img, num_ops, magnitude, bins, seed):
    rng = np.random.default_rng(seed)
    table = magnitude_bins("randaugment", bins, img.shape[:2])
    for _ in range(num_ops):
        op = list(table)[int(rng.integers(len(table)))]
        mags, signed = table[op]
        value = float(mags[magnitude]) if mags is not None else 0.0
        img = apply_op(img, op, -value if signed and rng.integers(2) else value)
    return img


def replay_trivialaugment(img, bins, seed):
    rng = np.random.default_rng(seed)
    table = magnitude_bins("trivialaugmentwide", bins)
    op = list(table)[int(rng.integers(len(table)))]
    mags, signed = table[op]
    value = float(mags[int(rng.integers(len(mags)))]) if mags is not None else 0.0
    return apply_op(img, op, -value if signed and rng.integers(2) else value)


@settings(max_examples=30)
@given(seed=seeds, policy=st.sampled_from(list(T.AutoAugmentPolicy)), num_ops=st.integers(0, 3))
def test_policies_follow_their_documented_draws(seed, policy, num_ops):
    img = image(seed % 1000)
    auto = T.AutoAugment(policy, generator=np.random.default_rng(seed))(img)
    np.testing.assert_array_equal(auto, replay_autoaugment(img, policy, seed))
    rand = T.RandAugment(num_ops, magnitude=7, num_magnitude_bins=11, generator=np.random.default_rng(seed))(img)
    np.testing.assert_array_equal(rand, replay_randaugment(img, num_ops, 7, 11, seed))
    trivial = T.TrivialAugmentWide(generator=np.random.default_rng(seed))(Image.fromarray(img))
    assert isinstance(trivial, Image.Image)
    np.testing.assert_array_equal(np.asarray(trivial), replay_trivialaugment(img, 31, seed))


def test_policies_use_minidl_global_generator_and_accept_grayscale():
    img = image(4)
    for make in (lambda: T.AutoAugment("cifar10"), T.RandAugment, T.TrivialAugmentWide):
        minidl.manual_seed(11)
        first = [make()(img) for _ in range(5)]
        minidl.manual_seed(11)
        second = [make()(img) for _ in range(5)]
        assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
        gray = make()(Image.fromarray(img).convert("L"))
        assert gray.mode == "L" and gray.size == (10, 12)


def test_policy_arguments_and_reprs():
    assert T.AutoAugment().policy is T.AutoAugmentPolicy.IMAGENET  # torchvision's default
    assert T.AutoAugment("svhn").policy is T.AutoAugmentPolicy.SVHN
    assert (
        repr(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)) == "AutoAugment(policy=AutoAugmentPolicy.CIFAR10, fill=None)"
    )
    assert repr(T.RandAugment()) == (
        "RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31, interpolation=nearest, fill=None)"
    )
    assert repr(T.TrivialAugmentWide()) == "TrivialAugmentWide(num_magnitude_bins=31, interpolation=nearest, fill=None)"
    with pytest.raises(ValueError, match=r"AutoAugment: policy must be an AutoAugmentPolicy .* got 'cifar100'"):
        T.AutoAugment("cifar100")
    with pytest.raises(ValueError, match=r"RandAugment: magnitude is a bin index in \[0, num_magnitude_bins\) = "):
        T.RandAugment(magnitude=31)
    with pytest.raises(ValueError, match="RandAugment: interpolation must be one of"):
        T.RandAugment(interpolation="cubic")
    with pytest.raises(
        TypeError, match="TrivialAugmentWide: expected a PIL image or an .* apply this transform before"
    ):
        T.TrivialAugmentWide()(np.zeros((3, 8, 8), np.float32))


# ------------------------------------------------------------------------------------------------ torchvision
def test_tables_policies_and_operations_match_torchvision():
    torchvision_or_skip()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import autoaugment as tv

    for kind, module, args in (
        ("autoaugment", tv.AutoAugment(), (10, (23, 29))),
        ("randaugment", tv.RandAugment(), (31, (23, 29))),
        ("trivialaugmentwide", tv.TrivialAugmentWide(), (31,)),
    ):
        theirs = module._augmentation_space(*args)
        ours = magnitude_bins(kind, *args)
        assert list(ours) == list(theirs), kind
        for name, (mags, signed) in theirs.items():
            assert ours[name][1] == signed
            if mags.ndim == 0:
                assert ours[name][0] is None
            else:  # torch.linspace's float32 values, to within a float32 rounding
                np.testing.assert_allclose(ours[name][0], mags.numpy(), rtol=1e-6, atol=0, err_msg=f"{kind} {name}")
    for policy in T.AutoAugmentPolicy:
        assert tv.AutoAugment(tv.AutoAugmentPolicy(policy.value)).policies == _POLICIES[policy]
    rng = np.random.default_rng(1)
    for mode, shape in (("RGB", (23, 29, 3)), ("L", (17, 13))):
        pil = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
        for op in OPS:
            for magnitude in (0.0, 0.3, -0.25, 5.0, -7.0, 100.0, math.pi):
                if op == "Posterize":
                    magnitude = abs(int(magnitude)) % 8 + 1  # PIL refuses bits=0
                if op in ("Brightness", "Color", "Contrast", "Sharpness") and magnitude < -1:
                    continue
                for interpolation in ("nearest", "bilinear"):
                    ours = apply_op(pil, op, magnitude, interpolation, fill=None)
                    theirs = tv._apply_op(pil, op, magnitude, InterpolationMode(interpolation), None)
                    diff = np.abs(np.asarray(ours, np.int64) - np.asarray(theirs, np.int64)).max()
                    assert ours.mode == theirs.mode and diff == 0, f"{op} at {magnitude} ({interpolation}, {mode})"


@pytest.mark.parametrize("policy", [T.AutoAugment, T.RandAugment, T.TrivialAugmentWide])
def test_a_policy_refuses_an_image_or_fill_before_its_draw(policy):
    # on every seed, with the policy's own name: the colour operations (channels) and the geometric ones (fill) were
    # reached by some draws only, and their messages named them
    two_channels, gray = np.zeros((16, 16, 2), np.uint8), np.zeros((16, 16), np.uint8)
    for seed in range(8):
        with pytest.raises(ValueError, match=rf"^{policy.__name__}: expected an image with 1, 3 or 4 channels"):
            policy(generator=np.random.default_rng(seed))(two_channels)
        with pytest.raises(ValueError, match=rf"^{policy.__name__}: fill has 3 values but the image has 1 channels"):
            policy(fill=[128] * 3, generator=np.random.default_rng(seed))(gray)
