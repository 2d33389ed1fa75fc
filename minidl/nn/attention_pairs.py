r"""Scaled dot-product attention (Vaswani et al. 2017): the pair that :class:`~minidl.nn.MultiheadAttention` runs.

**Notation.** ``...`` the leading (batch, head) dimensions, L the number of queries (target length), S the number of
keys and values (source length), E the query/key size, Ev the value size. Q is (..., L, E), K (..., S, E),
V (..., S, Ev); every matrix product below is taken over the last two dimensions, one per leading index.

**Forward.** With the scale :math:`\alpha` (default :math:`1/\sqrt{E}`) and the additive mask :math:`M` (0 where a
query may look at a key, :math:`-\infty` where it may not; a bool mask, a causal mask or a float mask all become an
:math:`M`):

.. math::
    A = \alpha\, Q K^T + M, \qquad P = \mathrm{softmax}(A) \text{ (each row over the S keys)}, \qquad
    \tilde P = \frac{m \odot P}{1 - p}, \qquad O = \tilde P\, V

(:math:`\tilde P = P` without dropout; :math:`m` is dropout's keep-mask). A row of :math:`A` that is :math:`-\infty`
everywhere (a query allowed to see no key) gets :math:`P = 0`, so its output is 0, as PyTorch's
``scaled_dot_product_attention`` returns.

**Backward.** Given :math:`dO` (..., L, Ev), walk the forward from the end, one product at a time:

.. math::
    dV = \tilde P^T dO, \qquad d\tilde P = dO\, V^T, \qquad dP = \frac{m \odot d\tilde P}{1 - p}

Each row :math:`p` of P is a softmax of the row :math:`a` of A, whose Jacobian is
:math:`\partial p_i / \partial a_j = p_i (\delta_{ij} - p_j)`, so row by row

.. math::
    dA = P \odot \big(dP - \mathrm{rowsum}(dP \odot P)\big)

(a masked key has :math:`P = 0` there, so it gets no gradient: the mask is a constant). Finally
:math:`A = \alpha Q K^T + M` is a product like a linear layer's:

.. math::
    dQ = \alpha\, dA\, K, \qquad dK = \alpha\, dA^T Q

With grouped-query attention (``enable_gqa``) each key/value head serves ``groups`` query heads; the forward repeats
it, so the backward adds the ``groups`` gradients of its copies.

The pair is written with three sub-pairs read through ``F``: :func:`~minidl.nn.functional.softmax_forward`,
:func:`~minidl.nn.functional.dropout_forward` and their backwards, so the softmax and the dropout are the ones
documented there.

It is marked ``@kernel("scaled_dot_product_attention")``: without a mask, dropout or grouped heads, the Numba
backend runs these products and the softmax slice by slice in its thread pool (``minidl/backend/_numba_softmax.py``;
the reference's stacked products run on one core); its cache keeps the weights as ``attn_weights``, the name
:class:`~minidl.nn.MultiheadAttention` reads.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from minidl.backend import get_array_module
from minidl.nn._checks import check_array, check_float, check_grad_output, check_same_device
from minidl.nn.dispatch import F, kernel

__all__ = ["scaled_dot_product_attention_backward", "scaled_dot_product_attention_forward"]


class ScaledDotProductAttentionCache(NamedTuple):
    """The cache of :func:`scaled_dot_product_attention_forward`.

    ``attn_weights`` is :math:`\\tilde P` (..., L, S), the attention weights after dropout: what
    :class:`~minidl.nn.MultiheadAttention` returns as its weights.
    """

    query: Any  # (..., L, E)
    key: Any  # (..., S, E) after the repeat of grouped-query attention
    value: Any  # (..., S, Ev), idem
    attn_weights: Any  # P after dropout, (..., L, S)
    softmax: Any  # the cache of F.softmax_forward
    dropout: Any  # the cache of F.dropout_forward
    empty_rows: Any  # (..., L, 1) bool: rows with no key to look at (P = 0 there), or None without a mask
    scale: float
    groups: int  # query heads per key/value head (1 without grouped-query attention)


def _additive_mask(where: str, attn_mask: Any, is_causal: bool, query: Any, scores_shape: tuple[int, ...]) -> Any:
    """The mask M to add to the scores: 0 where a query may look at a key, -inf where not (None for no mask)."""
    xp = get_array_module(query)
    length, source = scores_shape[-2:]
    if is_causal:
        if attn_mask is not None:
            raise ValueError(
                f"{where}: pass either attn_mask or is_causal=True, not both (is_causal builds the causal mask "
                f"itself; got an attn_mask of shape {tuple(attn_mask.shape)})"
            )
        allowed = xp.tril(xp.ones((length, source), dtype=bool))  # query i sees keys 0..i
        return xp.where(allowed, 0.0, -np.inf).astype(query.dtype)
    if attn_mask is None:
        return None
    if not hasattr(attn_mask, "shape") or not hasattr(attn_mask, "dtype"):
        raise TypeError(f"{where}: expected attn_mask to be an array (bool or {query.dtype}), got {type(attn_mask)}")
    check_same_device(where, query, attn_mask)
    shape = tuple(attn_mask.shape)
    fits = len(shape) <= len(scores_shape) and all(
        m in (1, s) for m, s in zip(shape[::-1], scores_shape[::-1], strict=False)
    )
    if not fits:
        raise ValueError(
            f"{where}: attn_mask of shape {shape} does not broadcast to the attention scores' shape {scores_shape} "
            f"(..., L, S); expected each dimension to be 1 or the scores' (e.g. (L, S) = {(length, source)})"
        )
    if attn_mask.dtype == bool:
        return xp.where(attn_mask, 0.0, -np.inf).astype(query.dtype)  # True: the query may look at the key
    if attn_mask.dtype != query.dtype:
        raise TypeError(
            f"{where}: attn_mask must be bool (True = may attend) or the query's dtype {query.dtype} (added to the "
            f"scores), got dtype {attn_mask.dtype}"
        )
    return attn_mask


def _sdpa_setup(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[Any, float, float, int]:
    """Validate the arguments; return (the additive mask or None, dropout_p, scale, groups)."""
    where = "scaled_dot_product_attention_forward"
    check_array(where, query, min_ndim=2, what="query")
    check_same_device(where, query, key, value)
    check_array(where, key, min_ndim=2, dtype=query.dtype, what="key", dtype_of="query")
    check_array(where, value, min_ndim=2, dtype=query.dtype, what="value", dtype_of="query")
    for name, flag in (("is_causal", is_causal), ("enable_gqa", enable_gqa)):
        if not isinstance(flag, bool):
            raise TypeError(f"{where}: {name} must be a bool, got {flag!r}")
    dropout_p = check_float(where, "dropout_p", dropout_p, low=0.0, high=1.0)
    if not query.ndim == key.ndim == value.ndim:
        raise ValueError(
            f"{where}: query, key and value must have the same number of dimensions, got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"{where}: query (..., L, E) and key (..., S, E) must share E, got shapes {tuple(query.shape)} and "
            f"{tuple(key.shape)}"
        )
    if key.shape[:-1] != value.shape[:-1]:
        raise ValueError(
            f"{where}: key (..., S, E) and value (..., S, Ev) must agree on (..., S), got shapes {tuple(key.shape)} "
            f"and {tuple(value.shape)}"
        )
    groups = 1
    if enable_gqa:
        if query.ndim < 3:
            raise ValueError(f"{where}: enable_gqa needs a heads dimension (..., H, L, E), got {tuple(query.shape)}")
        heads, kv_heads = query.shape[-3], key.shape[-3]
        if kv_heads == 0 or heads % kv_heads:
            raise ValueError(
                f"{where}: with enable_gqa the query heads ({heads}) must be a multiple of the key/value heads "
                f"({kv_heads}); shapes {tuple(query.shape)} and {tuple(key.shape)}"
            )
        groups = heads // kv_heads
        leading = (query.shape[:-3], key.shape[:-3])
    else:
        leading = (query.shape[:-2], key.shape[:-2])
    if leading[0] != leading[1]:
        raise ValueError(
            f"{where}: query and key must have the same leading dimensions (no broadcasting), got shapes "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
            + ("" if enable_gqa else " (for fewer key/value heads than query heads, pass enable_gqa=True)")
        )
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    else:
        scale = check_float(where, "scale", scale)
    scores_shape = (*query.shape[:-1], key.shape[-2])
    return _additive_mask(where, attn_mask, is_causal, query, scores_shape), dropout_p, scale, groups


def _repeat_heads(x: Any, groups: int) -> Any:
    """(..., H_kv, S, E) -> (..., H_kv * groups, S, E): each key/value head repeated for its ``groups`` query heads."""
    return x if groups == 1 else get_array_module(x).repeat(x, groups, axis=-3)


def _sum_heads(dx: Any, groups: int) -> Any:
    """The backward of :func:`_repeat_heads`: add the gradients of each head's ``groups`` copies."""
    if groups == 1:
        return dx
    *lead, heads, rows, cols = dx.shape
    return dx.reshape(*lead, heads // groups, groups, rows, cols).sum(axis=-3)


@kernel("scaled_dot_product_attention", setup=_sdpa_setup, uses=("softmax", "dropout"))
def scaled_dot_product_attention_forward(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[Any, Any]:
    r"""Attention ``softmax(Q K^T * scale + M) V``, with PyTorch's ``F.scaled_dot_product_attention`` arguments.

    minidl's functional namespace holds pairs only, so PyTorch's ``F.scaled_dot_product_attention(q, k, v)`` is
    ``F.scaled_dot_product_attention_forward(q, k, v)[0]`` here (and its backward is the other half of the pair).

    .. math::
        O = \tilde P V, \qquad \tilde P = \mathrm{dropout}_p(P), \qquad
        P = \mathrm{softmax}\big(\alpha\, Q K^T + M\big), \qquad \alpha = \text{scale, default } 1/\sqrt{E}

    Args:
        query: (..., L, E).  key: (..., S, E).  value: (..., S, Ev); one dtype, the same leading dimensions (with
            ``enable_gqa``, the heads dimension -3 of key/value may divide the query's).
        attn_mask: None, a bool array (True: the query *may* attend to the key, as PyTorch's SDPA; the opposite of
            :class:`~minidl.nn.MultiheadAttention`'s bool masks) or a float array of the query's dtype added to
            the scores; it broadcasts to (..., L, S), e.g. (L, S). It is a constant: no gradient. Default: None.
        dropout_p: probability of dropping an attention weight (inverted dropout from ``minidl.manual_seed``'s
            generator, as :func:`~minidl.nn.functional.dropout_forward`; applied whenever > 0, as in PyTorch).
            Default: 0.
        is_causal: mask out the keys after each query (query i sees keys 0..i: a lower-triangular (L, S) mask);
            not together with ``attn_mask``. Default: False.
        scale: the factor :math:`\alpha` of the scores. Default: None, :math:`1/\sqrt{E}`.
        enable_gqa: grouped-query attention: query (..., H, L, E), key/value (..., H_kv, S, \*) with H a
            multiple of H_kv; each key/value head serves H / H_kv consecutive query heads. Default: False.

    Returns:
        ``(out, cache)``: out (..., L, Ev); the cache (a ``ScaledDotProductAttentionCache``) keeps Q, K, V, the
        weights :math:`\tilde P` (field ``attn_weights``) and the softmax's and dropout's caches. A query whose
        every key is masked gets weights 0 and output 0 (PyTorch's SDPA does the same).

    Shape:
        - query (..., L, E), key (..., S, E), value (..., S, Ev).  - Output: (..., L, Ev).
    Backward:
        dV = P~^T dO;  dP = dropout_backward(dO V^T);  dA = P * (dP - rowsum(dP * P));  dQ = scale dA K;
        dK = scale dA^T Q (:func:`scaled_dot_product_attention_backward`).

    Examples:
        >>> import numpy as np
        >>> q = np.zeros((1, 2, 4))  # all scores equal: each query averages the values
        >>> v = np.array([[[1.0], [3.0], [5.0]]])
        >>> out, cache = scaled_dot_product_attention_forward(q, np.zeros((1, 3, 4)), v)
        >>> out
        array([[[3.],
                [3.]]])
        >>> out, _ = scaled_dot_product_attention_forward(q, np.zeros((1, 3, 4)), v, is_causal=True)
        >>> out  # query 0 sees key 0, query 1 keys 0 and 1
        array([[[1.],
                [2.]]])
    """
    mask, dropout_p, scale, groups = _sdpa_setup(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    xp = get_array_module(query)
    key, value = _repeat_heads(key, groups), _repeat_heads(value, groups)
    scores = (query @ key.swapaxes(-1, -2)) * scale  # A = scale Q K^T, (..., L, S)
    empty_rows = None
    if mask is not None:
        scores = scores + mask
        empty_rows = xp.isneginf(scores).all(axis=-1, keepdims=True)  # queries that may see no key at all
        scores = xp.where(empty_rows, 0.0, scores)  # (any finite row: its P is set to 0 below)
    probs, softmax_cache = F.softmax_forward(scores, -1)
    if empty_rows is not None:
        probs = xp.where(empty_rows, 0.0, probs)
    attn, dropout_cache = F.dropout_forward(probs, dropout_p)  # the identity for dropout_p = 0
    out = attn @ value
    cache = ScaledDotProductAttentionCache(
        query, key, value, attn, softmax_cache, dropout_cache, empty_rows, scale, groups
    )
    return out, cache


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention_backward(dout: Any, cache: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`scaled_dot_product_attention_forward` with respect to query, key and value.

    .. math::
        dV = \tilde P^T dO, \quad dP = \frac{m \odot (dO\, V^T)}{1 - p}, \quad
        dA = P \odot \big(dP - \mathrm{rowsum}(dP \odot P)\big), \quad dQ = \alpha\, dA\, K, \quad
        dK = \alpha\, dA^T Q

    The mask gets no gradient (it is a constant); with ``enable_gqa`` the gradients of the repeated key/value heads
    are added back into their H_kv heads.

    Args:
        dout: (..., L, Ev), the gradient of the loss with respect to the output.
        cache: from :func:`scaled_dot_product_attention_forward`.

    Returns:
        ``(dquery, dkey, dvalue)``, each of its input's shape.

    Shape:
        - dout: (..., L, Ev).  - dquery (..., L, E); dkey (..., S, E); dvalue (..., S, Ev).

    Examples:
        >>> import numpy as np
        >>> q, k, v = np.zeros((1, 2, 4)), np.zeros((1, 3, 4)), np.array([[[1.0], [3.0], [5.0]]])
        >>> out, cache = scaled_dot_product_attention_forward(q, k, v)
        >>> dq, dk, dv = scaled_dot_product_attention_backward(np.ones((1, 2, 1)), cache)
        >>> dv  # each value is weighted 1/3 by both queries
        array([[[0.66666667],
                [0.66666667],
                [0.66666667]]])
        >>> dq.shape, dk.shape
        ((1, 2, 4), (1, 3, 4))
    """
    where = "scaled_dot_product_attention_backward"
    if not isinstance(cache, ScaledDotProductAttentionCache):
        raise TypeError(
            f"{where}: expected the cache scaled_dot_product_attention_forward returned, got {type(cache).__name__}"
        )
    query, key, value, attn, softmax_cache, dropout_cache, empty_rows, scale, groups = cache
    check_grad_output(where, dout, (*attn.shape[:-1], value.shape[-1]), query.dtype)
    xp = get_array_module(dout)
    dvalue = attn.swapaxes(-1, -2) @ dout  # dV = P~^T dO
    dprobs = F.dropout_backward(dout @ value.swapaxes(-1, -2), dropout_cache)  # dP, through dropout's mask
    if empty_rows is not None:
        dprobs = xp.where(empty_rows, 0.0, dprobs)  # P was set to 0 there: a constant
    dscores = F.softmax_backward(dprobs, softmax_cache) * scale  # scale dA
    dquery = dscores @ key
    dkey = dscores.swapaxes(-1, -2) @ query
    return dquery, _sum_heads(dkey, groups), _sum_heads(dvalue, groups)
