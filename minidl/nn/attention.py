r"""Multi-head attention (Vaswani et al. 2017), with PyTorch's ``nn.MultiheadAttention`` names and parameters.

**Notation.** N batch, L target (query) length, S source (key/value) length, E = embed_dim, H = num_heads,
hd = E / H the size of one head; kdim and vdim the sizes of the key and value inputs (E by default).

**Forward.** Project the inputs, split the E features into H heads of hd, run scaled dot-product attention in every
head at once, join the heads and project again:

.. math::
    Q = x_q W_q^T + b_q, \quad K = x_k W_k^T + b_k, \quad V = x_v W_v^T + b_v, \qquad
    O_h = \mathrm{softmax}\Big(\frac{Q_h K_h^T}{\sqrt{hd}} + M\Big) V_h, \qquad
    y = [O_1, \ldots, O_H]\, W_o^T + b_o

:math:`W_q, W_k, W_v` are the three (E, E) blocks of ``in_proj_weight`` (3E, E) (or ``q_proj_weight``,
``k_proj_weight``, ``v_proj_weight`` when kdim or vdim differ from E), :math:`b_q, b_k, b_v` those of
``in_proj_bias``; :math:`W_o, b_o` are ``out_proj``'s. :math:`M` is the additive mask built from ``attn_mask``
and ``key_padding_mask`` (PyTorch's MHA convention: a bool ``True`` means *not allowed*, -inf; a float is added).

**Backward.** Every step is a pair documented elsewhere, so the backward runs them in reverse: ``out_proj``'s
:func:`~minidl.nn.functional.linear_backward`, the inverse reshape of the heads,
:func:`~minidl.nn.functional.scaled_dot_product_attention_backward` (whose docstring derives it), and the three
input projections' :func:`~minidl.nn.functional.linear_backward`; the three weight gradients fill the three blocks of
``in_proj_weight.grad``. The module takes three inputs, so ``backward(dout)`` returns three gradients
``(dquery, dkey, dvalue)``; in self-attention (``mha(x, x, x)``) x fed all three, so its gradient is their sum (a fork
in the forward pass is a sum in the backward pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl._dtype import get_default_dtype
from minidl.backend import get_array_module, get_backend
from minidl.nn import init
from minidl.nn._checks import check_array, check_float, check_grad_output, check_int, check_same_device
from minidl.nn.dispatch import F
from minidl.nn.linear import Linear
from minidl.nn.module import Module, Parameter

__all__ = ["MultiheadAttention"]


def _additive(where: str, name: str, mask: Any, query: Any, shape: tuple[int, ...], layout: str) -> Any:
    """An MHA mask as the float array to add to the scores: a bool True (not allowed) is -inf, False 0; a float
    mask of the query's dtype is added as it is."""
    dtype = query.dtype
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise TypeError(f"{where}: expected {name} to be an array (bool or {np.dtype(dtype)}), got {type(mask)}")
    check_same_device(where, query, mask)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{where}: expected {name} of shape {layout} = {shape}, got shape {tuple(mask.shape)}")
    if mask.dtype == bool:
        return get_array_module(mask).where(mask, -np.inf, 0.0).astype(dtype)  # True: may NOT attend
    if mask.dtype != dtype:
        raise TypeError(
            f"{where}: {name} must be bool (True = not allowed) or the input's dtype {np.dtype(dtype)} (added to "
            f"the scores), got dtype {mask.dtype}"
        )
    return mask


class MultiheadAttention(Module):
    r"""Attention of queries over keys and values in ``num_heads`` parallel heads (PyTorch's names and layout).

    .. math::
        \mathrm{MHA}(x_q, x_k, x_v) = [O_1, \ldots, O_H]\, W_o^T + b_o, \qquad
        O_h = \mathrm{softmax}\Big(\frac{(x_q W_{q,h}^T + b_{q,h})(x_k W_{k,h}^T + b_{k,h})^T}{\sqrt{hd}} + M\Big)
        (x_v W_{v,h}^T + b_{v,h})

    Args:
        embed_dim: E, the size of the queries and of the output.
        num_heads: H; E must be divisible by H (each head has hd = E / H features).
        dropout: dropout probability on the attention weights (training mode only). Default: 0.
        bias: learn ``in_proj_bias`` and ``out_proj.bias``. Default: True.
        add_bias_kv: append a learned key ``bias_k`` and value ``bias_v`` to the projected keys and values (S + 1
            keys). Default: False.
        add_zero_attn: append a key and a value of zeros after the projection (and after ``bias_k``), per head.
            Default: False.
        kdim, vdim: sizes of the key and value inputs. Default: None (E).
        batch_first: inputs and output are (N, L, E) if True, (L, N, E) if False (PyTorch's default). Default: False.

    Attributes:
        in_proj_weight: (3E, E), the stacked :math:`W_q, W_k, W_v`, from ``xavier_uniform_`` (PyTorch's init);
            None when kdim or vdim differ from E, and then ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim),
            ``v_proj_weight`` (E, vdim), each from ``xavier_uniform_``.
        in_proj_bias: (3E,), zeros; None without bias.
        out_proj: a :class:`~minidl.nn.Linear` (E, E) with PyTorch's default weight init and a zero bias.
        bias_k, bias_v: (1, 1, E) with ``add_bias_kv``, from ``xavier_normal_``; else None.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)`` as PyTorch does:

    * ``attn_mask``: (L, S) or (N * H, L, S); ``key_padding_mask``: (N, S). A bool ``True`` marks a key the query
      may **not** attend to (the opposite of :func:`~minidl.nn.functional.scaled_dot_product_attention_forward`'s
      bool mask, as in PyTorch); a float mask (the input's dtype) is added to the scores. A query left with no key
      gets weights 0 and output ``b_o``, as PyTorch with ``need_weights=False`` (with ``need_weights=True``
      PyTorch returns NaN there).
    * ``is_causal=True`` is PyTorch's hint that ``attn_mask`` is the causal mask; as in PyTorch it needs that
      ``attn_mask``, which is what is applied.
    * ``attn_weights``: the weights after dropout, (N, L, S) averaged over the heads (``average_attn_weights``) or
      (N, H, L, S); None with ``need_weights=False``. They are an output only: no gradient flows back from them.

    Shape:
        - query: (N, L, E) (``batch_first``) or (L, N, E); key: (N, S, kdim) or (S, N, kdim); value: (N, S, vdim)
          or (S, N, vdim).
          Unbatched, as PyTorch: query (L, E), key (S, kdim), value (S, vdim), key_padding_mask (S,), attn_mask
          (L, S) or (H, L, S); the outputs then lose N as well.
        - attn_output: the query's layout, (N, L, E) or (L, N, E).  - attn_weights: (N, L, S') or (N, H, L, S'),
          S' = S + add_bias_kv + add_zero_attn (the extra keys are weighted too).

    Backward:
        ``backward(dout)`` takes the gradient of ``attn_output`` and returns ``(dquery, dkey, dvalue)``: out_proj's
        linear_backward, the heads split again, scaled_dot_product_attention_backward, then each projection's
        linear_backward (dW_q, dW_k, dW_v fill the blocks of ``in_proj_weight.grad``). For self-attention
        ``mha(x, x, x)`` the gradient of x is ``dquery + dkey + dvalue``.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
        >>> x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
        >>> out, weights = mha(x, x, x)
        >>> out.shape, weights.shape
        ((3, 5, 8), (3, 5, 5))
        >>> bool(np.allclose(weights.sum(axis=-1), 1.0))
        True
        >>> dquery, dkey, dvalue = mha.backward(np.ones_like(out))
        >>> (dquery + dkey + dvalue).shape, mha.in_proj_weight.grad.shape  # self-attention: x fed all three
        ((3, 5, 8), (24, 8))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        where = "MultiheadAttention"
        self.embed_dim = check_int(where, "embed_dim", embed_dim, minimum=1)
        self.num_heads = check_int(where, "num_heads", num_heads, minimum=1)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"{where}: embed_dim must be divisible by num_heads, got embed_dim={self.embed_dim} and "
                f"num_heads={self.num_heads}"
            )
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = check_float(where, "dropout", dropout, low=0.0, high=1.0)
        self.kdim = self.embed_dim if kdim is None else check_int(where, "kdim", kdim, minimum=1)
        self.vdim = self.embed_dim if vdim is None else check_int(where, "vdim", vdim, minimum=1)
        for name, flag in (("bias", bias), ("add_bias_kv", add_bias_kv), ("add_zero_attn", add_zero_attn)):
            if not isinstance(flag, bool):
                raise TypeError(f"{where}: {name} must be a bool, got {flag!r}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"{where}: batch_first must be a bool, got {batch_first!r}")
        self.batch_first = batch_first
        self.add_zero_attn = add_zero_attn
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        xp, dtype = get_backend().xp, get_default_dtype()
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(xp.empty((3 * e, e), dtype=dtype))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = Parameter(xp.empty((e, e), dtype=dtype))
            self.k_proj_weight = Parameter(xp.empty((e, self.kdim), dtype=dtype))
            self.v_proj_weight = Parameter(xp.empty((e, self.vdim), dtype=dtype))
        if bias:
            self.in_proj_bias = Parameter(xp.empty((3 * e,), dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias)
        if add_bias_kv:
            self.bias_k = Parameter(xp.empty((1, 1, e), dtype=dtype))
            self.bias_v = Parameter(xp.empty((1, 1, e), dtype=dtype))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's init: ``xavier_uniform_`` projections, zero biases; ``out_proj.weight`` keeps Linear's init."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def extra_repr(self) -> str:
        text = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if not self._qkv_same_embed_dim:
            text += f", kdim={self.kdim}, vdim={self.vdim}"
        if self.bias_k is not None:
            text += ", add_bias_kv=True"
        if self.add_zero_attn:
            text += ", add_zero_attn=True"
        return text + f", batch_first={self.batch_first}"

    def _where(self) -> str:
        return f"MultiheadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads})"

    def _projections(self) -> list[tuple[Any, Any]]:
        """(weight, bias) arrays of the q, k and v projections (views into in_proj_weight / in_proj_bias)."""
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            weights = [self.in_proj_weight.data[i * e : (i + 1) * e] for i in range(3)]
        else:
            weights = [self.q_proj_weight.data, self.k_proj_weight.data, self.v_proj_weight.data]
        if self.in_proj_bias is None:
            return [(w, None) for w in weights]
        return [(w, self.in_proj_bias.data[i * e : (i + 1) * e]) for i, w in enumerate(weights)]

    def _check_inputs(self, query: Any, key: Any, value: Any) -> bool:
        """The three inputs as the layout requires, all batched (3-D) or all unbatched (2-D); returns batched."""
        where = self._where()
        batched = getattr(query, "ndim", 3) != 2
        layout = ("(N, {}, {})" if self.batch_first else "({}, N, {})") if batched else "({}, {})"
        dtype = self.out_proj.weight.dtype
        for name, x, length, size in (
            ("query", query, "L", ("E", self.embed_dim)),
            ("key", key, "S", ("kdim", self.kdim)),
            ("value", value, "S", ("vdim", self.vdim)),
        ):
            check_array(where, x, dtype=dtype, what=name)
            if x.ndim != (3 if batched else 2) or x.shape[-1] != size[1]:
                raise ValueError(
                    f"{where}: expected the {name} as {layout.format(length, size[0])} with {size[0]}={size[1]} "
                    f"(batch_first={self.batch_first}; the query is {'' if batched else 'un'}batched), got shape "
                    f"{tuple(x.shape)}"
                )
        check_same_device(where, query, key, value, self.out_proj.weight.data)
        batch_axis, seq_axis = (0, 1) if self.batch_first else (1, 0)
        if not batched:
            batch_axis, seq_axis = None, 0
        same_n = batch_axis is None or query.shape[batch_axis] == key.shape[batch_axis] == value.shape[batch_axis]
        if not same_n or key.shape[seq_axis] != value.shape[seq_axis]:
            raise ValueError(
                f"{where}: query, key and value must share N, and key and value S (layout {layout.format('L|S', '*')}),"
                f" got shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        return batched

    def _mask(
        self, query: Any, key_padding_mask: Any, attn_mask: Any, is_causal: bool, n: int, length: int, source: int
    ) -> Any:
        """The additive mask, broadcastable to the scores (N, H, L, S), or None."""
        where, h = self._where(), self.num_heads
        if not isinstance(is_causal, bool):
            raise TypeError(f"{where}: is_causal must be a bool, got {is_causal!r}")
        if is_causal and attn_mask is None:
            raise ValueError(
                f"{where}: is_causal=True is a hint that attn_mask is the causal mask and needs that attn_mask (as "
                f"in PyTorch); pass attn_mask, e.g. np.triu(np.ones(({length}, {source}), bool), k=1)"
            )
        mask = None
        if attn_mask is not None:
            if getattr(attn_mask, "ndim", None) == 2:
                mask = _additive(where, "attn_mask", attn_mask, query, (length, source), "(L, S)")
            else:
                shape = (n * h, length, source)
                mask = _additive(where, "attn_mask", attn_mask, query, shape, "(N * num_heads, L, S)")
                mask = mask.reshape(n, h, length, source)
        if key_padding_mask is not None:
            padding = _additive(where, "key_padding_mask", key_padding_mask, query, (n, source), "(N, S)")
            padding = padding.reshape(n, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask

    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Any, Any]:
        batched = self._check_inputs(query, key, value)
        xp, h, hd, e = get_array_module(query), self.num_heads, self.head_dim, self.embed_dim
        if not batched:  # PyTorch's unbatched (L, E) input: a batch of one
            if key_padding_mask is not None:
                shape = (key.shape[0],)
                key_padding_mask = _additive(self._where(), "key_padding_mask", key_padding_mask, query, shape, "(S,)")
                key_padding_mask = key_padding_mask[None]
            query, key, value = (x[None] for x in (query, key, value))
        elif not self.batch_first:
            query, key, value = (x.swapaxes(0, 1) for x in (query, key, value))  # (N, L or S, *)
        n, length, source = query.shape[0], query.shape[1], key.shape[1]
        mask = self._mask(query, key_padding_mask, attn_mask, is_causal, n, length, source)
        heads, linear_caches = [], []
        for i, (x, (weight, bias)) in enumerate(zip((query, key, value), self._projections(), strict=True)):
            projected, cache = F.linear_forward(x, weight, bias)  # (N, L or S, E)
            if i > 0 and self.bias_k is not None:  # add_bias_kv: one more key and value, learned
                extra = (self.bias_k, self.bias_v)[i - 1].data  # (1, 1, E)
                projected = xp.concatenate([projected, xp.broadcast_to(extra, (n, 1, e))], axis=1)
            head = projected.reshape(n, projected.shape[1], h, hd).swapaxes(1, 2)  # (N, H, L or S, hd)
            if i > 0 and self.add_zero_attn:  # add_zero_attn: one more key and value, zeros
                head = xp.concatenate([head, xp.zeros((n, h, 1, hd), head.dtype)], axis=2)
            heads.append(head)
            linear_caches.append(cache)
        extra_keys = (self.bias_k is not None) + self.add_zero_attn
        if mask is not None and extra_keys:  # the extra keys may always be attended to
            mask = xp.concatenate([mask, xp.zeros((*mask.shape[:-1], extra_keys), mask.dtype)], axis=-1)
        dropout_p = self.dropout if self.training else 0.0
        attended, attention_cache = F.scaled_dot_product_attention_forward(*heads, mask, dropout_p)  # (N, H, L, hd)
        out = self.out_proj(attended.swapaxes(1, 2).reshape(n, length, e))  # (N, L, E)
        weights = None
        if need_weights:
            weights = attention_cache.attn_weights  # (N, H, L, S), after dropout as in PyTorch
            weights = weights.mean(axis=1) if average_attn_weights else weights.copy()
            weights = weights if batched else weights[0]
        self.save_for_backward(linear_caches, attention_cache, tuple(out.shape), out.dtype, batched)
        if not batched:
            return out[0], weights
        return (out if self.batch_first else out.swapaxes(0, 1)), weights

    def backward(self, dout: Any) -> tuple[Any, Any, Any]:
        where = f"{self._where()}.backward"
        if isinstance(dout, tuple):
            raise TypeError(
                f"{where}: expected the gradient of attn_output (one array), got a tuple; a gradient flowing into the "
                "returned attn_weights is not supported (they are an output for inspection only)"
            )
        linear_caches, attention_cache, out_shape, dtype, batched = self.pop_saved()
        n, length, e = out_shape
        expected = (length, e) if not batched else out_shape if self.batch_first else (length, n, e)
        check_grad_output(where, dout, expected, dtype)
        dout = dout[None] if not batched else dout if self.batch_first else dout.swapaxes(0, 1)  # (N, L, E)
        dattended = self.out_proj.backward(dout).reshape(n, length, self.num_heads, self.head_dim).swapaxes(1, 2)
        dheads = F.scaled_dot_product_attention_backward(dattended, attention_cache)  # (dq, dk, dv), (N, H, *, hd)
        if self._qkv_same_embed_dim:
            weights = [self.in_proj_weight] * 3
        else:
            weights = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]
        bias_grad = self.in_proj_bias is not None and self.in_proj_bias.requires_grad
        grads, dweights, dbiases = [], [], []
        for i, (dhead, cache, weight) in enumerate(zip(dheads, linear_caches, weights, strict=True)):
            if i > 0 and self.add_zero_attn:
                dhead = dhead[:, :, :-1]  # the zero key/value: a constant
            dprojected = dhead.swapaxes(1, 2).reshape(n, dhead.shape[2], e)  # heads joined again: (N, L or S, E)
            if i > 0 and self.bias_k is not None:
                extra = (self.bias_k, self.bias_v)[i - 1]
                extra.accumulate_grad(dprojected[:, -1:].sum(axis=0, keepdims=True))  # (1, 1, E), summed over N
                dprojected = dprojected[:, :-1]
            dx, dw, db = F.linear_backward(dprojected, cache, weight_grad=weight.requires_grad, bias_grad=bias_grad)
            grads.append(dx[0] if not batched else dx if self.batch_first else dx.swapaxes(0, 1))
            dweights.append(dw)
            dbiases.append(db)
        xp = get_array_module(dout)
        if self._qkv_same_embed_dim:
            if self.in_proj_weight.requires_grad:
                self.in_proj_weight.accumulate_grad(xp.concatenate(dweights))  # the blocks W_q, W_k, W_v
        else:
            for weight, dw in zip(weights, dweights, strict=True):
                if dw is not None:
                    weight.accumulate_grad(dw)
        if bias_grad:
            self.in_proj_bias.accumulate_grad(xp.concatenate(dbiases))
        return grads[0], grads[1], grads[2]
