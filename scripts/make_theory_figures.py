"""Draw the figures of the theory pages (docs/theory/*.md) into docs/img/theory/.

Run from the repository root:  python scripts/make_theory_figures.py
The figures are deterministic (no random draws but a seeded generator, no timestamps in the PNGs), so running the
script again rewrites the same files. Each is a small PNG (well under 100 KB).

Figures:
    im2col.png          a 1-channel 4 x 4 input, a 3 x 3 kernel, stride 1: the four windows become the four
                        columns of x_col (KH KW = 9 rows, OH OW = 4 columns), and W_col @ x_col is the convolution.
    col2im.png          col2im, the adjoint: every column is added back onto its window, so an input pixel gets the
                        sum of the gradients of every window it is in (here the count of windows).
    conv_backward.png   the Georgia Tech index form: dL/dk is the cross-correlation of the input with dL/dy; dL/dx
                        is dL/dy zero-padded by KH - 1, KW - 1 and cross-correlated with the flipped kernel.
    maxpool.png         2 x 2 max pooling, stride 2: forward picks each window's maximum, backward routes dL/dy there.
    init_std.png        the standard deviation of the activations through a 10-layer ReLU network for three
                        initializations (N(0, 0.01^2), Xavier/Glorot, Kaiming/He).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; the Agg renderer is deterministic

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "theory"
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]  # one per output pixel / window
DPI = 100


def _grid(ax, values, x0, y0, *, labels=None, face=None, title=None, fontsize=9):
    """Draw a matrix of cells with its top-left corner at (x0, y0) (y grows downwards); returns its extent."""
    rows, cols = np.shape(values)
    for r in range(rows):
        for c in range(cols):
            color = "white" if face is None else face[r][c]
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=color, edgecolor="black", linewidth=0.8))
            text = labels[r][c] if labels is not None else f"{values[r][c]:g}"
            ax.text(x0 + c + 0.5, y0 + r + 0.5, text, ha="center", va="center", fontsize=fontsize)
    if title:
        ax.text(x0 + cols / 2, y0 - 0.35, title, ha="center", va="bottom", fontsize=10)
    return x0 + cols, y0 + rows


def _frame(ax, r0, c0, h, w, x0, y0, color, inset=0.0, lw=2.5):
    ax.add_patch(
        Rectangle(
            (x0 + c0 + inset, y0 + r0 + inset),
            w - 2 * inset,
            h - 2 * inset,
            fill=False,
            edgecolor=color,
            linewidth=lw,
        )
    )


def _finish(fig, ax, width, height, name):
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(height, -1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    path = OUT / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def im2col_figure():
    H = W = 4
    KH = KW = 3
    OH, OW = H - KH + 1, W - KW + 1
    fig, ax = plt.subplots(figsize=(9.0, 4.6))
    labels = [[f"x{r}{c}" for c in range(W)] for r in range(H)]
    _grid(ax, np.zeros((H, W)), 0, 2.5, labels=labels, title="x (4 x 4), 3 x 3 windows")
    for k, (i, j) in enumerate([(i, j) for i in range(OH) for j in range(OW)]):
        _frame(ax, i, j, KH, KW, 0, 2.5, COLORS[k], inset=0.06 + 0.06 * k)
    # x_col: row (p, q), column (i, j): x[i + p, j + q]
    x0 = 7.5
    col_labels = [[f"x{i + p}{j + q}" for i in range(OH) for j in range(OW)] for p in range(KH) for q in range(KW)]
    face = [[matplotlib.colors.to_rgba(COLORS[k], 0.25) for k in range(OH * OW)] for _ in range(KH * KW)]
    _grid(ax, np.zeros((KH * KW, OH * OW)), x0, 0, labels=col_labels, face=face, title="x_col = im2col(x)")
    ax.text(x0 - 0.15, -0.1, "row (p, q)", ha="right", va="bottom", fontsize=8)
    for r, (p, q) in enumerate([(p, q) for p in range(KH) for q in range(KW)]):
        ax.text(x0 - 0.15, r + 0.5, f"({p},{q})", ha="right", va="center", fontsize=8)
    for k, (i, j) in enumerate([(i, j) for i in range(OH) for j in range(OW)]):
        ax.text(x0 + k + 0.5, KH * KW + 0.45, f"({i},{j})", ha="center", va="top", fontsize=8, color=COLORS[k])
    ax.text(x0 + 2, KH * KW + 1.1, "column = output pixel (i, j)", ha="center", va="top", fontsize=9)
    # W_col @ x_col
    x1 = x0 + OH * OW + 1.0
    w_labels = [[f"k{p}{q}" for p in range(KH) for q in range(KW)]]
    _grid(ax, np.zeros((1, KH * KW)), x1, 3, labels=w_labels, title="W_col (O = 1, C KH KW = 9)", fontsize=8)
    ax.text(x1 + 4.5, 4.5, "W_col @ x_col = y as (O, N OH OW)", ha="center", va="top", fontsize=9)
    ax.text(x1 + 4.5, 5.3, "y[i, j] = sum over (p, q) of k[p, q] x[i + p, j + q]", ha="center", va="top", fontsize=9)
    return _finish(fig, ax, x1 + KH * KW, KH * KW + 1.5, "im2col.png")


def col2im_figure():
    H = W = 4
    KH = KW = 3
    OH, OW = H - KH + 1, W - KW + 1
    count = np.zeros((H, W))
    for i in range(OH):
        for j in range(OW):
            count[i : i + KH, j : j + KW] += 1
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    face = [[matplotlib.colors.to_rgba("#4C72B0", 0.12 + 0.2 * count[r, c]) for c in range(W)] for r in range(H)]
    col_labels = [["1"] * (OH * OW) for _ in range(KH * KW)]
    faces = [[matplotlib.colors.to_rgba(COLORS[k], 0.25) for k in range(OH * OW)] for _ in range(KH * KW)]
    _grid(ax, np.ones((KH * KW, OH * OW)), 0, 0, labels=col_labels, face=faces, title="dx_col (all ones)")
    ax.annotate("", xy=(6.2, 4.5), xytext=(4.6, 4.5), arrowprops={"arrowstyle": "->", "lw": 1.5})
    ax.text(5.4, 4.1, "col2im", ha="center", va="bottom", fontsize=10)
    _grid(ax, count, 6.5, 2.5, face=face, title="dx = col2im(dx_col)")
    for k, (i, j) in enumerate([(i, j) for i in range(OH) for j in range(OW)]):
        _frame(ax, i, j, KH, KW, 6.5, 2.5, COLORS[k], inset=0.06 + 0.06 * k, lw=2.0)
    ax.text(
        8.5, 7.0, "each pixel receives the sum of the\ncolumns of every window it is in\n(im2col copied it into each)",
        ha="center", va="top", fontsize=9,
    )  # fmt: skip
    return _finish(fig, ax, 11, 9.5, "col2im.png")


def conv_backward_figure():
    x = np.arange(16, dtype=float).reshape(4, 4)
    k = np.array([[1.0, 2.0], [3.0, 4.0]])
    dy = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    fig, ax = plt.subplots(figsize=(10.5, 4.4))
    # (a) dL/dk(a, b) = sum_{r,c} dy(r, c) x(r + a, c + b): slide dy (3x3) over x (4x4) -> 2x2
    _grid(ax, x, 0, 1, title="x (4x4)")
    _frame(ax, 0, 0, 3, 3, 0, 1, COLORS[0], inset=0.06)
    _frame(ax, 0, 1, 3, 3, 0, 1, COLORS[1], inset=0.14)
    _grid(ax, dy, 5, 1.5, title="dL/dy (3x3)")
    dk = np.array([[np.sum(dy * x[a : a + 3, b : b + 3]) for b in range(2)] for a in range(2)])
    _grid(ax, dk, 9, 2, face=[[matplotlib.colors.to_rgba(COLORS[b], 0.3) for b in range(2)]] * 2, title="dL/dk")
    ax.text(5.5, 6.0, "(a) dL/dk = x cross-correlated with dL/dy", ha="center", va="top", fontsize=10)
    # (b) dL/dx(r', c') = sum_{a,b} dy(r' - a, c' - b) k(a, b): pad dy by 1, cross-correlate with flipped k
    x0 = 13.0
    dy_pad = np.pad(dy, 1)
    face = [[("#eeeeee" if (r in (0, 4) or c in (0, 4)) else "white") for c in range(5)] for r in range(5)]
    _grid(ax, dy_pad, x0, 0, face=face, title="dL/dy padded by KH-1, KW-1")
    _frame(ax, 0, 0, 2, 2, x0, 0, COLORS[2], inset=0.06)
    k_flip = k[::-1, ::-1]
    _grid(ax, k_flip, x0 + 6, 1.5, title="flipped k")
    dx = np.array([[np.sum(dy_pad[r : r + 2, c : c + 2] * k_flip) for c in range(4)] for r in range(4)])
    face_dx = [[("white" if (r, c) != (0, 0) else matplotlib.colors.to_rgba(COLORS[2], 0.3)) for c in range(4)]
               for r in range(4)]  # fmt: skip
    _grid(ax, dx, x0 + 9, 0.5, face=face_dx, title="dL/dx (4x4)")
    ax.text(x0 + 6.5, 6.0, "(b) dL/dx = full convolution of dL/dy with k", ha="center", va="top", fontsize=10)
    return _finish(fig, ax, x0 + 13, 6.6, "conv_backward.png")


def maxpool_figure():
    x = np.array([[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 7.0], [0.0, 2.0, 1.0, 1.0], [6.0, 1.0, 3.0, 9.0]])
    y = x.reshape(2, 2, 2, 2).max(axis=(1, 3))
    dy = np.array([[0.1, 0.2], [0.3, 0.4]])
    dx = np.zeros_like(x)
    face = [["white"] * 4 for _ in range(4)]
    for i in range(2):
        for j in range(2):
            window = x[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            p, q = np.unravel_index(np.argmax(window), window.shape)
            dx[2 * i + p, 2 * j + q] = dy[i, j]
            face[2 * i + p][2 * j + q] = matplotlib.colors.to_rgba(COLORS[2 * i + j], 0.35)
    fig, ax = plt.subplots(figsize=(9.5, 3.4))
    _grid(ax, x, 0, 0, face=face, title="x")
    for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        _frame(ax, 2 * i, 2 * j, 2, 2, 0, 0, COLORS[k], inset=0.06)
    y_face = [[matplotlib.colors.to_rgba(COLORS[2 * i + j], 0.35) for j in range(2)] for i in range(2)]
    _grid(ax, y, 5.5, 1, face=y_face, title="y = max_pool2d(x, 2)")
    _grid(ax, dy, 9.5, 1, face=y_face, title="dL/dy")
    _grid(ax, dx, 13, 0, face=face, title="dL/dx")
    ax.text(8.5, 4.5, "each window's gradient goes to its argmax; the other cells get 0", ha="center", va="top")
    return _finish(fig, ax, 17, 5.2, "maxpool.png")


def init_std_figure():
    rng = np.random.default_rng(0)
    D, layers, N = 512, 10, 256
    x0 = rng.standard_normal((N, D))
    inits = {
        "N(0, 0.01^2)": lambda: 0.01 * rng.standard_normal((D, D)),
        "Xavier: std = sqrt(2 / (fan_in + fan_out))": lambda: rng.standard_normal((D, D)) * np.sqrt(2.0 / (D + D)),
        "Kaiming: std = sqrt(2 / fan_in)": lambda: rng.standard_normal((D, D)) * np.sqrt(2.0 / D),
    }
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    for (name, draw), color in zip(inits.items(), COLORS, strict=False):
        x, stds = x0, []
        for _ in range(layers):
            x = np.maximum(x @ draw(), 0)
            stds.append(x.std())
        ax.semilogy(range(1, layers + 1), stds, "o-", color=color, label=name, markersize=4)
    ax.set_xlabel("layer (Linear 512 -> 512, then ReLU)")
    ax.set_ylabel("std of the activations")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    path = OUT / "init_std.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


FIGURES = [im2col_figure, col2im_figure, conv_backward_figure, maxpool_figure, init_std_figure]


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for draw in FIGURES:
        path = draw()
        size = path.stat().st_size
        print(f"{path.relative_to(ROOT)}: {size / 1024:.0f} KB")
        if size > 100 * 1024:
            raise SystemExit(f"{path} is {size} bytes, over the 100 KB budget of a theory figure")


if __name__ == "__main__":
    main()
