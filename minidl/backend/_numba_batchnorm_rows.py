"""The methods of the Numba backend that run the channels-last BatchNorm kernels (``_numba_batchnorm_cl.py``): what
:class:`~minidl.backend._numba_batchnorm.BatchNormKernelsMixin` calls for a ``channels_last`` input, and the kernel
pair ``batch_norm_add_relu``, which runs only for such inputs. They lay out the arrays, cut the rows into chunks and
run the kernels' compiled loops on the pool's threads."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.backend import _threads
from minidl.backend._numba_batchnorm import _statistics_of
from minidl.backend._numba_batchnorm_cl import (
    _NO_MASK,
    _both_passes,
    _row_chunks,
    _tile,
    _tile_size,
    batch_norm_add_relu_rows,
    batch_norm_apply_rows,
    batch_norm_backward_loop,
    batch_norm_train_loop,
    channel_sums_loop,
)
from minidl.backend._numba_common import _NATIVE, _as_nhwc, _nhwc
from minidl.backend._numba_kernels import epilogue, shifted_sums_planes


class BatchNormRowsMixin:
    """The ``channels_last`` half of the BatchNorm pairs: what
    :class:`~minidl.backend._numba_batchnorm.BatchNormKernelsMixin` runs for such an input; and the kernel pair
    ``batch_norm_add_relu``, which runs only for such inputs."""

    _add_in_order: Any
    _affine_vectors: Any
    _batch_norm_accepts: Any
    _batch_norm_forward: Any
    _channel_tasks: Any

    def _batch_norm_add_relu_accepts(self, input: Any, residual: Any, *args: Any, **kwargs: Any) -> bool:
        """A float32 or float64 ``channels_last`` input and a residual of its shape and dtype, ``channels_last`` too
        (the reference, batch_norm then add_relu, runs the others)."""
        return (
            self._batch_norm_accepts(input)
            and _nhwc(input) is not None
            and isinstance(residual, np.ndarray)
            and residual.shape == input.shape
            and residual.dtype == input.dtype
            and _nhwc(residual) is not None
        )

    def _batch_norm_add_relu_forward(self, prepared: Any, input: Any, residual: Any, *args: Any, **kwargs: Any) -> Any:
        """``relu(batch_norm(x) + residual)``: :meth:`_batch_norm_forward` (the same statistics and running-average
        updates) with the sum and the ReLU in its normalize pass (:func:`batch_norm_add_relu_rows`), which also
        writes the ReLU's mask. Cache: the BatchNorm's and the mask."""
        mask = np.empty(_nhwc(input).shape, dtype=bool)  # (N, H, W, C): a channels_last mask, as the output
        out, bn_cache = self._batch_norm_forward(prepared, input, *args, **kwargs, joined=(_nhwc(residual), mask))
        return out, (bn_cache, mask.transpose(0, 3, 1, 2))

    def _batch_norm_add_relu_backward(self, dout: Any, cache: Any) -> tuple[Any, Any, Any, Any]:
        """``(dx, dresidual, dweight, dbias)``: dz = dout where the mask (the ``add_relu`` kernel's backward), the
        residual's gradient; then the BatchNorm's backward of dz. The first pass of that backward computes each chunk
        of dz just before it sums the chunk (:meth:`_batch_norm_backward_rows` with the mask), so dz is read back
        from the cache, not from memory, and no region runs before it."""
        (x, mean, inv_std, weight, bias, training, relu_max), mask = cache
        return self._batch_norm_backward_rows(dout, _nhwc(x), mean, inv_std, weight, bias, training, relu_max, mask)

    def _batch_norm_train_rows(
        self, xh: Any, gamma: Any, beta: Any, eps: float, relu_max: float | None, joined: Any = None,
        sums: Any = None,
    ) -> tuple[Any, Any, Any, Any]:  # fmt: skip
        """:meth:`_batch_norm_train` of a ``channels_last`` x (``xh`` its (N, H, W, C) view), in one parallel
        region (:func:`batch_norm_train_loop`): the chunks' sums (:func:`batch_norm_sums_rows`), the statistics from
        them (:func:`batch_norm_stats_rows`), then the normalization of the chunks (:func:`batch_norm_apply_rows`;
        with ``joined``, the (N, H, W, C) views of a residual and of a bool mask to fill,
        :func:`batch_norm_add_relu_rows`: out = relu(y + residual)). With ``sums`` (the (3, C) ``channel_sums`` a
        convolution took as it wrote x) the statistics come from them, and the region runs the second pass only
        (:func:`_both_passes` without its first pass)."""
        C, dtype = xh.shape[3], xh.dtype
        xf = xh.reshape(-1)
        M, T = xf.size // C, _tile_size(C)
        chunks = _row_chunks(M, C, dtype.itemsize)
        parts = np.empty((len(chunks), 2, C))
        if sums is None:  # (filled by the region's first pass)
            mean, var, inv_std = (np.empty(C, dtype=dtype) for _ in range(3))
        else:
            mean, var, inv_std = _statistics_of(sums, M, eps, dtype)
        v = np.empty((4, T), dtype=dtype)
        g, b = self._affine_vectors(gamma, beta, dtype)
        out = np.empty(xh.shape, dtype=dtype)
        of = out.reshape(-1)
        relu, cap = epilogue(relu_max, dtype)

        rf, mf = (a.reshape(-1) for a in joined) if joined is not None else (of, _NO_MASK)

        def loop(counter: Any, sync: Any, claims: Any, bounds: Any, own: Any, state: Any, second: bool) -> None:
            batch_norm_train_loop(
                counter, sync, claims, bounds, own, state, second, xf, C, T, parts, M, float(eps), g, b,
                gamma is not None, beta is not None, mean, var, inv_std, v, relu, cap, of, rf, mf, joined is not None,
            )  # fmt: skip

        if sums is None:
            _both_passes(chunks, loop)
        else:
            _tile(mean, inv_std, g, b, gamma is not None, beta is not None, v)
            _both_passes(chunks, loop, first_pass=False)
        return out.transpose(0, 3, 1, 2), mean, var, inv_std

    # ------------------------------------------------------------------ a convolution's channel_sums
    @staticmethod
    def _tiled_shift(sums: Any) -> Any:
        """``channel_sums``' shifts (row 0 of the (3, C) array) tiled to T = :func:`_tile_size` values, as
        :func:`~minidl.backend._numba_kernels.shifted_sums_rows` takes them (shift[j] is channel j mod C's)."""
        return np.resize(sums[0], _tile_size(sums.shape[1]))

    def _channel_sums(self, out: Any, sums: Any) -> None:
        """Fill ``sums`` (a convolution's ``channel_sums``, (3, C) float64) from its output ``out`` (N, C, H, W):
        sums[1, c] = sum (out - s_c), sums[2, c] = sum (out - s_c)^2 over channel c's values, s_c = sums[0, c], in
        one pass over out after the convolution (for the algorithms whose output pass does not take them): chunks of
        rows of a ``channels_last`` out (:func:`channel_sums_loop` on each thread, added in chunk order), channels
        of another (:func:`~minidl.backend._numba_kernels.shifted_sums_planes`). float16 values are summed as
        float32 (exactly: both convert to float64)."""
        if out.dtype not in _NATIVE:
            out = out.astype(np.float32)
        C, oh = out.shape[1], _nhwc(out)
        if oh is not None:
            of, shift = oh.reshape(-1), self._tiled_shift(sums)
            chunks = np.array(_row_chunks(of.size // C, C, out.itemsize), dtype=np.int64)
            parts = np.empty((len(chunks), 2, C))
            _threads.parallel_loops(lambda worker, counter: channel_sums_loop(counter, of, shift, C, chunks, parts),
                                    len(chunks))  # fmt: skip
            sums[1:] = self._add_in_order(parts)  # (in chunk order: the same for any thread count)
            return
        x3 = np.ascontiguousarray(out).reshape(out.shape[0], C, -1)
        tasks, part = self._channel_tasks(C), np.empty((2, C))
        _threads.parallel_for(lambda worker, t: shifted_sums_planes(x3, sums[0], *tasks[t], part), len(tasks))
        sums[1:] = part

    @staticmethod
    def _normalize_rows(xf: Any, v: Any, relu: bool, cap: Any, chunks: Any, of: Any, joined: Any) -> Any:
        """The task that normalizes chunk k of the rows ``xf`` into ``of``: :func:`batch_norm_apply_rows`, or with
        ``joined`` (the residual's and the mask's (N, H, W, C) views) :func:`batch_norm_add_relu_rows`."""
        if joined is None:
            return lambda task: batch_norm_apply_rows(xf, v, relu, cap, *chunks[task], of)
        rf, mf = (a.reshape(-1) for a in joined)
        return lambda task: batch_norm_add_relu_rows(xf, v, rf, *chunks[task], of, mf)

    def _batch_norm_apply_rows(
        self, xh: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, relu_max: float | None, joined: Any = None
    ) -> Any:
        """:meth:`_batch_norm_apply` of a ``channels_last`` x (``xh`` its (N, H, W, C) view), in parallel over
        chunks of rows (:func:`batch_norm_apply_rows`; with ``joined``, as in :meth:`_batch_norm_train_rows`)."""
        C, dtype = xh.shape[3], xh.dtype
        xf = xh.reshape(-1)
        out = np.empty(xh.shape, dtype=dtype)
        of = out.reshape(-1)
        chunks = _row_chunks(xf.size // C, C, dtype.itemsize)
        v = self._tiled_vectors(mean, inv_std, gamma, beta, dtype, 4)
        relu, cap = epilogue(relu_max, dtype)

        normalize = self._normalize_rows(xf, v, relu, cap, chunks, of, joined)
        _threads.parallel_for(lambda worker, task: normalize(task), len(chunks))
        return out.transpose(0, 3, 1, 2)

    def _batch_norm_backward_rows(
        self, dout: Any, xh: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, training: bool,
        relu_max: float | None, mask: Any = None,
    ) -> tuple[Any, ...]:  # fmt: skip
        """:meth:`_batch_norm_backward_channels` of a ``channels_last`` x (``xh`` its (N, H, W, C) view; dout made
        ``channels_last`` if it is not), in one parallel region (:func:`batch_norm_backward_loop`): the chunks' sums
        (:func:`batch_norm_backward_sums_rows`, which also writes the eval dx), their totals
        (:func:`batch_norm_backward_totals`), then the training dx of the chunks (:func:`batch_norm_backward_rows`).
        Returns ``(dx, dgamma, dbeta)``.

        With the ``mask`` of ``batch_norm_add_relu``'s forward, the gradient the BatchNorm gets is dz = dout where
        the mask, else 0, and the result is ``(dx, dz, dgamma, dbeta)``: the first pass writes each chunk of dz
        (:func:`~minidl.backend._numba_elementwise.relu_backward`) and sums it while it is in the cache. dz is laid
        out channels_last, as dx, whatever dout's layout. (Masking dout inside the sums' loop instead left that loop
        scalar: the backward of a 16 x 32 x 32 batch of 128 took 32 ms instead of 1.7.)"""
        C, dtype = xh.shape[3], dout.dtype
        xf = xh.reshape(-1)
        gf = _as_nhwc(dout).reshape(-1)
        joined = mask is not None
        if joined:  # dz takes dout's place, filled chunk by chunk by the first pass
            dz = np.empty(xh.shape, dtype=dtype)
            dout_f, mf, gf = gf, _nhwc(mask).reshape(-1), dz.reshape(-1)
        else:
            dout_f, mf = gf, _NO_MASK
        M = xf.size // C
        chunks = _row_chunks(M, C, dtype.itemsize)
        v = self._tiled_vectors(mean, inv_std, gamma, beta, dtype, 6)
        relu, cap = epilogue(relu_max, dtype)
        dx = np.empty(xh.shape, dtype=dtype)
        df = dx.reshape(-1)
        parts = np.empty((len(chunks), 2, C))
        dgamma, dbeta = np.empty(C, dtype=dtype), np.empty(C, dtype=dtype)

        _both_passes(
            chunks,
            lambda counter, sync, claims, bounds, own, state, second: batch_norm_backward_loop(
                counter, sync, claims, bounds, own, state, second, gf, xf, v, relu, cap, C, parts, training, df, M,
                dgamma, dbeta, dout_f, mf, joined,
            ),
        )  # fmt: skip
        gradients = (dgamma if gamma is not None else None), (dbeta if beta is not None else None)
        if joined:
            return dx.transpose(0, 3, 1, 2), dz.transpose(0, 3, 1, 2), *gradients
        return dx.transpose(0, 3, 1, 2), *gradients

    def _tiled_vectors(self, mean: Any, inv_std: Any, gamma: Any, beta: Any, dtype: Any, rows: int) -> Any:
        """A (rows, T) array of ``dtype`` whose first 4 rows are the tiled mean, scale, offset and inv_std
        (:func:`_tile`)."""
        C = mean.shape[0]
        v = np.empty((rows, _tile_size(C)), dtype=dtype)
        g, b = self._affine_vectors(gamma, beta, dtype)
        mean, inv_std = np.ascontiguousarray(mean, dtype), np.ascontiguousarray(inv_std, dtype)
        _tile(mean, inv_std, g, b, gamma is not None, beta is not None, v)
        return v
