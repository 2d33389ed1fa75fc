"""The NumPy backend: the readable reference every faster backend is tested against (the *reference mode*).

It has no fast kernels (``kernels`` is empty), so on it every op in :mod:`minidl.nn.functional` runs the code in
its docstring. A faster backend lists the pairs it replaces in its own ``kernels`` table of :class:`KernelPair`
(see :mod:`minidl.nn.dispatch`); it does not override the primitives below, which belong to the reference pairs.

Notation (used in every kernel below):
    N: batch size.  C: channels.  H, W: input height and width.
    KH, KW: kernel height and width.  SH, SW: strides.  PH, PW: zero padding on each side.
    DH, DW: dilation.  OH, OW: output height and width, OH = floor((H + 2 PH - DH (KH - 1) - 1) / SH) + 1.

Primitives the reference pairs call (arguments are arrays and ints only):
    im2col(x, KH, KW, SH, SW, PH, PW, DH, DW) -> cols (C*KH*KW, N*OH*OW)
    col2im(cols, x_shape, KH, KW, SH, SW, PH, PW, DH, DW) -> dx (N, C, H, W)
    max_pool2d_forward(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW) -> (out, argmax)
    max_pool2d_backward(dout, argmax, x_shape, KH, KW, SH, SW, PH, PW, DH, DW) -> dx
    avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override) -> out
    avg_pool2d_backward(dout, x_shape, KH, KW, SH, SW, PH, PW, count_include_pad, divisor_override) -> dx
    adaptive_avg_pool2d_forward(x, OH, OW) -> out;  adaptive_avg_pool2d_backward(dout, x_shape) -> dx
    adaptive_max_pool2d_forward(x, OH, OW) -> (out, indices);  adaptive_max_pool2d_backward(dout, indices, x_shape)
Pooling kernels take the output size (OH, OW) from the caller, which applies PyTorch's floor/ceil_mode rule.

The primitives are written against ``self.xp`` rather than ``numpy`` directly, so the CuPy backend inherits them as
a working GPU implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy


class KernelPair(NamedTuple):
    """A backend's fast version of one reference pair (an entry of ``backend.kernels``; see
    :mod:`minidl.nn.dispatch`).

    Attributes:
        forward: ``forward(prepared, *args, **kwargs) -> (out, cache)``: the reference forward's arguments, after
            ``prepared``, the result of the op's setup (the validation the reference runs first). ``out`` is what
            the reference returns; ``cache`` is the kernel's own, for its ``backward``.
        backward: ``backward(dout, cache, **kwargs)``: the same gradients the reference backward returns.
        accepts: ``accepts(*args, **kwargs) -> bool``, called before the setup on the raw arguments: False hands a
            case the kernel does not cover to the reference. None: every case.
        shares: the fields of the reference's cache that the kernel's cache has too, under the same names and with
            the same values: a :class:`~minidl.nn.dispatch.KernelCache` reads them through (``attn_weights``).
    """

    forward: Callable[..., Any]
    backward: Callable[..., Any]
    accepts: Callable[..., bool] | None = None
    shares: tuple[str, ...] = ()


class NumpyBackend:
    """Reference backend: NumPy arrays, vectorized NumPy kernels."""

    name = "numpy"
    xp: Any = numpy
    #: where arrays of this backend live; backends with the same device can share arrays without a copy.
    device = "cpu"
    #: the pairs of minidl.nn.functional this backend replaces with fast kernels: op name -> KernelPair. None here.
    kernels: Mapping[str, KernelPair] = MappingProxyType({})

    # ------------------------------------------------------------------ arrays
    def is_array(self, a: Any) -> bool:
        """True if ``a`` is an array of this backend's array module."""
        return isinstance(a, self.xp.ndarray)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of this backend (copied from another device if needed)."""
        if type(a).__module__.startswith("cupy") and self.xp is numpy:
            a = a.get()
        return self.xp.asarray(a, dtype=dtype)

    def __repr__(self) -> str:
        return f"<minidl backend {self.name!r} ({self.xp.__name__}, {self.device})>"

    def __reduce__(self) -> tuple[Any, ...]:
        """A backend is one object per name: copying or unpickling one gives that object."""
        from minidl.backend import get_backend

        return (get_backend, (self.name,))

    # ------------------------------------------------------------------ what the fused modules ask
    def conv2d_takes_channel_sums(
        self, x: Any, weight: Any, stride: tuple[int, int], padding: tuple[int, int, int, int],
        dilation: tuple[int, int], groups: int,
    ) -> bool:  # fmt: skip
        """Whether ``conv2d_forward(x, weight, ..., channel_sums=sums)`` adds up the sums as its output pass writes
        the output here, so that a BatchNorm taking them saves a pass over that output (``stride`` and ``dilation``
        (SH, SW) and (DH, DW), ``padding`` (top, bottom, left, right)). What a fused ``ConvBn2d`` asks before it
        asks for them (:meth:`minidl.nn.ConvBn2d.sums_for_batch_norm`). False here: the reference sums its output
        after the convolution, which costs what the BatchNorm's own first pass costs."""
        return False

    def conv2d_reads_bn_relu(
        self, x: Any, weight: Any, stride: tuple[int, int], padding: tuple[int, int, int, int],
        dilation: tuple[int, int], groups: int,
    ) -> bool:  # fmt: skip
        """Whether ``conv2d_forward`` of a deferred BatchNorm+ReLU output whose input is x
        (:class:`~minidl.nn.BatchNormReLUOutput`) applies it as it reads x here, never writing the
        BatchNorm's output to memory: what a ResNet block asks before it defers its ``bn1`` to ``conv2``
        (:meth:`minidl.nn.ConvBn2d.reads_batch_norm_relu`; arguments as :meth:`conv2d_takes_channel_sums`'). False
        here: the reference computes that output first, a pass of its own as the BatchNorm's."""
        return False

    # ------------------------------------------------------------------ convolution: im2col / col2im
    def im2col(self, x: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int) -> Any:
        """Unfold every (dilated) KH x KW window of ``x`` into one column.

        Layout: ``cols`` has shape (C * KH * KW, N * OH * OW): row ``(c, kh, kw)`` (C-order), column ``(n, oh, ow)``,
        ``cols[(c, kh, kw), (n, oh, ow)] = x_pad[n, c, oh * SH + kh * DH, ow * SW + kw * DW]`` where ``x_pad`` is
        ``x`` zero-padded by PH rows and PW columns on each side. With the weight as a (O, C * KH * KW) matrix,
        the convolution is one GEMM, ``W_col @ cols`` -> (O, N * OH * OW), and ``dW = dout_col @ cols.T`` is one
        GEMM too (no copy of ``cols`` is transposed). With groups, the row blocks of ``cols`` are contiguous per group.

        Built with one strided copy per kernel offset (KH * KW of them), each moving a (C, N, OH, OW) block.

        Args:
            x: (N, C, H, W).
            KH, KW, SH, SW, PH, PW, DH, DW: kernel size, stride, zero padding and dilation.
        Returns:
            cols: (C * KH * KW, N * OH * OW), contiguous, dtype of ``x``.
        """
        xp = self.xp
        N, C, H, W = x.shape
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        # pad and move channels first in one copy: x_pad (C, N, H + 2 PH, W + 2 PW)
        x_pad = xp.zeros((C, N, H + 2 * PH, W + 2 * PW), dtype=x.dtype)
        x_pad[:, :, PH : PH + H, PW : PW + W] = x.transpose(1, 0, 2, 3)
        cols = xp.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
        for kh in range(KH):
            h0 = kh * DH
            for kw in range(KW):
                w0 = kw * DW
                cols[:, kh, kw] = x_pad[:, :, h0 : h0 + SH * (OH - 1) + 1 : SH, w0 : w0 + SW * (OW - 1) + 1 : SW]
        return cols.reshape(C * KH * KW, N * OH * OW)

    def col2im(
        self,
        cols: Any,
        x_shape: tuple[int, ...],
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        DH: int,
        DW: int,
    ) -> Any:
        """The adjoint of :meth:`im2col`: add every column back onto the window it came from.

        ``dx[n, c, h, w] = sum of cols[(c, kh, kw), (n, oh, ow)] over all (kh, kw, oh, ow) with
        oh * SH + kh * DH - PH = h and ow * SW + kw * DW - PW = w``. Overlapping windows (stride < kernel) add up,
        which is why this is a sum and not a copy. One strided slice-add per kernel offset (no ``np.add.at``).

        Args:
            cols: (C * KH * KW, N * OH * OW), the layout of :meth:`im2col`.
            x_shape: (N, C, H, W) of the image to rebuild.
        Returns:
            dx: (N, C, H, W), contiguous, dtype of ``cols``.
        """
        xp = self.xp
        N, C, H, W = x_shape
        OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
        OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        cols = cols.reshape(C, KH, KW, N, OH, OW)
        dx_pad = xp.zeros((C, N, H + 2 * PH, W + 2 * PW), dtype=cols.dtype)
        for kh in range(KH):
            h0 = kh * DH
            for kw in range(KW):
                w0 = kw * DW
                dx_pad[:, :, h0 : h0 + SH * (OH - 1) + 1 : SH, w0 : w0 + SW * (OW - 1) + 1 : SW] += cols[:, kh, kw]
        return xp.ascontiguousarray(dx_pad[:, :, PH : PH + H, PW : PW + W].transpose(1, 0, 2, 3))

    # ------------------------------------------------------------------ pooling helpers
    def _pad_for_pool(
        self,
        x: Any,
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        DH: int,
        DW: int,
        OH: int,
        OW: int,
        fill: float,
    ) -> Any:
        """``x`` padded by PH/PW on the top/left, and on the bottom/right by as much as the last window needs
        (at least PH/PW; more in ceil mode), with ``fill``."""
        xp = self.xp
        N, C, H, W = x.shape
        HP = max(H + 2 * PH, (OH - 1) * SH + (KH - 1) * DH + 1)
        WP = max(W + 2 * PW, (OW - 1) * SW + (KW - 1) * DW + 1)
        if HP == H and WP == W:
            return x
        x_pad = xp.full((N, C, HP, WP), fill, dtype=x.dtype)
        x_pad[:, :, PH : PH + H, PW : PW + W] = x
        return x_pad

    # ------------------------------------------------------------------ max pooling
    def max_pool2d_forward(
        self, x: Any, KH: int, KW: int, SH: int, SW: int, PH: int, PW: int, DH: int, DW: int, OH: int, OW: int
    ) -> tuple[Any, Any]:
        """Max over each (dilated) KH x KW window; the caller chooses OH, OW (floor or ceil mode).

        Padding is -inf, so it never wins. Ties go to the first maximum in scan order (kh, then kw), as in PyTorch;
        a NaN in a window wins (it propagates), as in PyTorch.

        Args:
            x: (N, C, H, W).
        Returns:
            out: (N, C, OH, OW).
            argmax: (N, C, OH, OW) int32, the kernel offset ``kh * KW + kw`` of each window's maximum (what
                :meth:`max_pool2d_backward` needs; the input position is ``(oh * SH - PH + kh * DH,
                ow * SW - PW + kw * DW)``).
        """
        xp = self.xp
        x_pad = self._pad_for_pool(x, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, -xp.inf)
        out = None
        argmax = xp.zeros((x.shape[0], x.shape[1], OH, OW), dtype=xp.int32)
        for kh in range(KH):
            h0 = kh * DH
            for kw in range(KW):
                w0 = kw * DW
                window = x_pad[:, :, h0 : h0 + SH * (OH - 1) + 1 : SH, w0 : w0 + SW * (OW - 1) + 1 : SW]
                if out is None:
                    out = window.copy()
                    continue
                better = (window > out) | xp.isnan(window)
                xp.copyto(out, window, where=better)
                xp.copyto(argmax, kh * KW + kw, where=better)
        return out, argmax

    def max_pool2d_backward(
        self,
        dout: Any,
        argmax: Any,
        x_shape: tuple[int, ...],
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        DH: int,
        DW: int,
    ) -> Any:
        """Route each ``dout[n, c, oh, ow]`` to the input position its window's maximum came from.

        ``dx[n, c, h, w] = sum of dout over the windows whose argmax is (h, w)`` (a sum: windows overlap when
        SH < KH). One masked slice-add per kernel offset.

        Returns:
            dx: (N, C, H, W), dtype of ``dout``.
        """
        xp = self.xp
        N, C, H, W = x_shape
        OH, OW = dout.shape[2], dout.shape[3]
        HP = max(H + 2 * PH, (OH - 1) * SH + (KH - 1) * DH + 1)
        WP = max(W + 2 * PW, (OW - 1) * SW + (KW - 1) * DW + 1)
        dx_pad = xp.zeros((N, C, HP, WP), dtype=dout.dtype)
        zero = xp.zeros((), dtype=dout.dtype)
        for kh in range(KH):
            h0 = kh * DH
            for kw in range(KW):
                w0 = kw * DW
                dx_pad[:, :, h0 : h0 + SH * (OH - 1) + 1 : SH, w0 : w0 + SW * (OW - 1) + 1 : SW] += xp.where(
                    argmax == kh * KW + kw, dout, zero
                )
        return xp.ascontiguousarray(dx_pad[:, :, PH : PH + H, PW : PW + W])

    # ------------------------------------------------------------------ average pooling
    def _avg_pool_divisor(
        self,
        H: int,
        W: int,
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        OH: int,
        OW: int,
        count_include_pad: int,
        divisor_override: int,
        dtype: Any,
    ) -> Any:
        """(OH, OW) divisors, PyTorch's rule: the window clipped to the padded input [-P, H + P) when counting
        padding, else to the input [0, H); ``divisor_override`` (> 0) replaces it."""
        xp = self.xp
        if divisor_override > 0:
            return xp.full((OH, OW), float(divisor_override), dtype=dtype)

        def counts(size: int, K: int, S: int, P: int, O: int) -> Any:
            start = xp.arange(O) * S - P
            end = xp.minimum(start + K, size + P)
            if not count_include_pad:
                start, end = xp.maximum(start, 0), xp.minimum(end, size)
            return (end - start).astype(dtype)

        return counts(H, KH, SH, PH, OH)[:, None] * counts(W, KW, SW, PW, OW)[None, :]

    def avg_pool2d_forward(
        self,
        x: Any,
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        OH: int,
        OW: int,
        count_include_pad: int,
        divisor_override: int,
    ) -> Any:
        """Mean over each KH x KW window; the caller chooses OH, OW (floor or ceil mode).

        ``out = (sum of the window, zero padded) / divisor`` where the divisor counts the window's cells inside
        the padded input (``count_include_pad``) or inside the input only; ``divisor_override > 0`` replaces it
        (0 means none). Windows that run past the padded input in ceil mode are clipped, as in PyTorch.

        Returns:
            out: (N, C, OH, OW).
        """
        x_pad = self._pad_for_pool(x, KH, KW, SH, SW, PH, PW, 1, 1, OH, OW, 0.0)
        out = self.xp.zeros((x.shape[0], x.shape[1], OH, OW), dtype=x.dtype)
        for kh in range(KH):
            for kw in range(KW):
                out += x_pad[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW]
        H, W = x.shape[2], x.shape[3]
        out /= self._avg_pool_divisor(
            H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override, x.dtype
        )
        return out

    def avg_pool2d_backward(
        self,
        dout: Any,
        x_shape: tuple[int, ...],
        KH: int,
        KW: int,
        SH: int,
        SW: int,
        PH: int,
        PW: int,
        count_include_pad: int,
        divisor_override: int,
    ) -> Any:
        """``dx[n, c, h, w] = sum over the windows containing (h, w) of dout / divisor`` (slice-add per offset).

        Returns:
            dx: (N, C, H, W), dtype of ``dout``.
        """
        xp = self.xp
        N, C, H, W = x_shape
        OH, OW = dout.shape[2], dout.shape[3]
        scaled = dout / self._avg_pool_divisor(
            H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override, dout.dtype
        )
        HP = max(H + 2 * PH, (OH - 1) * SH + KH)
        WP = max(W + 2 * PW, (OW - 1) * SW + KW)
        dx_pad = xp.zeros((N, C, HP, WP), dtype=dout.dtype)
        for kh in range(KH):
            for kw in range(KW):
                dx_pad[:, :, kh : kh + SH * (OH - 1) + 1 : SH, kw : kw + SW * (OW - 1) + 1 : SW] += scaled
        return xp.ascontiguousarray(dx_pad[:, :, PH : PH + H, PW : PW + W])

    # ------------------------------------------------------------------ adaptive pooling
    def adaptive_bins(self, size: int, out_size: int) -> tuple[Any, Any]:
        """PyTorch's adaptive bins along one axis: bin i is [floor(i * size / O), ceil((i + 1) * size / O)).

        Returns:
            (start, end): two int64 arrays of length ``out_size`` (host NumPy arrays; they are small).
        """
        i = numpy.arange(out_size)
        start = (i * size) // out_size
        end = -((-(i + 1) * size) // out_size)  # ceil division in integers
        return start, end

    def _adaptive_matrix(self, size: int, out_size: int, dtype: Any) -> Any:
        """(out_size, size) averaging matrix A with A[i, h] = 1 / len(bin i) for h in bin i, else 0."""
        start, end = self.adaptive_bins(size, out_size)
        h = numpy.arange(size)
        inside = (h[None, :] >= start[:, None]) & (h[None, :] < end[:, None])
        return self.xp.asarray(inside / (end - start)[:, None], dtype=dtype)

    def adaptive_avg_pool2d_forward(self, x: Any, OH: int, OW: int) -> Any:
        """Mean over PyTorch's adaptive bins (see :meth:`adaptive_bins`).

        The bins are separable, so ``out[n, c] = A_H @ x[n, c] @ A_W.T`` with the (OH, H) and (OW, W) averaging
        matrices; when OH divides H and OW divides W the bins are plain non-overlapping blocks (a reshape-mean).

        Returns:
            out: (N, C, OH, OW).
        """
        N, C, H, W = x.shape
        if H % OH == 0 and W % OW == 0:
            return x.reshape(N, C, OH, H // OH, OW, W // OW).mean(axis=(3, 5))
        a_h = self._adaptive_matrix(H, OH, x.dtype)
        a_w = self._adaptive_matrix(W, OW, x.dtype)
        return a_h @ (x @ a_w.T)

    def adaptive_avg_pool2d_backward(self, dout: Any, x_shape: tuple[int, ...]) -> Any:
        """``dx[n, c] = A_H.T @ dout[n, c] @ A_W``: each output's gradient spread evenly over its bin.

        Returns:
            dx: (N, C, H, W).
        """
        xp = self.xp
        N, C, H, W = x_shape
        OH, OW = dout.shape[2], dout.shape[3]
        if H % OH == 0 and W % OW == 0:
            kh, kw = H // OH, W // OW
            dx = xp.broadcast_to((dout / (kh * kw))[:, :, :, None, :, None], (N, C, OH, kh, OW, kw))
            return xp.ascontiguousarray(dx).reshape(N, C, H, W)
        a_h = self._adaptive_matrix(H, OH, dout.dtype)
        a_w = self._adaptive_matrix(W, OW, dout.dtype)
        return xp.ascontiguousarray(a_h.T @ (dout @ a_w))

    def adaptive_max_pool2d_forward(self, x: Any, OH: int, OW: int) -> tuple[Any, Any]:
        """Max over PyTorch's adaptive bins; ties go to the first maximum (row-major), NaN propagates.

        When OH divides H and OW divides W the bins are plain blocks (a reshape and one argmax). Otherwise it loops
        over the offsets inside the largest bin; a smaller bin repeats its last row/column, which never wins a
        strict comparison, so the first maximum is kept.

        Returns:
            out: (N, C, OH, OW).
            indices: (N, C, OH, OW) int64, the flat input position ``h * W + w`` of each maximum (PyTorch's
                ``return_indices``).
        """
        xp = self.xp
        N, C, H, W = x.shape
        h_start, h_end = self.adaptive_bins(H, OH)
        w_start, w_end = self.adaptive_bins(W, OW)
        if H % OH == 0 and W % OW == 0:
            kh, kw = H // OH, W // OW
            blocks = x.reshape(N, C, OH, kh, OW, kw).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, OH, OW, kh * kw)
            local = blocks.argmax(axis=-1)  # the first maximum (or the first NaN)
            out = xp.take_along_axis(blocks, local[..., None], axis=-1)[..., 0]
            h = xp.arange(OH)[:, None] * kh + local // kw
            w = xp.arange(OW)[None, :] * kw + local % kw
            return out, (h * W + w).astype(xp.int64)
        out = None
        indices = None
        for dh in range(int((h_end - h_start).max())):
            rows = xp.asarray(numpy.minimum(h_start + dh, h_end - 1))
            for dw in range(int((w_end - w_start).max())):
                cols = xp.asarray(numpy.minimum(w_start + dw, w_end - 1))
                window = x[:, :, rows[:, None], cols[None, :]]
                flat = xp.broadcast_to(rows[:, None] * W + cols[None, :], window.shape)
                if out is None:
                    out, indices = window.copy(), flat.astype(xp.int64)
                    continue
                better = (window > out) | xp.isnan(window)
                xp.copyto(out, window, where=better)
                xp.copyto(indices, flat, where=better)
        return out, indices

    def adaptive_max_pool2d_backward(self, dout: Any, indices: Any, x_shape: tuple[int, ...]) -> Any:
        """Scatter-add ``dout`` to the flat input positions ``indices`` (bins may overlap, so it is a sum).

        ``xp.add.at`` adds repeated positions one after the other (a plain ``dx[i] += v`` would keep only one of
        them). It reads nothing back to the host, unlike ``bincount``, whose CuPy version checks the indices and
        sizes its output on the host (two device synchronizations per call).

        Returns:
            dx: (N, C, H, W), dtype of ``dout``.
        """
        xp = self.xp
        N, C, H, W = x_shape
        base = (xp.arange(N * C, dtype=xp.int64) * (H * W)).reshape(N, C, 1, 1)
        dx = xp.zeros(N * C * H * W, dtype=dout.dtype)
        xp.add.at(dx, (indices + base).ravel(), dout.ravel())
        return dx.reshape(N, C, H, W)
