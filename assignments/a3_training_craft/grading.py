"""Assignment 3's graded checks (100 points) and its planted bugs; every check runs without the dogs-vs-cats images
(synthetic images stand in for them)."""

from __future__ import annotations

import numpy as np
from PIL import Image

import minidl
from minidl import models
from minidl.assignments import Assignment, Bug, Check


def random_crop_flip_check(sub):
    f = sub.load("craft").random_crop_flip
    image = np.arange(2 * 4 * 5, dtype=np.float64).reshape(2, 4, 5) + 1  # no zeros: padding is recognisable
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2)))
    rng = np.random.default_rng(0)
    seen_offsets, flips = set(), 0
    for _ in range(400):
        out = np.asarray(f(image, 3, 2, rng))
        assert out.shape == (2, 3, 3), f"random_crop_flip: output shape {out.shape}, expected (2, 3, 3)"
        found = None
        for top in range(padded.shape[1] - 2):
            for left in range(padded.shape[2] - 2):
                window = padded[:, top : top + 3, left : left + 3]
                if np.array_equal(out, window):
                    found = (top, left, False)
                elif np.array_equal(out, window[:, :, ::-1]):
                    found = (top, left, True)
        assert found is not None, "random_crop_flip: the output is not a (possibly flipped) window of the padded image"
        seen_offsets.add(found[:2])
        flips += found[2]
    assert len(seen_offsets) == 6 * 7, (
        f"random_crop_flip: only {len(seen_offsets)} of the 42 crop positions occurred in 400 draws: every position, "
        "the last one included, must be possible (rng.integers(0, n) excludes n)"
    )
    assert 120 <= flips <= 280, f"random_crop_flip: flipped {flips} of 400 crops, expected about 200"
    a = f(image, 3, 2, np.random.default_rng(5))
    b = f(image, 3, 2, np.random.default_rng(5))
    assert np.array_equal(a, b), "random_crop_flip: the same rng state gave different crops: draw only from rng"


def _photo(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


def transforms_check(sub):
    craft = sub.load("craft")
    train_tf, eval_tf = craft.train_transform(32), craft.eval_transform(32)
    image = _photo(0)
    minidl.manual_seed(0)
    outs = [np.asarray(train_tf(image)) for _ in range(4)]
    for name, out in (("train_transform", outs[0]), ("eval_transform", np.asarray(eval_tf(image)))):
        assert out.shape == (3, 32, 32) and out.dtype == np.float32, (
            f"{name}: expected a (3, 32, 32) float32 array, got {out.shape} {out.dtype}"
        )
        assert abs(float(out.mean())) < 1.5, f"{name}: the values are not normalized (mean {float(out.mean()):.2f})"
    assert any(not np.array_equal(outs[0], o) for o in outs[1:]), "train_transform: four calls gave the same array"
    assert np.array_equal(np.asarray(eval_tf(image)), np.asarray(eval_tf(image))), "eval_transform: not deterministic"


def replace_head_check(sub):
    craft = sub.load("craft")
    model = models.resnet20()
    before = {k: v.copy() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    model = craft.replace_head(model, 2)
    assert model.fc.weight.shape == (2, 64), (
        f"replace_head: fc.weight has shape {model.fc.weight.shape}, expected (2, 64)"
    )
    after = model.state_dict()
    for k, v in before.items():
        assert np.array_equal(after[k], v), f"replace_head: changed {k}, which is not part of the head"
    with minidl.no_grad():
        out = model.eval()(np.zeros((2, 3, 32, 32), np.float32))
    assert out.shape == (2, 2), f"replace_head: the model's output has shape {out.shape}, expected (2, 2)"


def freeze_check(sub):
    craft = sub.load("craft")
    model = models.resnet20(num_classes=2)
    n = craft.freeze_all_but_head(model)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"], f"freeze_all_but_head: trainable parameters {trainable[:6]}..."
    assert n == 64 * 2 + 2, f"freeze_all_but_head: returned {n}, but {64 * 2 + 2} values are trainable"


def sample_config_check(sub):
    craft = sub.load("craft")
    rng = np.random.default_rng(0)
    draws = [craft.sample_config(rng) for _ in range(2000)]
    lr = np.array([d["lr"] for d in draws])
    wd = np.array([d["weight_decay"] for d in draws])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1, "sample_config: lr outside [1e-4, 1e-1]"
    assert wd.min() >= 1e-6 and wd.max() <= 1e-3, "sample_config: weight_decay outside [1e-6, 1e-3]"
    for name, values, middle in (("lr", lr, -2.5), ("weight_decay", wd, -4.5)):
        median = float(np.median(np.log10(values)))
        assert abs(median - middle) < 0.15, (
            f"sample_config: the median of log10({name}) is {median:.2f}, expected about {middle} for a log-uniform "
            "draw"
        )
    assert {d["batch_size"] for d in draws} == {32, 64, 128}, "sample_config: batch_size must be one of 32, 64, 128"


def random_search_check(sub):
    craft = sub.load("craft")
    best, score, trials = craft.random_search(lambda c: -abs(np.log10(c["lr"]) + 2), 30, np.random.default_rng(0))
    assert len(trials) == 30, f"random_search: ran {len(trials)} trials, expected 30"
    scores = [s for _, s in trials]
    assert score == max(scores) and best is trials[int(np.argmax(scores))][0], (
        "random_search: the best config must be the one with the highest score"
    )


ASSIGNMENT = Assignment(
    title="A3: training craft (augmentation, transfer learning, hyperparameter search)",
    student_files=("craft.py", "train_transfer.py"),
    checks=(
        Check("random_crop_flip", 25, random_crop_flip_check),
        Check("train_transform / eval_transform", 15, transforms_check, function="train_transform"),
        Check("replace_head", 15, replace_head_check),
        Check("freeze_all_but_head", 15, freeze_check),
        Check("sample_config", 15, sample_config_check),
        Check("random_search", 15, random_search_check),
    ),
    bugs=(
        Bug("crop never reaches the last position", "craft.py", "padded.shape[1] - size + 1", "padded.shape[1] - size",
            "random_crop_flip"),
        Bug("never flips", "craft.py", "if rng.random() < 0.5:", "if rng.random() < 0.0:", "random_crop_flip"),
        Bug("train transform without augmentation", "craft.py",
            "T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToArray()",
            "T.Compose([T.Resize(size), T.CenterCrop(size), T.ToArray()", "train_transform"),
        Bug("head freezes too", "craft.py", 'p.requires_grad = name.startswith("fc.")', "p.requires_grad = False",
            "freeze_all_but_head"),
        Bug("uniform instead of log-uniform", "craft.py", '"lr": float(10 ** rng.uniform(-4, -1))',
            '"lr": float(rng.uniform(1e-4, 1e-1))', "sample_config"),
        Bug("keeps the worst trial", "craft.py", "max(trials, key=lambda trial: trial[1])",
            "min(trials, key=lambda trial: trial[1])", "random_search"),
    ),
)  # fmt: skip
