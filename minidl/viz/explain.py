r"""What does the network look at? Saliency, SmoothGrad, Grad-CAM, class-model visualization, filters and feature maps.

Every method here is one forward and one backward of the model you trained, with a different upstream gradient or a
different thing read along the way; minidl's explicit ``model.backward(dout)`` makes each one a few lines.

Notation: N images of C channels, H x W pixels; K classes; the model maps x (N, C, H, W) to scores s (N, K) (the
logits, before softmax, as in Simonyan et al. 2014).

* **Saliency** (Simonyan et al.): :math:`M_{n,i,j} = \max_c \lvert \partial s_{n,t_n} / \partial x_{n,c,i,j} \rvert`,
  the backward of a one-hot ``dout`` (1 at the target class ``t_n``) through the whole model.
* **SmoothGrad** (Smilkov et al. 2017): the mean of the saliency maps of ``n_samples`` noisy copies
  :math:`x + \mathcal N(0, \sigma^2)`, :math:`\sigma` = ``noise_level`` times each image's value range; the noise
  averages away the gradient's pixel-to-pixel jitter.
* **Grad-CAM** (Selvaraju et al. 2017) on a layer with output A (N, K', h, w): a forward hook keeps A, a backward
  hook keeps :math:`dA = \partial s_t / \partial A`; the channel weights are
  :math:`\alpha_{n,k} = \frac{1}{hw}\sum_{i,j} dA_{n,k,i,j}` and
  :math:`\mathrm{cam}_n = \mathrm{ReLU}(\sum_k \alpha_{n,k} A_{n,k})`, resized bilinearly to H x W and scaled to
  [0, 1] per image.
* **Class-model visualization** (Simonyan et al.; CS231n): gradient ascent on the input,
  :math:`x \leftarrow x + \eta\, g / \mathrm{rms}(g)`, :math:`g = \partial (s_t(x) - \lambda \lVert x \rVert^2) /
  \partial x`, with random jitter (the image is rolled by a few pixels before each step and rolled back after) and an
  occasional Gaussian blur as regularizers.
* **Filters and activation maps**: the first convolution's weights as small images; a layer's output channels for
  one input (through a forward hook).

All of them run the model in eval mode (BatchNorm on running statistics, no dropout) and leave it as it was: the
training flags, the parameters' ``.grad`` and the buffers are put back. They accept arrays of the current backend
or NumPy arrays and return NumPy arrays (ready to draw with :mod:`minidl.viz.draw`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from minidl.backend import get_array_module, get_backend, to_numpy
from minidl.grad_mode import is_grad_enabled, no_grad
from minidl.nn.conv import Conv2d
from minidl.nn.module import Module
from minidl.train.health import kept_model_state

__all__ = [
    "ClassModel",
    "GradCam",
    "Saliency",
    "activation_maps",
    "class_model_visualization",
    "filter_grid",
    "grad_cam",
    "resize_bilinear",
    "saliency",
    "smooth_grad",
]


class Saliency(NamedTuple):
    """``map`` (N, H, W): max over channels of the absolute gradient (for inputs (N, C, H, W); the absolute
    gradient itself for other shapes); ``gradient``: the raw gradient, the input's shape."""

    map: np.ndarray
    gradient: np.ndarray


class GradCam(NamedTuple):
    """``cam`` (N, H, W) in [0, 1] at the input's size; ``raw`` (N, h, w): ReLU of the weighted sum at the layer's
    size, unscaled; ``weights`` (N, K'): the channel weights (the spatial mean of the layer's gradient)."""

    cam: np.ndarray
    raw: np.ndarray
    weights: np.ndarray


class ClassModel(NamedTuple):
    """``image`` (C, H, W): the synthesized input; ``scores``: the target score before each step and after the last."""

    image: np.ndarray
    scores: list[float]


# ---------------------------------------------------------------------------------------------------- checks


def _check_model(where: str, model: Any) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{where}: model must be a minidl.nn.Module, got {type(model).__name__}")


def _inputs(where: str, x: Any, model: Module) -> Any:
    """``x`` as a floating array of the current backend with the model's parameter dtype, batch first."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{where}: x must be an array (N, C, H, W), got {type(x).__name__}")
    if len(x.shape) < 2:
        raise ValueError(f"{where}: x must be a batch (N, ...) of inputs, got shape {tuple(x.shape)}")
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"{where}: x must hold floats (a normalized image batch), got dtype {x.dtype}")
    be = get_backend()
    x = x if get_array_module(x) is be.xp else be.asarray(x)
    dtypes = {np.dtype(p.data.dtype) for p in model.parameters()}
    if len(dtypes) == 1 and np.dtype(x.dtype) not in dtypes:
        raise TypeError(
            f"{where}: x has dtype {x.dtype} but the model's parameters are {dtypes.pop()}; convert one of them"
        )
    return x


def _targets(where: str, target: Any, n: int) -> np.ndarray:
    t = np.asarray(to_numpy(target) if hasattr(target, "shape") else target)
    if t.ndim == 0:
        t = np.full(n, t)
    if t.shape != (n,) or t.dtype.kind not in "iu":
        raise ValueError(f"{where}: target must be a class index or N={n} class indices, got {target!r}")
    return t.astype(np.int64)


def _check_grad(where: str) -> None:
    if not is_grad_enabled():
        raise RuntimeError(f"{where}: needs a backward pass; call it outside minidl.no_grad()")


def _layer(where: str, model: Module, layer: Any) -> tuple[str, Module]:
    named = list(model.named_modules())
    if isinstance(layer, Module):
        for name, module in named:
            if module is layer:
                return name, module
        raise ValueError(f"{where}: layer {type(layer).__name__} is not a module of the model")
    if isinstance(layer, str):
        for name, module in named:
            if name == layer:
                return name, module
        raise ValueError(f"{where}: the model has no module named {layer!r}; its modules are {[n for n, _ in named]}")
    raise TypeError(f"{where}: layer must be a Module of the model or its name, got {type(layer).__name__}")


# ---------------------------------------------------------------------------------------------------- gradients


def _score_gradient(where: str, model: Module, x: Any, t: np.ndarray) -> tuple[np.ndarray, Any]:
    """Forward x, backward a one-hot dout at the targets: ``(scores (N, K) on the host, d s_t / d x)``."""
    out = model(x)
    if len(out.shape) != 2:
        raise ValueError(f"{where}: the model must output class scores (N, K), got shape {tuple(out.shape)}")
    if int(t.max(initial=0)) >= out.shape[1] or int(t.min(initial=0)) < 0:
        raise ValueError(f"{where}: target {t.tolist()} out of range for {out.shape[1]} classes")
    xp = get_array_module(out)
    dout = xp.zeros_like(out)
    dout[xp.arange(out.shape[0]), xp.asarray(t)] = 1
    gx = model.backward(dout)
    if tuple(gx.shape) != tuple(x.shape):
        raise RuntimeError(f"{where}: the model's backward returned shape {tuple(gx.shape)} for input {x.shape}")
    return to_numpy(out), gx


def _saliency_map(gradient: np.ndarray) -> np.ndarray:
    return np.abs(gradient).max(axis=1) if gradient.ndim == 4 else np.abs(gradient)


def saliency(model: Module, x: Any, target: Any) -> Saliency:
    """The gradient of the target class score with respect to the input, and its saliency map.

    Args:
        model: a classifier, (N, ...) -> (N, K) scores.
        x: the inputs (N, C, H, W) (or any (N, ...)), floats of the model's dtype.
        target: a class index for all, or one per input (N,).

    Returns:
        :class:`Saliency` ``(map (N, H, W), gradient (same shape as x))``, NumPy.

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
        >>> s = saliency(net, np.ones((2, 3, 8, 8), np.float32), target=1)
        >>> s.map.shape, s.gradient.shape
        ((2, 8, 8), (2, 3, 8, 8))
    """
    where = "saliency"
    _check_model(where, model)
    _check_grad(where)
    x = _inputs(where, x, model)
    t = _targets(where, target, x.shape[0])
    with kept_model_state(model, mode=False):
        _, gx = _score_gradient(where, model, x, t)
    gradient = to_numpy(gx)
    return Saliency(_saliency_map(gradient), gradient)


def smooth_grad(
    model: Module, x: Any, target: Any, n_samples: int = 25, noise_level: float = 0.15, seed: int | None = None
) -> Saliency:
    r"""SmoothGrad: the mean saliency map (and mean gradient) over ``n_samples`` noisy copies of each input.

    The noise of copy s is ``noise[s] * sigma_n``, ``noise = np.random.default_rng(seed).standard_normal((n_samples,
    *x.shape))`` and :math:`\sigma_n` = ``noise_level`` * (max - min of image n).

    Args:
        model, x, target: as in :func:`saliency`.
        n_samples: noisy copies. Default: 25.
        noise_level: the noise std as a fraction of each image's value range (the paper's 10-20 %). Default: 0.15.
        seed: seed of the noise. Default: None (fresh noise).

    Returns:
        :class:`Saliency` ``(mean of the maps (N, H, W), mean gradient)``.
    """
    where = "smooth_grad"
    _check_model(where, model)
    _check_grad(where)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"{where}: n_samples must be an int >= 1, got {n_samples!r}")
    if not (isinstance(noise_level, (int, float)) and noise_level >= 0):
        raise ValueError(f"{where}: noise_level must be a number >= 0, got {noise_level!r}")
    x = _inputs(where, x, model)
    t = _targets(where, target, x.shape[0])
    host = to_numpy(x)
    axes = tuple(range(1, host.ndim))
    sigma = noise_level * (host.max(axis=axes, keepdims=True) - host.min(axis=axes, keepdims=True))
    rng = np.random.default_rng(seed)
    maps, grads = 0.0, 0.0
    be = get_backend()
    with kept_model_state(model, mode=False):
        for _ in range(n_samples):
            noisy = (host + rng.standard_normal(host.shape) * sigma).astype(host.dtype)
            _, gx = _score_gradient(where, model, be.asarray(noisy), t)
            gradient = to_numpy(gx)
            maps = maps + _saliency_map(gradient)
            grads = grads + gradient
    return Saliency(np.asarray(maps) / n_samples, np.asarray(grads) / n_samples)


def resize_bilinear(a: Any, size: tuple[int, int]) -> np.ndarray:
    """Resize (..., h, w) maps to (..., H, W) by bilinear interpolation with PyTorch's ``align_corners=False``
    (``F.interpolate(mode="bilinear")``): output pixel i samples the input at ``(i + 0.5) * h / H - 0.5``, clamped.

    Examples:
        >>> resize_bilinear(np.array([[0.0, 1.0]]), (1, 4)).tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    a = np.asarray(to_numpy(a), dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"resize_bilinear: expected (..., h, w) maps, got shape {a.shape}")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize_bilinear: size must be two positive ints, got {size!r}")

    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, wy = weights(a.shape[-2], out_h)
    x0, x1, wx = weights(a.shape[-1], out_w)
    rows = a[..., y0, :] * (1 - wy)[:, None] + a[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def grad_cam(model: Module, x: Any, target: Any, layer: Any) -> GradCam:
    """Grad-CAM heat maps: where in the image the evidence for ``target`` is, as seen by ``layer``.

    Args:
        model: a classifier, (N, C, H, W) -> (N, K).
        x: the images (N, C, H, W).
        target: a class index for all, or one per image.
        layer: the module (or its name in ``model.named_modules()``) whose output (N, K', h, w) is weighted,
            usually the last convolution block (its ReLU). Hooks are registered on it for the call and removed.

    Returns:
        :class:`GradCam` ``(cam (N, H, W) in [0, 1], raw (N, h, w), weights (N, K'))``; an image whose raw map is
        0 everywhere (no positive evidence) gets a cam of zeros.
    """
    where = "grad_cam"
    _check_model(where, model)
    _check_grad(where)
    x = _inputs(where, x, model)
    if len(x.shape) != 4:
        raise ValueError(f"{where}: x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    t = _targets(where, target, x.shape[0])
    name, module = _layer(where, model, layer)
    kept: dict[str, Any] = {}

    def keep_output(m: Module, args: Any, out: Any) -> None:
        kept["A"] = out

    def keep_gradient(m: Module, grad_input: Any, grad_output: Any) -> None:
        kept["dA"] = grad_output[0]

    with (
        module.register_forward_hook(keep_output),
        module.register_full_backward_hook(keep_gradient),
        kept_model_state(model, mode=False),
    ):
        _score_gradient(where, model, x, t)
    if "A" not in kept or "dA" not in kept:
        raise RuntimeError(f"{where}: layer {name!r} was not run by the model's forward and backward")
    A, dA = to_numpy(kept["A"]).astype(np.float64), to_numpy(kept["dA"]).astype(np.float64)
    if A.ndim != 4:
        raise ValueError(f"{where}: layer {name!r} outputs shape {A.shape}; Grad-CAM needs feature maps (N, K, h, w)")
    weights = dA.mean(axis=(2, 3))
    raw = np.maximum((weights[:, :, None, None] * A).sum(axis=1), 0.0)
    cam = resize_bilinear(raw, (x.shape[2], x.shape[3]))
    top = cam.max(axis=(1, 2), keepdims=True)
    cam = np.where(top > 0, cam / np.where(top > 0, top, 1.0), 0.0)
    return GradCam(cam, raw, weights)


def activation_maps(model: Module, x: Any, layer: Any) -> np.ndarray:
    """The output of ``layer`` (a module or its name) when ``model`` runs on ``x``, read by a forward hook (eval
    mode, no gradients). Returns it as NumPy, e.g. (N, C', h, w) feature maps.

    Examples:
        >>> import numpy as np, minidl
        >>> from minidl import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
        >>> activation_maps(net, np.ones((2, 1, 6, 6), np.float32), "1").shape
        (2, 4, 4, 4)
    """
    where = "activation_maps"
    _check_model(where, model)
    x = _inputs(where, x, model)
    name, module = _layer(where, model, layer)
    kept: list[Any] = []
    with (
        module.register_forward_hook(lambda m, args, out: kept.append(out)),
        kept_model_state(model, mode=False),
        no_grad(),
    ):
        model(x)
    if not kept:
        raise RuntimeError(f"{where}: layer {name!r} was not run by the model's forward")
    return to_numpy(kept[-1])


def _first_conv(where: str, conv_or_model: Any) -> Conv2d:
    if isinstance(conv_or_model, Conv2d):
        return conv_or_model
    _check_model(where, conv_or_model)
    for module in conv_or_model.modules():
        if isinstance(module, Conv2d):
            return module
    raise ValueError(f"{where}: the model has no Conv2d")


def filter_grid(conv_or_model: Any, ncols: int | None = None, padding: int = 1) -> np.ndarray:
    """The filters of a convolution (the model's first Conv2d) tiled into one image, each scaled to [0, 1] on its
    own (min -> 0, max -> 1; a constant filter -> 0.5), separated by ``padding`` pixels of 1 (white).

    Filters with 3 input channels are RGB tiles (KH, KW, 3); otherwise every (filter, channel) slice is a grey tile,
    one row per filter (C columns).

    Args:
        conv_or_model: a Conv2d, or a model whose first Conv2d is drawn.
        ncols: tiles per row. Default: None (ceil(sqrt(O)) for RGB or 1-channel filters, C otherwise).
        padding: pixels between tiles. Default: 1.

    Returns:
        (rows * (KH + padding) - padding, ncols * (KW + padding) - padding[, 3]) floats in [0, 1].

    Examples:
        >>> from minidl import nn
        >>> filter_grid(nn.Conv2d(3, 8, 5)).shape
        (17, 17, 3)
    """
    where = "filter_grid"
    conv = _first_conv(where, conv_or_model)
    w = to_numpy(conv.weight.data).astype(np.float64)  # (O, C, KH, KW)
    O, C, KH, KW = w.shape
    if C == 3:
        tiles = w.transpose(0, 2, 3, 1)  # (O, KH, KW, 3)
        lo, hi = tiles.min(axis=(1, 2, 3), keepdims=True), tiles.max(axis=(1, 2, 3), keepdims=True)
    else:
        tiles = w.reshape(O * C, KH, KW)
        lo, hi = tiles.min(axis=(1, 2), keepdims=True), tiles.max(axis=(1, 2), keepdims=True)
    tiles = np.where(hi > lo, (tiles - lo) / np.where(hi > lo, hi - lo, 1.0), 0.5)
    if ncols is None:
        ncols = math.ceil(math.sqrt(O)) if C in (1, 3) else C
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"{where}: ncols must be an int >= 1, got {ncols!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"{where}: padding must be an int >= 0, got {padding!r}")
    n = tiles.shape[0]
    rows = math.ceil(n / ncols)
    shape = (rows * (KH + padding) - padding, ncols * (KW + padding) - padding, *tiles.shape[3:])
    grid = np.ones(shape)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[r * (KH + padding) : r * (KH + padding) + KH, c * (KW + padding) : c * (KW + padding) + KW] = tiles[i]
    return grid


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (C, H, W) with a separable Gaussian (radius 2 sigma, edges replicated)."""
    radius = max(1, int(math.ceil(2 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(img, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    img = sum(k[i] * padded[:, i : i + img.shape[1], :] for i in range(k.size))
    padded = np.pad(img, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    return sum(k[i] * padded[:, :, i : i + img.shape[2]] for i in range(k.size))


def class_model_visualization(
    model: Module,
    target: int,
    input_shape: tuple[int, ...],
    steps: int = 200,
    lr: float = 0.1,
    l2: float = 1e-3,
    blur_every: int = 10,
    blur_sigma: float = 0.5,
    jitter: int = 2,
    clamp: tuple[float, float] | None = None,
    init_std: float = 0.1,
    seed: int | None = 0,
) -> ClassModel:
    r"""Synthesize an input that the model scores highly as ``target`` (CS231n's class visualization).

    From small noise, ``steps`` times: roll the image by a random offset in ``[-jitter, jitter]`` (both axes),
    compute :math:`g = \partial (s_t(x) - \lambda \lVert x \rVert_2^2) / \partial x` (one forward, one backward of a
    one-hot ``dout``, plus :math:`-2 \lambda x`), step :math:`x \leftarrow x + \eta\, g / \mathrm{rms}(g)` (so
    ``lr`` is the mean step per pixel), roll back, clip to ``clamp``, and every ``blur_every`` steps blur with a
    Gaussian of std ``blur_sigma``.

    Args:
        model: a classifier on (1, C, H, W) inputs.
        target: the class index.
        input_shape: (C, H, W).
        steps: ascent steps. Default: 200.  lr: mean step per pixel. Default: 0.1.
        l2: the L2 penalty :math:`\lambda`. Default: 1e-3.
        blur_every: blur period (0: never). Default: 10.  blur_sigma: blur std in pixels. Default: 0.5.
        jitter: maximal roll in pixels. Default: 2.
        clamp: ``(low, high)`` bounds of the pixels (the normalized range of valid images), or None. Default: None.
        init_std: std of the starting noise. Default: 0.1.  seed: seed of the noise and the jitter. Default: 0.

    Returns:
        :class:`ClassModel` ``(image (C, H, W), scores)``; ``scores[i]`` is the target score before step i,
        ``scores[-1]`` the final one.
    """
    where = "class_model_visualization"
    _check_model(where, model)
    _check_grad(where)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{where}: steps must be an int >= 1, got {steps!r}")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"{where}: input_shape must be (C, H, W), got {input_shape!r}")
    params = list(model.parameters())
    dtype = np.dtype(params[0].data.dtype) if params else np.dtype(np.float32)
    rng = np.random.default_rng(seed)
    img = (rng.standard_normal(tuple(input_shape)) * init_std).astype(np.float64)
    t = _targets(where, target, 1)
    be = get_backend()
    scores: list[float] = []
    with kept_model_state(model, mode=False):
        for step in range(steps):
            dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
            rolled = np.roll(img, (dy, dx), axis=(1, 2))
            out, gx = _score_gradient(where, model, be.asarray(rolled[None].astype(dtype)), t)
            for p in model.parameters():
                p.grad = None  # the parameters' gradients are not wanted: keep memory flat
            scores.append(float(out[0, t[0]]))
            g = to_numpy(gx)[0].astype(np.float64) - 2 * l2 * rolled
            rolled = rolled + lr * g / (np.sqrt(np.mean(g * g)) + 1e-12)
            img = np.roll(rolled, (-dy, -dx), axis=(1, 2))
            if clamp is not None:
                img = np.clip(img, clamp[0], clamp[1])
            if blur_every and (step + 1) % blur_every == 0:
                img = _gaussian_blur(img, blur_sigma)
        with no_grad():
            scores.append(float(to_numpy(model(be.asarray(img[None].astype(dtype))))[0, t[0]]))
    return ClassModel(img.astype(dtype), scores)
