r"""Embedding: a lookup table from integer indices (token ids, patch positions) to learned vectors.

**Notation.** V = num_embeddings (rows of the table), D = embedding_dim, W the (V, D) table, and ``input`` an integer
array of any shape (\*) whose entries lie in [0, V).

**Forward.** Row :math:`i` of W for each index :math:`i`:

.. math:: out_{\ldots, d} = W_{\,input_{\ldots},\, d}

It is the same as multiplying a one-hot row :math:`e_i^T` by W, which gives the backward.

**Backward.** Each output row came from one row of W, so its gradient is *added* to that row; an index used k times
collects k gradients (a scatter-add, ``np.add.at``, not an assignment, which would keep only the last):

.. math:: dW_{v,:} = \sum_{\ldots \,:\, input_{\ldots} = v} dout_{\ldots,:}

The row ``padding_idx`` gets no gradient (it stays what it is, zeros by default); with ``scale_grad_by_freq`` each
row's sum is divided by how often its index occurs in the batch. The indices are integers: they have no gradient.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from minidl._dtype import get_default_dtype
from minidl.backend import backend_for, get_array_module, get_backend
from minidl.nn import init
from minidl.nn._checks import check_array, check_float, check_grad_output, check_int, check_same_device
from minidl.nn.dispatch import F
from minidl.nn.module import Module, Parameter

__all__ = ["Embedding", "embedding_backward", "embedding_forward"]


class EmbeddingCache(NamedTuple):
    """The cache of :func:`embedding_forward`."""

    input: Any  # the integer indices, shape (*)
    num_embeddings: int  # V
    weight_dtype: Any
    padding_idx: int | None  # non-negative, or None
    scale_grad_by_freq: bool


def _check_indices(where: str, input: Any, num_embeddings: int) -> None:
    """``input`` must be an integer array (not bool) with every entry in [0, num_embeddings)."""
    try:
        backend_for(input)
    except TypeError:
        got = type(input).__name__
        raise TypeError(f"{where}: expected the input to be an integer array of indices, got {got}") from None
    except RuntimeError as err:
        raise RuntimeError(f"{where}: {err}") from None
    if input.dtype == bool or not np.issubdtype(np.dtype(input.dtype), np.integer):
        raise TypeError(
            f"{where}: expected an integer array of indices in [0, {num_embeddings}), got dtype {input.dtype}; "
            "convert it with input.astype(np.int64)"
        )
    if input.size:  # (on a GPU this reads two numbers back: CuPy would wrap an out-of-range index around silently)
        low, high = int(input.min()), int(input.max())
        if low < 0 or high >= num_embeddings:
            bad = low if low < 0 else high
            raise IndexError(
                f"{where}: index {bad} is out of range: expected indices in [0, {num_embeddings}) "
                f"(num_embeddings={num_embeddings}), got values from {low} to {high}"
            )


def _padding_index(where: str, padding_idx: Any, num_embeddings: int) -> int | None:
    """``padding_idx`` in [-V, V) as a non-negative row number (PyTorch's rule), or None."""
    if padding_idx is None:
        return None
    index = check_int(where, "padding_idx", padding_idx, minimum=-(2**62))
    if not -num_embeddings <= index < num_embeddings:
        raise ValueError(
            f"{where}: padding_idx must be within [-{num_embeddings}, {num_embeddings}) (num_embeddings="
            f"{num_embeddings}), got {index}"
        )
    return index % num_embeddings


def _check_norm(where: str, max_norm: Any, norm_type: Any) -> tuple[float, float]:
    """``max_norm`` a finite number >= 0, ``norm_type`` a p > 0 (inf allowed)."""
    max_norm = check_float(where, "max_norm", max_norm, low=0.0)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or not norm_type > 0:
        raise ValueError(f"{where}: norm_type must be a number > 0 (inf allowed), got {norm_type!r}")
    return max_norm, float(norm_type)


def _renorm_rows(where: str, weight: Any, input: Any, max_norm: Any, norm_type: Any) -> None:
    """PyTorch's ``embedding_renorm_``: every row that ``input`` reads and whose p-norm exceeds ``max_norm`` is
    rescaled in place to ``max_norm / (norm + 1e-7)`` of itself."""
    max_norm, norm_type = _check_norm(where, max_norm, norm_type)
    if input.size == 0 or weight.shape[1] == 0:  # no row read, or rows of norm 0
        return
    xp = get_array_module(weight)
    rows = xp.unique(input.reshape(-1))
    norms = xp.linalg.norm(weight[rows], ord=norm_type, axis=1)
    too_long = norms > max_norm
    scale = xp.where(too_long, max_norm / (norms + 1e-7), 1.0).astype(weight.dtype)
    weight[rows] *= scale[:, None]


def embedding_forward(
    input: Any,
    weight: Any,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
) -> tuple[Any, Any]:
    r"""The rows of ``weight`` at ``input``: ``out = weight[input]``. Returns ``(out, cache)``.

    .. math:: out_{\ldots, d} = W_{\,input_{\ldots},\, d}

    The arguments are PyTorch's ``F.embedding``'s (without ``sparse``).

    Args:
        input: integer indices of any shape (\*), each in [0, V).
        weight: the (V, D) table.
        padding_idx: a row that gets no gradient (negative counts from the end, as in PyTorch). Default: None.
        max_norm: if given, each row that ``input`` reads and whose ``norm_type``-norm exceeds it is first rescaled
            **in place in** ``weight`` to ``max_norm / (norm + 1e-7)`` of itself, as PyTorch does; the rescaling is
            not part of the gradient. Default: None.
        norm_type: the p of the p-norm for ``max_norm`` (``float("inf")`` allowed). Default: 2.
        scale_grad_by_freq: divide each row's gradient by the number of times its index occurs in ``input``.
            Default: False.

    Returns:
        ``(out, cache)``: out of shape (\*, D), a copy (writing to it leaves ``weight`` unchanged).

    Shape:
        - input: (\*), integers.  - weight: (V, D).  - Output: (\*, D).
    Backward:
        dW[v] = sum of dout over the positions where input == v (a scatter-add); dW[padding_idx] = 0
        (:func:`embedding_backward`).

    Examples:
        >>> import numpy as np
        >>> weight = np.arange(6.0).reshape(3, 2)
        >>> out, cache = embedding_forward(np.array([[2, 0, 2]]), weight)
        >>> out
        array([[[4., 5.],
                [0., 1.],
                [4., 5.]]])
    """
    where = "embedding_forward"
    check_array(where, weight, ndim=2, what="weight")
    num_embeddings = weight.shape[0]
    _check_indices(where, input, num_embeddings)
    check_same_device(where, weight, input)
    padding = _padding_index(where, padding_idx, num_embeddings)
    if not isinstance(scale_grad_by_freq, bool):
        raise TypeError(f"{where}: scale_grad_by_freq must be a bool, got {scale_grad_by_freq!r}")
    if max_norm is not None:
        _renorm_rows(where, weight, input, max_norm, norm_type)
    out = weight[input]  # integer-array indexing: a new array
    return out, EmbeddingCache(input, num_embeddings, weight.dtype, padding, scale_grad_by_freq)


def embedding_backward(dout: Any, cache: Any) -> tuple[None, Any]:
    r"""The gradient of the table: ``dout``'s rows added into the rows they were read from.

    .. math::
        dW_{v,:} = [v \ne \text{padding\_idx}]\; \frac{1}{c_v^{\,s}} \sum_{\ldots\,:\, input_{\ldots} = v}
        dout_{\ldots,:}

    with :math:`c_v` the number of occurrences of v in ``input`` and :math:`s = 1` under ``scale_grad_by_freq``,
    else 0. The indices are integers and get no gradient (None), so the result is aligned with the forward's
    arguments ``(input, weight)``.

    Shape:
        - dout: (\*, D).  - Returns ``(None, dweight)`` with dweight (V, D).

    Examples:
        >>> import numpy as np
        >>> out, cache = embedding_forward(np.array([2, 0, 2]), np.zeros((3, 2)))
        >>> _, dweight = embedding_backward(np.array([[1.0, 1.0], [10.0, 10.0], [100.0, 100.0]]), cache)
        >>> dweight  # row 2 was read twice: 1 + 100
        array([[ 10.,  10.],
               [  0.,   0.],
               [101., 101.]])
    """
    where = "embedding_backward"
    if not isinstance(cache, EmbeddingCache):
        raise TypeError(f"{where}: expected the cache embedding_forward returned, got {type(cache).__name__}")
    input, num_embeddings, dtype, padding_idx, scale_grad_by_freq = cache
    if not hasattr(dout, "shape") or dout.ndim != input.ndim + 1:
        raise ValueError(
            f"{where}: expected a gradient of shape (*input.shape, embedding_dim) = ({', '.join(map(str, input.shape))}"
            f"{', ' if input.ndim else ''}D), got {getattr(dout, 'shape', type(dout).__name__)}"
        )
    dim = dout.shape[-1]
    check_grad_output(where, dout, (*input.shape, dim), dtype)
    xp = get_array_module(dout)
    rows = input.reshape(-1)
    grads = dout.reshape(rows.size, dim)
    if scale_grad_by_freq:
        counts = xp.bincount(rows, minlength=num_embeddings)
        grads = grads / counts[rows][:, None].astype(dtype)
    dweight = xp.zeros((num_embeddings, dim), dtype=dtype)
    xp.add.at(dweight, rows, grads)  # a scatter-add: an index used k times adds k rows
    if padding_idx is not None:
        dweight[padding_idx] = 0
    return None, dweight


class Embedding(Module):
    r"""A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``, indexed by integer arrays.

    .. math:: y_{\ldots,:} = W_{\,x_{\ldots},\,:}

    Args:
        num_embeddings: V, the size of the table (the vocabulary, or the number of positions).
        embedding_dim: D, the size of each vector.
        padding_idx: a row that is zero at initialization and never receives a gradient (negative counts from the
            end, as in PyTorch). Default: None.
        max_norm: if given, each row a forward reads whose ``norm_type``-norm exceeds it is first rescaled in
            place (in ``weight``) to ``max_norm / (norm + 1e-7)`` of itself, as in PyTorch; the rescaling is not
            part of the gradient. Default: None.
        norm_type: the p of ``max_norm``'s p-norm (``float("inf")`` allowed). Default: 2.
        scale_grad_by_freq: divide each row's gradient by its index's frequency in the batch. Default: False.
        sparse: PyTorch's sparse gradients; minidl's gradients are dense arrays, so only False is accepted.
            Default: False.
        _weight, _freeze: PyTorch's private arguments behind :meth:`from_pretrained` (use that): the table to use
            as it is (not copied, not reset), and whether it is frozen. Default: None, False.

    Attributes:
        weight: (num_embeddings, embedding_dim), initialized from N(0, 1) (PyTorch's default), row
            ``padding_idx`` set to 0 (or the given table, for :meth:`from_pretrained`).

    Shape:
        - Input: (\*), integer indices in [0, num_embeddings).  - Output: (\*, embedding_dim).

    Backward:
        dW[v] += sum of dout over the positions where x == v (a scatter-add; no gradient into row padding_idx).
        ``backward`` returns None: integer indices have no gradient.

    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> emb = nn.Embedding(10, 3, padding_idx=0)
        >>> emb
        Embedding(10, 3, padding_idx=0)
        >>> y = emb(np.array([[0, 4, 4], [9, 1, 0]]))
        >>> y.shape, y[0, 0]
        ((2, 3, 3), array([0., 0., 0.], dtype=float32))
        >>> emb.backward(np.ones_like(y)) is None, emb.weight.grad[4]  # row 4 was read twice
        (True, array([2., 2., 2.], dtype=float32))
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Any = None,
        _freeze: bool = False,
    ) -> None:
        super().__init__()
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, minimum=1)
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim, minimum=0)
        self.padding_idx = _padding_index("Embedding", padding_idx, self.num_embeddings)
        if max_norm is not None:
            max_norm, norm_type = _check_norm("Embedding", max_norm, norm_type)
        self.max_norm = max_norm
        self.norm_type = norm_type
        for name, flag in (("scale_grad_by_freq", scale_grad_by_freq), ("sparse", sparse)):
            if not isinstance(flag, bool):
                raise TypeError(f"Embedding: {name} must be a bool, got {flag!r}")
        if sparse:
            raise NotImplementedError(
                "Embedding: sparse=True is not implemented in minidl (its gradients are dense arrays), got "
                "sparse=True; use sparse=False"
            )
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if not isinstance(_freeze, bool):
            raise TypeError(f"Embedding: _freeze must be a bool, got {_freeze!r}")
        if _weight is None:
            xp, dtype = get_backend().xp, get_default_dtype()
            table = xp.empty((self.num_embeddings, self.embedding_dim), dtype=dtype)
            self.weight = Parameter(table, requires_grad=not _freeze)
            self.reset_parameters()
        else:
            check_array("Embedding", _weight, what="_weight")
            expected = (self.num_embeddings, self.embedding_dim)
            if tuple(_weight.shape) != expected:
                raise ValueError(
                    f"Embedding: _weight has shape {tuple(_weight.shape)}, expected (num_embeddings, embedding_dim) "
                    f"= {expected}"
                )
            self.weight = Parameter(_weight, requires_grad=not _freeze)  # the given array itself, as in PyTorch

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Any,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> Embedding:
        r"""An Embedding whose table is ``embeddings`` (e.g. word vectors trained elsewhere), PyTorch's semantics.

        The weight *is* the given array, not a copy (as ``torch.nn.Parameter(tensor)`` shares the tensor's memory):
        its dtype and backend are kept, the ``padding_idx`` row is not zeroed, and an optimizer step (with
        ``freeze=False``) or ``max_norm`` changes the array in place; pass ``embeddings.copy()`` to keep the original.

        Args:
            embeddings: the (V, D) floating-point table; V = num_embeddings, D = embedding_dim.
            freeze: True sets ``weight.requires_grad = False``: backward leaves ``weight.grad`` at None and
                optimizers skip the table. Default: True.
            padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse: as in :class:`Embedding`. Default: None,
                None, 2.0, False, False.

        Shape:
            - embeddings: (V, D).  - Input: (\*), integers in [0, V).  - Output: (\*, D).

        Examples:
            >>> import numpy as np
            >>> from minidl import nn
            >>> weight = np.array([[1.0, 2.3, 3.0], [4.0, 5.1, 6.3]], np.float32)
            >>> embedding = nn.Embedding.from_pretrained(weight)
            >>> embedding(np.array([1]))
            array([[4. , 5.1, 6.3]], dtype=float32)
            >>> embedding.weight.requires_grad, embedding.weight.data is weight
            (False, True)
        """
        where = "Embedding.from_pretrained"
        if not isinstance(freeze, bool):
            raise TypeError(f"{where}: freeze must be a bool, got {freeze!r}")
        if hasattr(embeddings, "shape") and len(embeddings.shape) != 2:
            raise ValueError(
                f"{where}: expected a 2-D (num_embeddings, embedding_dim) array of embeddings, got shape "
                f"{tuple(embeddings.shape)} ({len(embeddings.shape)}-D)"
            )
        check_array(where, embeddings, what="embeddings")
        rows, cols = embeddings.shape
        return cls(
            rows,
            cols,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
            _weight=embeddings,
            _freeze=freeze,
        )

    def reset_parameters(self) -> None:
        """PyTorch's init: W from N(0, 1), the ``padding_idx`` row set to 0."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        return text

    def _where(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"

    def forward(self, input: Any) -> Any:
        out, cache = F.embedding_forward(
            input, self.weight.data, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq
        )
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> None:
        (cache,) = self.pop_saved()
        _, dweight = F.embedding_backward(dout, cache)
        self.weight.accumulate_grad(dweight)
        return None
