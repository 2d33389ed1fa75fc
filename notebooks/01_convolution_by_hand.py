# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Convolution by hand: loops, im2col, forward and backward
#
# Follows the Georgia Tech CS 4644/7643 deck "Convolutional Neural Networks" (`002` in the lectures folder): a
# convolution layer computes a **cross-correlation**, its gradient with respect to the kernel is a cross-correlation
# of the input with the upstream gradient, and its gradient with respect to the input is a *convolution* (a
# cross-correlation with the flipped kernel) of the upstream gradient with the kernel. We write all three twice:
# with plain loops (the definition), then with **im2col** (one matrix product, "the same as an FC layer"), and check
# them against minidl's `conv2d_forward` / `conv2d_backward` pair and against the numerical gradient.
#
# Notation (minidl's, from the im2col docstring): input $x$ of shape $(N, C, H, W)$, kernel $W$ of shape
# $(O, C, KH, KW)$, bias $b$ of shape $(O,)$, stride $(SH, SW)$, padding $(PH, PW)$, output $y$ of shape
# $(N, O, OH, OW)$ with $OH = \lfloor (H + 2PH - KH) / SH \rfloor + 1$.
#
# $$y_{n,o,i,j} = b_o + \sum_{c=0}^{C-1} \sum_{p=0}^{KH-1} \sum_{q=0}^{KW-1} W_{o,c,p,q}\; x_{n,c,\,i\,SH+p,\,j\,SW+q}$$
#
# Settings: `MINIDL_NOTEBOOK_QUICK=1` (the default) uses small arrays; `MINIDL_NOTEBOOK_QUICK=0` times larger ones.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl.data.datasets import CIFAR10Sample
from minidl.gradcheck import check_function
from minidl.nn import functional as F

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
minidl.manual_seed(0)
rng = np.random.default_rng(0)
print("quick mode" if QUICK else "full settings")

# %% [markdown]
# ## The definition: six nested loops
#
# Padding first (zeros around each image), then for every output pixel the sum of an elementwise product of the
# kernel with the input window it covers.


# %%
def pad(x, PH, PW):
    """Zero-pad the last two axes of (N, C, H, W)."""
    return np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))


def conv_loops(x, W, b, stride=1, padding=0):
    N, C, H, W_in = x.shape
    O, _, KH, KW = W.shape
    SH = SW = stride
    PH = PW = padding
    OH = (H + 2 * PH - KH) // SH + 1
    OW = (W_in + 2 * PW - KW) // SW + 1
    xp = pad(x, PH, PW)
    y = np.zeros((N, O, OH, OW), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    window = xp[n, :, i * SH : i * SH + KH, j * SW : j * SW + KW]  # (C, KH, KW)
                    y[n, o, i, j] = np.sum(window * W[o]) + b[o]
    return y


x = rng.standard_normal((2, 3, 7, 7))
W = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
y_loops = conv_loops(x, W, b, stride=2, padding=1)
y_minidl, _ = F.conv2d_forward(x, W, b, stride=2, padding=1)
print("output shape", y_loops.shape, "| max |loops - minidl| =", np.abs(y_loops - minidl.to_numpy(y_minidl)).max())

# %% [markdown]
# ## im2col: the convolution as one matrix product
#
# Copy every input window into a column: `cols` has shape $(C \cdot KH \cdot KW,\; N \cdot OH \cdot OW)$. The kernel
# reshaped to $W_{col}$ of shape $(O,\; C \cdot KH \cdot KW)$ then gives every output at once:
# $y_{col} = W_{col}\, x_{col} + b$, an $(O,\; N \cdot OH \cdot OW)$ matrix reshaped to $(N, O, OH, OW)$.
# The loops run over the $KH \cdot KW$ kernel offsets only, each copying a strided slice of the whole batch.


# %%
def im2col(x, KH, KW, stride, padding):
    N, C, H, W_in = x.shape
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W_in + 2 * padding - KW) // stride + 1
    xp = pad(x, padding, padding)
    cols = np.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for p in range(KH):
        for q in range(KW):
            cols[:, p, q] = xp[:, :, p : p + stride * OH : stride, q : q + stride * OW : stride].transpose(1, 0, 2, 3)
    return cols.reshape(C * KH * KW, N * OH * OW), (OH, OW)


def col2im(cols, x_shape, KH, KW, stride, padding):
    """The adjoint of im2col: add every column back onto the window it came from (overlaps add up)."""
    N, C, H, W_in = x_shape
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W_in + 2 * padding - KW) // stride + 1
    cols = cols.reshape(C, KH, KW, N, OH, OW)
    xp = np.zeros((N, C, H + 2 * padding, W_in + 2 * padding), dtype=cols.dtype)
    for p in range(KH):
        for q in range(KW):
            xp[:, :, p : p + stride * OH : stride, q : q + stride * OW : stride] += cols[:, p, q].transpose(1, 0, 2, 3)
    return xp[:, :, padding : padding + H, padding : padding + W_in]


def conv_forward(x, W, b, stride=1, padding=0):
    O, C, KH, KW = W.shape
    cols, (OH, OW) = im2col(x, KH, KW, stride, padding)
    y = W.reshape(O, -1) @ cols + b[:, None]  # (O, N*OH*OW)
    y = y.reshape(O, x.shape[0], OH, OW).transpose(1, 0, 2, 3)
    return y, (x.shape, cols, W, stride, padding)


y_im2col, _ = conv_forward(x, W, b, stride=2, padding=1)
print("max |im2col - loops| =", np.abs(y_im2col - y_loops).max())

# %% [markdown]
# ## Backward
#
# With the upstream gradient $g_y = \partial L / \partial y$ reshaped to $g_{y,col}$ of shape
# $(O,\; N \cdot OH \cdot OW)$, the deck's three results are, in matrix form:
#
# * $\partial L / \partial b_o = \sum_{n,i,j} g_{y,\,n,o,i,j}$;
# * $\partial L / \partial W_{col} = g_{y,col}\; x_{col}^\top$: the cross-correlation of the input with the upstream
#   gradient (every window times the gradient of the pixel it produced);
# * $\partial L / \partial x = \mathrm{col2im}(W_{col}^\top\, g_{y,col})$: every pixel collects the gradient of each
#   output it contributed to, weighted by the kernel entry that multiplied it, the "full convolution with the flipped
#   kernel" of the deck.


# %%
def conv_backward(gy, cache):
    x_shape, cols, W, stride, padding = cache
    O, C, KH, KW = W.shape
    gy_col = gy.transpose(1, 0, 2, 3).reshape(O, -1)  # (O, N*OH*OW)
    gb = gy_col.sum(axis=1)
    gW = (gy_col @ cols.T).reshape(W.shape)
    gx = col2im(W.reshape(O, -1).T @ gy_col, x_shape, KH, KW, stride, padding)
    return gx, gW, gb


gy = rng.standard_normal(y_im2col.shape)
_, cache = conv_forward(x, W, b, stride=2, padding=1)
ours = conv_backward(gy, cache)
_, minidl_cache = F.conv2d_forward(x, W, b, stride=2, padding=1)
theirs = [minidl.to_numpy(g) for g in F.conv2d_backward(gy, minidl_cache)]
for name, g1, g2 in zip(("gx", "gW", "gb"), ours, theirs, strict=True):
    print(f"{name}: shape {g1.shape}, max |ours - minidl| = {np.abs(g1 - g2).max():.2e}")

# %% [markdown]
# ## Gradient check
#
# The analytic gradients against central differences $\frac{L(\theta + \epsilon) - L(\theta - \epsilon)}{2\epsilon}$
# with $L = \sum y \odot g_y$ for a random $g_y$, in float64. `minidl.gradcheck.check_function` takes any
# `forward(*inputs) -> (out, cache)` / `backward(gy, cache) -> grads` pair, including ours.

# %%
report = check_function(
    lambda x, W, b: conv_forward(x, W, b, stride=2, padding=1),
    conv_backward,
    [x, W, b],
    names=["x", "W", "b"],
)
print(report)

# %% [markdown]
# ## Loops against im2col against minidl
#
# The same convolution timed three ways (the loops only on a small batch: they are slow by construction).

# %%
N = 4 if QUICK else 32
xs = rng.standard_normal((N, 16, 32, 32)).astype(np.float32)
Ws = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
bs = np.zeros(32, np.float32)


def best_time(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


rows = [
    ("loops", best_time(lambda: conv_loops(xs[:1], Ws, bs, padding=1), repeat=1) * N),
    ("im2col (ours)", best_time(lambda: conv_forward(xs, Ws, bs, padding=1))),
    (f"minidl ({minidl.get_backend().name})", best_time(lambda: F.conv2d_forward(xs, Ws, bs, padding=1))),
]
print(f"forward of a ({N}, 16, 32, 32) batch through 32 3x3 filters")
for name, seconds in rows:
    print(f"{name:<22} {seconds * 1e3:10.1f} ms{'  (extrapolated from 1 image)' if 'loops' in name else ''}")

# %% [markdown]
# ## What the filters see
#
# Two hand-made kernels (horizontal and vertical Sobel edges) applied with our im2col convolution to CIFAR-10
# images: each output channel is a map of where its pattern occurs.

# %%
images = CIFAR10Sample(train=False).data[:4].astype(np.float64) / 255  # (4, 32, 32, 3) uint8 -> float
gray = images.mean(axis=3)[:, None]  # (4, 1, 32, 32)
sobel = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
kernels = np.stack([sobel, sobel.T])[:, None]  # (2, 1, 3, 3)
edges, _ = conv_forward(gray, kernels, np.zeros(2), stride=1, padding=1)
fig, axes = plt.subplots(3, 4, figsize=(8, 6))
for k in range(4):
    axes[0, k].imshow(images[k])
    axes[1, k].imshow(edges[k, 0], cmap="gray")
    axes[2, k].imshow(edges[k, 1], cmap="gray")
for ax, title in zip(axes[:, 0], ("image", "horizontal edges", "vertical edges"), strict=True):
    ax.set_ylabel(title)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()
