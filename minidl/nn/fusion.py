r"""Fusion: :func:`~minidl.nn.fuse` returns a model whose adjacent layers run as one pass over memory, with the same
results. This file has the fused modules; ``fusion_pass.py`` has the pass that puts them in a model.

A layer's forward reads its input from memory and writes its output back. For the cheap layers after a convolution
(BatchNorm, ReLU) that traffic *is* the cost, so a CNN step gets faster when consecutive layers share one pass.
Nothing does this behind your back: a model runs layer by layer until you call ``nn.fuse(model)`` (the training
helpers, the examples and the benchmarks do, on a fast backend; each has a switch to turn it off). Like PyTorch's
``fuse_modules``, fusion replaces the first module of a pattern with a fused one and leaves :class:`Identity` in the
freed slots, so the model keeps its structure, its ``state_dict`` keys and its outputs:

* **BatchNorm -> ReLU** becomes :class:`BatchNormReLU2d` (or ``1d``), which runs the pair
  :func:`~minidl.nn.normalization.batch_norm_relu_forward`: on the Numba backend the ReLU is applied inside the
  normalize loop, and its backward recomputes the ReLU mask from x instead of storing it.
* **Conv2d -> BatchNorm2d (-> ReLU or ReLU6)** becomes :class:`ConvBn2d` and :class:`FoldedBatchNorm2d` (and an
  :class:`Identity` in the activation's slot). In training they run as a convolution and a BatchNorm(+ReLU or
  +ReLU6) pass (the pairs ``batch_norm_relu``, ``batch_norm_relu6``), and the convolution hands the BatchNorm the
  sums its batch statistics come from, per channel :math:`S_1 = \sum (y - s)`, :math:`S_2 = \sum (y - s)^2`
  around a shift s (the running mean): ``conv2d_forward``'s ``channel_sums``, which the BatchNorm pair takes as
  its own, :math:`\mu = s + S_1 / M`, :math:`\sigma^2 = \max(S_2 / M - (S_1 / M)^2, 0)`
  (:meth:`ConvBn2d.sums_for_batch_norm`), where the backend adds them up in the convolution's output pass (on
  Numba, F(4x4, 3x3) into a ``channels_last`` output), so the BatchNorm does not read that output a first time
  for its statistics. In
  inference (eval mode, gradients off) the BatchNorm is folded into the convolution's weights,

  .. math:: \mathrm{BN}(W * x + b) = (s W) * x + (s (b - \mu) + \beta), \qquad s = \gamma / \sqrt{\sigma^2 +
            \epsilon}

  (per output channel, with the running mean :math:`\mu` and variance :math:`\sigma^2`), so the BatchNorm pass
  disappears, and a ReLU or ReLU6 after it is applied in the convolution's own output pass
  (:func:`~minidl.nn.conv_fused.conv2d_relu_forward`, :func:`~minidl.nn.conv_fused.conv2d_relu6_forward`: MobileNetV2's
  layers). The folded weights are computed from the live parameters at each call, so the fused model stays exact
  after more training or a ``load_state_dict``.
* **residual sum -> ReLU** (the end of a ResNet block: an :class:`~minidl.nn.merge.Add` module and a ReLU) becomes
  :class:`AddReLU`, which runs the pair :func:`~minidl.nn.merge.add_relu_forward` (one pass on Numba).
* **Conv2d -> BatchNorm2d -> residual sum -> ReLU** (a ResNet block's last convolution to its end) becomes
  :class:`ConvBn2d`, :class:`FoldedBatchNorm2d`, :class:`AddReLU` and an :class:`Identity`, and the block hands
  its shortcut to one of them (see ``BasicBlock.forward``, one visible branch for each):

  - in inference to the convolution (:meth:`ConvBn2d.joins_residual`), which runs
    :func:`~minidl.nn.conv_fused.conv2d_add_relu_forward`: the folded convolution, the sum and the ReLU in the
    convolution's own output pass on Numba where the algorithm allows (Winograd, and the products into a
    ``channels_last`` output; the others add it in one more pass), so its output is not written and read back
    before the sum (PyTorch's quantization fuses the same ``conv-add-relu``);
  - in training to the BatchNorm (:meth:`FoldedBatchNorm2d.joins_residual`), which runs
    :func:`~minidl.nn.merge.batch_norm_add_relu_forward`: the BatchNorm, the sum and the ReLU, on Numba in the
    BatchNorm's normalize pass (``channels_last`` inputs), the same bits as the two pairs; its backward returns the
    gradients of both inputs, and the block's backward takes that branch when its forward did.

Patterns are found in every :class:`Sequential` (consecutive children) and in the modules that list which of their
children run back to back, ``fusion_groups`` (the ResNet blocks: ``(("conv1", "bn1", "relu1"), ("conv2", "bn2",
"add", "relu2"))``, as torchvision's quantizable models list them). A module named there must run once per
forward, at that place, and hand its output to the next one unchanged (not edited in place between them: the
folding and the training sums are taken for exactly that array): a ReLU that the block also applies elsewhere
would become an Identity there too. Only the
exact classes are fused: a ReLU replaced by ``nn.GELU()`` (or a ``Hardtanh(0, 6)``, which is not a ReLU6), a
subclass of BatchNorm2d, a module whose ``forward`` was replaced on the instance, a module with hooks
(:mod:`minidl.nn.hooks`), or a module that sits in several slots, is left alone.

A fused model can be edited and sliced like any other: each fused module computes what it says on its own, and a
:class:`ConvBn2d` folds only where ``fuse`` put it next to its BatchNorm (see its docstring). Only the ReLU has
moved: the ReLU (ReLU6) is now applied by the module before its slot (which holds an ``Identity``), so a slice or
an edit that splits a fused group keeps or drops it with that module. To change the layers, edit the unfused model
and fuse it again.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> from minidl import nn
    >>> _ = minidl.manual_seed(0)
    >>> block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> fused = nn.fuse(block)
    >>> fused[0], fused[2]
    (ConvBn2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), folds=BatchNorm2d+ReLU), Identity())
    >>> type(fused[1]).__name__, fused[1].activation  # the BatchNorm2d, which now applies the ReLU in training
    ('FoldedBatchNorm2d', 'relu')
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    >>> with minidl.no_grad():
    ...     same = np.allclose(fused(x), block(x), atol=1e-5)   # one folded convolution vs three layers
    >>> same, list(fused.state_dict()) == list(block.state_dict())
    (True, True)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minidl import anomaly_mode
from minidl._deferred import BatchNormReLUOutput
from minidl.backend import get_array_module, get_backend
from minidl.grad_mode import is_grad_enabled
from minidl.nn._calls import _calling_module, _running_module
from minidl.nn._norm_common import sums_argument, sums_keep_the_variance
from minidl.nn.activation import ReLU, ReLU6
from minidl.nn.containers import Identity
from minidl.nn.conv import Conv2d
from minidl.nn.dispatch import F, is_reference
from minidl.nn.hooks import has_hooks
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm1d, BatchNorm2d

__all__ = [
    "AddReLU",
    "BatchNormReLU1d",
    "BatchNormReLU2d",
    "ConvBn2d",
    "FoldedBatchNorm2d",
    "joins_residual",
    "reads_batch_norm_relu",
]


# ---------------------------------------------------------------------------------------------- fused modules
class _BatchNormReLU:
    """BatchNorm then ReLU through the pair :func:`~minidl.nn.normalization.batch_norm_relu_forward`."""

    def forward(self: Any, x: Any) -> Any:
        out, cache = F.batch_norm_relu_forward(x, *self._functional_arguments(x))
        self._count_batch()
        self.save_for_backward(cache)
        return out

    def backward(self: Any, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        dx, dgamma, dbeta = F.batch_norm_relu_backward(dout, cache)
        self._accumulate(dgamma, dbeta)
        return dx


class BatchNormReLU2d(_BatchNormReLU, BatchNorm2d):
    r"""``relu(BatchNorm2d(x))`` in one pair: what :func:`~minidl.nn.fuse` puts in place of a BatchNorm2d followed
    by a ReLU.

    .. math:: y = \max\Big(0,\; \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma + \beta\Big)

    The BatchNorm2d's parameters and buffers (the same arrays, so the same ``state_dict`` keys), its training and
    eval behaviour, then a ReLU.

    Shape:
        - Input: (N, C, H, W).  - Output: the same.
    Backward:
        dz = dout * [y > 0] (y the BatchNorm output), then the BatchNorm backward of dz.
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> fused = nn.fuse(nn.Sequential(nn.BatchNorm2d(2), nn.ReLU()))
        >>> fused[0], fused[1]
        (BatchNormReLU2d(2, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True), Identity())
        >>> y = fused(np.arange(8.0, dtype=np.float32).reshape(2, 2, 1, 2))
        >>> float(y.min()), fused.backward(np.ones_like(y)).shape
        (0.0, (2, 2, 1, 2))
    """


class BatchNormReLU1d(_BatchNormReLU, BatchNorm1d):
    r"""``relu(BatchNorm1d(x))`` in one pair (see :class:`BatchNormReLU2d`).

    .. math:: y = \max\Big(0,\; \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma + \beta\Big)

    Shape:
        - Input: (N, C) or (N, C, L).  - Output: the same.
    Backward:
        dz = dout * [y > 0], then the BatchNorm backward of dz.
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> bn_relu = nn.fuse(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))[0]
        >>> y = bn_relu(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32))
        >>> y.round(3)
        array([[0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
        >>> bn_relu.backward(np.ones_like(y)).shape
        (2, 3)
    """


class _Activation(NamedTuple):
    """How a folded Conv2d-BatchNorm2d(-activation) group runs: the activation module ``fuse`` takes into it (None:
    no activation), the pair its BatchNorm runs unfolded (it and the pairs it calls must be minidl's for the fold to
    compute the same), the pair its convolution runs folded, and its repr suffix."""

    module: type | None
    unfolded: str
    folded: str
    shown: str


_ACTIVATIONS = {
    None: _Activation(None, "batch_norm", "conv2d", ""),
    "relu": _Activation(ReLU, "batch_norm_relu", "conv2d_relu", "+ReLU"),
    "relu6": _Activation(ReLU6, "batch_norm_relu6", "conv2d_relu6", "+ReLU6"),
}


def _inference(bn: Any) -> bool:
    """Whether a folded Conv2d-BatchNorm2d pair runs folded now: eval mode with running statistics, gradients off."""
    return not bn.training and not is_grad_enabled() and bn.running_mean is not None


class FoldedBatchNorm2d(BatchNorm2d):
    r"""A BatchNorm2d (and the activation after it: ``activation`` ``"relu"`` or ``"relu6"``, else None) whose
    inference the :class:`ConvBn2d` before it does.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \varepsilon}} \gamma + \beta
        \quad (\text{then } \max(0, y) \text{ or } \min(\max(0, y), 6)), \qquad y = x \text{ on a folded output}

    When its input is the output its :class:`ConvBn2d` just computed folded (in inference), it returns it: the
    convolution already applied it. In training, for exactly the output its :class:`ConvBn2d` just computed with the
    sums of its values (:meth:`ConvBn2d.sums_for_batch_norm`), the batch statistics come from those sums (the pairs'
    ``channel_sums``). Any other input goes through a BatchNorm2d, then the activation, as one pair:
    ``batch_norm_relu`` for ``"relu"`` (as :class:`BatchNormReLU2d`), ``batch_norm_relu6`` for ``"relu6"``. It keeps
    the BatchNorm's parameters and buffers, so the ``state_dict`` keys are the original's.

    Joined with the Add and ReLU after it (see :meth:`joins_residual`), ``forward(x, residual)`` returns
    relu(BatchNorm(x) + residual) in one pair, and ``backward`` the gradients of both inputs.

    Shape:
        - Input: (N, C, H, W); joined, also the residual, the same shape.  - Output: the same.
    Backward:
        (not in inference) the BatchNorm2d's, after the activation's; joined, ``(dx, dresidual)``.
    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> from minidl import nn
        >>> net = nn.fuse(nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).eval())
        >>> x = np.ones((1, 1, 2, 2), np.float32)
        >>> with minidl.no_grad():
        ...     y = net[0](x)       # called on its own, a ConvBn2d is a plain Conv2d
        ...     z = net[1](y)       # and this a BatchNorm2d
        ...     folded = net(x)     # inside the Sequential it was fused in: one folded convolution
        >>> bool(np.allclose(folded, z, atol=1e-6))
        True
        >>> bn = net[1].train()  # in training, a BatchNorm2d with its backward
        >>> y = bn(np.random.default_rng(0).normal(size=(2, 2, 3, 3)).astype(np.float32))
        >>> bn.backward(np.ones_like(y)).shape
        (2, 2, 3, 3)
    """

    activation: str | None = None  # "relu", "relu6" or None
    slot: str = ""  # its name in the module fuse found it in
    joins: tuple[str, str] | None = None  # the slots of the Add and the ReLU after it, if fused with them

    def extra_repr(self) -> str:
        joined = ", joins=Add+ReLU" if self.joins else ""
        return f"{super().extra_repr()}, activation={self.activation}{joined}"

    def _pair(self) -> str:
        """The pair it runs unfolded: ``batch_norm``, ``batch_norm_relu`` or ``batch_norm_relu6``."""
        return _ACTIVATIONS[self.activation].unfolded

    def joins_residual(self) -> bool:
        """Whether the module running now (a ResNet block, after its last convolution) may hand it the shortcut,
        ``bn(x, residual)``, for relu(bn(x) + residual) in one pair,
        :func:`~minidl.nn.merge.batch_norm_add_relu_forward` (on Numba the sum and the ReLU in the normalize pass).
        Its ``backward`` then returns the gradients of both inputs, ``(dx, dresidual)``. It joins when all of these
        hold, and is the plain BatchNorm2d otherwise:

        * ``fuse`` fused it with the Add and the ReLU after it (``joins``);
        * the block still holds all three in their slots, as fused, without hooks and with their own ``forward``
          and ``backward`` (the Add and the ReLU are not called: their hooks would not run);
        * the pair is still minidl's, and so are the two it is built from, ``batch_norm`` and ``add_relu``;
        * not inference (eval mode with gradients off), where the ConvBn2d before it folds it, and joins the three
          itself (:meth:`ConvBn2d.joins_residual`). So this is what training runs (and eval mode with gradients
          on, with the running statistics)."""
        return self._joins_in(_running_module())

    def _joins_in(self, parent: Module | None) -> bool:
        """:meth:`joins_residual` for a call by ``parent``."""
        if not self.joins or _inference(self) or parent is None or parent._modules.get(self.slot) is not self:
            return False  # (in inference the ConvBn2d before it folds it, and joins them if it can)
        return (
            _plain(self, FoldedBatchNorm2d) and _plain_end(parent, self.joins) and is_reference("batch_norm_add_relu")
        )

    def forward(self, x: Any, residual: Any = None) -> Any:
        sums = self._channel_sums_of(x)  # the statistics' sums its ConvBn2d took as it wrote x, if it did
        if residual is not None:
            return self._forward_joined(x, residual, sums)
        if x is self.__dict__.pop("_folded_output", None):
            return x  # the output of the ConvBn2d before it, which applied this BatchNorm (and activation), folded
        pair = getattr(F, f"{self._pair()}_forward")
        out, cache = pair(x, *self._functional_arguments(x), **sums_argument(sums))
        self._count_batch()
        self.save_for_backward(cache, False)
        return out

    def _channel_sums_of(self, x: Any, *, keep: bool = False) -> Any:
        """The ``channel_sums`` the :class:`ConvBn2d` before it filled as it computed exactly this array x (in
        training, see :meth:`ConvBn2d.sums_for_batch_norm`), or None: the batch statistics then come from them
        instead of from a pass over x. Taken once (``keep``: looked at, not taken, as a block asks before it defers
        this BatchNorm): a later call computes its own. Also None where the sums' shifts were too far from the
        batch's means to keep the variance's digits (:func:`sums_keep_the_variance`, asked once per sums: a running
        mean far from the batch's, as after the data shifted): then the pair computes them from x, as unfused."""
        given = self.__dict__.get("_channel_sums") if keep else self.__dict__.pop("_channel_sums", None)
        if given is None or given[0] is not x:
            return None
        if given[2] is None:  # [output, sums, whether they keep the variance (None: not asked yet)]
            given[2] = sums_keep_the_variance(given[1], x.size // x.shape[1], self.eps, x.dtype)
        return given[1] if given[2] else None

    def _forward_joined(self, x: Any, residual: Any, sums: Any = None) -> Any:
        """relu(BatchNorm(x) + residual): the BatchNorm, the Add and the ReLU after it in one pair,
        :func:`~minidl.nn.merge.batch_norm_add_relu_forward` (with ``sums``, its ``channel_sums``)."""
        if not self._joins_in(_calling_module(self)):
            raise RuntimeError(
                f"{self._where()}: takes a residual only where nn.fuse joined it with the Add and ReLU after it, "
                "called by the block it was fused in (see FoldedBatchNorm2d.joins_residual)"
            )
        out, cache = F.batch_norm_add_relu_forward(
            x, residual, *self._functional_arguments(x), **sums_argument(sums)
        )  # fmt: skip
        self._count_batch()
        self.save_for_backward(cache, True)
        return out

    def defer(self, x: Any) -> BatchNormReLUOutput:
        """Its output for x described, not computed (``activation`` ``"relu"``; not in inference, where the
        :class:`ConvBn2d` before it folds it): the pair ``batch_norm_relu_forward(..., deferred=True)``, with the
        sums its :class:`ConvBn2d` took as it wrote x (then no pass over x at all), for the :class:`ConvBn2d` after it
        to compute as it reads x: what a ResNet block calls where :meth:`ConvBn2d.reads_batch_norm_relu`. The
        statistics, running averages, batch count and ``backward`` are those of a call; its forward hooks would not
        run (the block asks for none)."""
        if self.activation != "relu":
            raise RuntimeError(
                f"{self._where()}: defers only a BatchNorm+ReLU (activation 'relu'), not activation {self.activation!r}"
            )
        if _inference(self):
            raise RuntimeError(
                f"{self._where()}: does not defer in inference (eval mode, gradients off), where the ConvBn2d before "
                "it folds it"
            )
        sums = self._channel_sums_of(x)
        out, cache = F.batch_norm_relu_forward(x, *self._functional_arguments(x), **sums_argument(sums), deferred=True)
        self._count_batch()
        self.save_for_backward(cache, False)
        return out

    def backward(self, dout: Any) -> Any:
        cache, joined = self.pop_saved()
        if joined:  # relu(bn(x) + residual): the gradients of x and of the residual
            dx, dresidual, dgamma, dbeta = F.batch_norm_add_relu_backward(dout, cache)
            self._accumulate(dgamma, dbeta)
            return dx, dresidual
        dx, dgamma, dbeta = getattr(F, f"{self._pair()}_backward")(dout, cache)
        self._accumulate(dgamma, dbeta)
        return dx

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_folded_output", None)  # (an output of one call)
        state.pop("_channel_sums", None)  # (the sums of one call's input)
        return state


class ConvBn2d(Conv2d):
    r"""A Conv2d that also applies the BatchNorm2d after it (and a ReLU or ReLU6: ``activation``) in inference,
    folded.

    .. math::

        y = \mathrm{conv2d}\big(x,\; s W,\; s (b - \mu) + \beta\big), \quad
            s = \gamma / \sqrt{\sigma^2 + \varepsilon} \ \text{(folded)}, \qquad
        y = \mathrm{conv2d}(x, W, b) \ \text{(otherwise)}

    (:math:`\mu, \sigma^2` the BatchNorm's running statistics, per output channel; then the ``activation``,
    ``"relu"`` or ``"relu6"``, if any). It folds when all of these hold, and is the plain Conv2d otherwise:

    * inference: the BatchNorm in eval mode with running statistics, gradients off;
    * the pair the :class:`FoldedBatchNorm2d` would run (``batch_norm``; ``batch_norm_relu`` or ``batch_norm_relu6``
      with an activation) and the pairs it calls in :mod:`minidl.nn.functional` are still minidl's
      (:func:`~minidl.nn.dispatch.is_reference`): a pair you replaced runs, unfolded;
    * the module it was fused in is the one calling it, and still holds it and its BatchNorm in the two slots
      ``fuse`` found them in (``slots``): replace or move either, or run a slice without the BatchNorm, and nothing
      is folded;
    * neither it nor its BatchNorm has a hook, or a ``forward`` or ``backward`` set on the instance: a forward hook
      here sees the convolution's output, as in the unfused model (folded, it would see the BatchNorm's, and an
      output it replaced would go through the BatchNorm again), and the BatchNorm's hooks and ``forward`` see that
      output too.

    Folded, the output is ``conv2d(x, s W, s (b - mean) + beta)`` with s = gamma / sqrt(running_var + eps) per
    output channel, then the activation (:func:`~minidl.nn.conv_fused.conv2d_relu_forward`,
    :func:`~minidl.nn.conv_fused.conv2d_relu6_forward`: one pass on Numba), and the :class:`FoldedBatchNorm2d` it
    holds (``bn``, not a child: its parameters belong to its own slot) returns that output as it is. The
    convolution keeps its parameters (the same ``state_dict`` keys) and reads the BatchNorm's at each call, so the
    folded weights always follow the live ones.

    In training, where :meth:`sums_for_batch_norm`, it is the Conv2d that also fills the sums of its output's
    values per channel (``conv2d_forward``'s ``channel_sums``) and hands them to its BatchNorm with that output.

    Shape:
        - Input: (N, C, H, W); joined (``forward(x, residual)``, see :meth:`joins_residual`), also the residual
          (N, O, OH, OW).  - Output: (N, O, OH, OW), as the Conv2d's.
    Backward:
        (not in inference) the Conv2d's.
    Examples:
        >>> import numpy as np
        >>> import minidl
        >>> from minidl import nn
        >>> _ = minidl.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> conv = nn.fuse(net)[0]
        >>> w, b = conv.folded_parameters()  # s W and s (b - mean) + beta, from the live parameters
        >>> w.shape, b.shape
        ((4, 3, 3, 3), (4,))
        >>> y = conv(np.ones((1, 3, 5, 5), np.float32))  # gradients on: the plain Conv2d, with its backward
        >>> conv.backward(np.ones_like(y)).shape
        (1, 3, 5, 5)
    """

    bn: Any = None  # the FoldedBatchNorm2d after it (not a child: its parameters belong to its own slot)
    slots: tuple[str, str] = ("", "")  # its name and the BatchNorm's in the module fuse found them in
    joins: tuple[str, str] | None = None  # the slots of the Add and the ReLU after the BatchNorm, if fused with them

    @property
    def activation(self) -> str | None:
        """The activation its BatchNorm applies after it (``"relu"``, ``"relu6"`` or None): the one it folds too."""
        return None if self.bn is None else self.bn.activation

    def extra_repr(self) -> str:
        joined = "+Add+ReLU" if self.joins else ""
        return f"{super().extra_repr()}, folds=BatchNorm2d{_ACTIVATIONS[self.activation].shown}{joined}"

    def folded_parameters(self) -> tuple[Any, Any]:
        """``(s W, s (b - running_mean) + beta)`` with s = gamma / sqrt(running_var + eps) per output channel."""
        bn = self.bn
        xp = get_array_module(self.weight.data)
        scale = 1.0 / xp.sqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.data
        shift = -bn.running_mean * scale
        if self.bias is not None:
            shift = shift + self.bias.data * scale
        if bn.bias is not None:
            shift = shift + bn.bias.data
        dtype = self.weight.data.dtype
        weight = self.weight.data * scale.reshape(-1, 1, 1, 1).astype(dtype, copy=False)
        return weight, shift.astype(dtype, copy=False)

    def _folds_in(self, parent: Module | None) -> bool:
        """Whether it folds when ``parent`` calls it: inference, the reference pairs, both slots as ``fuse`` left
        them, both modules plain (no hooks, their class's ``forward`` and ``backward``)."""
        bn = self.bn
        if bn is None or not _inference(bn) or not is_reference(_ACTIVATIONS[self.activation].unfolded):
            return False
        mine, its = self.slots
        if parent is None or parent._modules.get(mine) is not self or parent._modules.get(its) is not bn:
            return False
        return _plain(self, ConvBn2d) and _plain(bn, FoldedBatchNorm2d)

    def joins_residual(self) -> bool:
        """Whether the module running now (a ResNet block, before it calls this convolution) may hand it the
        shortcut, ``conv(x, residual)``, for relu(conv(x) + residual) in one folded pass: ``fuse`` fused it with the
        Add and the ReLU after its BatchNorm (``joins``); the block still holds all four in their slots, as fused,
        without hooks and with their own ``forward`` (a hook on the convolution would see two inputs and the summed
        output; the BatchNorm, the Add and the ReLU are not called); it folds (see above); and the pair
        the AddReLU would run, ``add_relu``, is still minidl's (as folding asks of the BatchNorm's: a pair you
        replaced runs, unjoined). It then runs :func:`~minidl.nn.conv_fused.conv2d_add_relu_forward`."""
        return self._joins_in(_running_module())

    def _joins_in(self, parent: Module | None) -> bool:
        """:meth:`joins_residual` for a call by ``parent``."""
        if not self.joins or not self._folds_in(parent) or not is_reference("add_relu"):
            return False
        return _plain_end(parent, self.joins)  # (folding asks the same of the convolution and the BatchNorm)

    def sums_for_batch_norm(self, x: Any) -> bool:
        """Whether this call on ``x`` (in training) computes the sums of its output that the
        :class:`FoldedBatchNorm2d` after it takes its batch statistics from (``conv2d_forward``'s ``channel_sums``),
        so that the BatchNorm makes one pass over that output fewer. It does when all of these hold, and is the
        plain Conv2d otherwise:

        * the BatchNorm uses batch statistics (training, or no running statistics; then this call does not fold it);
        * its caller holds it and the BatchNorm in the slots ``fuse`` found them in (the module it was fused in, or
          a slice of it that keeps both), both plain (no hooks, which could change the output after it was summed,
          and their class's ``forward`` and ``backward``), and hands the output to the BatchNorm unchanged (as every
          ``fusion_groups`` block and :class:`~minidl.nn.Sequential` do);
        * ``conv2d`` and the pairs the BatchNorm runs (``batch_norm``, ``batch_norm_relu`` or ``batch_norm_relu6``;
          ``batch_norm_add_relu`` when joined) are still minidl's, which take ``channel_sums``;
        * the backend adds the sums up in the convolution's output pass
          (:meth:`~minidl.backend.numpy_backend.NumpyBackend.conv2d_takes_channel_sums`: on Numba, F(4x4, 3x3) into a
          ``channels_last`` output; summed in a pass after the convolution, they would cost the BatchNorm's own first
          pass), with zero padding.

        The sums are around the BatchNorm's running mean (0 without one, and where it is not finite), which keeps the
        variance's digits while the batch's mean is near it; where it is not, the BatchNorm computes its statistics
        itself (:meth:`FoldedBatchNorm2d._channel_sums_of`)."""
        return self._sums_in(_calling_module(self), x)

    def _sums_in(self, parent: Module | None, x: Any) -> bool:
        """:meth:`sums_for_batch_norm` for a call by ``parent`` on ``x``."""
        bn = self.bn
        if bn is None or not (bn.training or bn.running_mean is None) or self.padding_mode != "zeros":
            return False  # (with batch statistics it does not fold either)
        mine, its = self.slots
        if parent is None or parent._modules.get(mine) is not self or parent._modules.get(its) is not bn:
            return False
        pairs = ("conv2d", bn._pair(), *(("batch_norm_add_relu",) if bn.joins else ()))
        if not (_plain(self, ConvBn2d) and _plain(bn, FoldedBatchNorm2d) and all(map(is_reference, pairs))):
            return False
        return get_backend().conv2d_takes_channel_sums(
            x, self.weight.data, self.stride, self._sides(), self.dilation, self.groups
        )

    def reads_batch_norm_relu(self, bn: Any, relu: Module, x: Any) -> bool:
        """Whether the module running now (a ResNet block, between ``bn(x)`` and this convolution) may hand it the
        BatchNorm+ReLU before it deferred, ``self(bn.defer(x))``: the convolution then applies ``bn`` and ``relu``
        as it reads x (:class:`~minidl.nn.BatchNormReLUOutput`), and their output is never written to
        memory. It may when all of these hold, and the block runs ``relu(bn(x))`` otherwise:

        * training, with batch statistics (in inference the ConvBn2d before ``bn`` folds it);
        * ``bn`` is the plain :class:`FoldedBatchNorm2d` (``activation`` ``"relu"``) in its slot of the running
          module, ``relu`` the plain :class:`~minidl.nn.Identity` ``fuse`` left in the ReLU's slot, and this a plain
          ConvBn2d in its slot, with zero padding: none has hooks or a replaced ``forward`` (they would not run) or
          ``backward``;
        * ``bn`` holds the sums its :class:`ConvBn2d` took as it wrote exactly x (:meth:`sums_for_batch_norm`), and
          they keep the variance's digits, so that its statistics need no pass over x either;
        * ``conv2d`` and ``batch_norm_relu`` are minidl's pairs, and anomaly detection is off (it checks every
          module's output);
        * the backend applies it as it reads x
          (:meth:`~minidl.backend.numpy_backend.NumpyBackend.conv2d_reads_bn_relu`: on Numba, F(4x4, 3x3) in its
          compiled loops, forward and backward; the reference computes the output first, so there is nothing to
          save).

        What it saves: the BatchNorm's normalize pass (x read, the output written) and the output's memory; a
        ``resnet56`` training step, batch 128, 2 threads, Intel Xeon (Emerald Rapids): see
        ``benchmarks/README.md``."""
        parent = _running_module()
        if parent is None or anomaly_mode._enabled or not _plain(bn, FoldedBatchNorm2d) or bn.activation != "relu":
            return False
        if _inference(bn) or not (bn.training or bn.running_mean is None) or not _plain(relu, Identity):
            return False
        if parent._modules.get(bn.slot) is not bn or parent._modules.get(self.slots[0]) is not self:
            return False
        if not _plain(self, ConvBn2d) or self.padding_mode != "zeros" or bn._channel_sums_of(x, keep=True) is None:
            return False
        if not (is_reference("conv2d") and is_reference("batch_norm_relu")):
            return False
        return get_backend().conv2d_reads_bn_relu(
            x, self.weight.data, self.stride, self._sides(), self.dilation, self.groups
        )

    def forward(self, x: Any, residual: Any = None) -> Any:
        if residual is not None:
            return self._forward_joined(x, residual)
        parent = _calling_module(self)
        deferred = isinstance(x, BatchNormReLUOutput)  # a BatchNorm+ReLU deferred to it (training: it folds nothing)
        if self._sums_in(parent, x.x if deferred else x):  # training: its BatchNorm's sums, taken as out is written
            return self._with_sums(x)
        if deferred or not self._folds_in(parent):
            return super().forward(x)
        x, padding, _ = self._padded(x)
        pair = getattr(F, f"{_ACTIVATIONS[self.activation].folded}_forward")
        out, _ = pair(x, *self.folded_parameters(), self.stride, padding, self.dilation, self.groups)
        object.__setattr__(self.bn, "_folded_output", out)  # the BatchNorm passes exactly this array on
        return out

    def _with_sums(self, x: Any) -> Any:
        """The Conv2d's forward of x with a (3, O) float64 ``channel_sums`` around the BatchNorm's running mean (0
        where a NaN or inf crept in; 0 without one), near the batch's mean, handed to the BatchNorm with the output
        (it takes them for exactly that array)."""
        bn, xp = self.bn, get_array_module(self.weight.data)
        sums = xp.zeros((3, self.out_channels), dtype=xp.float64)
        if bn.running_mean is not None:
            sums[0] = xp.where(xp.isfinite(bn.running_mean), bn.running_mean, 0.0)
        out = super().forward(x, channel_sums=sums)
        object.__setattr__(self.bn, "_channel_sums", [out, sums, None])  # (None: whether they keep the variance)
        return out

    def _forward_joined(self, x: Any, residual: Any) -> Any:
        """relu(conv2d(x, s W, s (b - mean) + beta) + residual): the folded convolution, the Add and the ReLU after
        its BatchNorm in one pair, :func:`~minidl.nn.conv_fused.conv2d_add_relu_forward` (inference only)."""
        if not self._joins_in(_calling_module(self)):
            raise RuntimeError(
                f"{self._where()}: takes a residual only where nn.fuse joined it with the Add and ReLU after its "
                "BatchNorm, in inference, called by the block it was fused in (see ConvBn2d.joins_residual)"
            )
        x, padding, _ = self._padded(x)
        out, _ = F.conv2d_add_relu_forward(
            x, residual, *self.folded_parameters(), self.stride, padding, self.dilation, self.groups
        )
        return out


def reads_batch_norm_relu(conv: Module, bn: Module, relu: Module, x: Any) -> bool:
    """Whether ``conv`` is a :class:`ConvBn2d` that may take the BatchNorm+ReLU ``bn``, ``relu`` before it deferred,
    ``conv(bn.defer(x))``, computing their output as it reads x (:meth:`ConvBn2d.reads_batch_norm_relu`): what a
    ResNet block asks in its forward (the branch its backward takes too)."""
    return isinstance(conv, ConvBn2d) and conv.reads_batch_norm_relu(bn, relu, x)


def joins_residual(module: Module) -> bool:
    """Whether ``module`` is a :class:`ConvBn2d` that :func:`~minidl.nn.fuse` joined with the BatchNorm, Add and ReLU
    after it and that runs them as one pass now (in inference: :meth:`ConvBn2d.joins_residual`), or a
    :class:`FoldedBatchNorm2d` joined with the Add and ReLU after it (:meth:`FoldedBatchNorm2d.joins_residual`):
    then the ResNet block calling this hands it the shortcut, ``module(x, residual)``, instead of calling the modules
    after it."""
    return isinstance(module, (ConvBn2d, FoldedBatchNorm2d)) and module.joins_residual()


class AddReLU(Add):
    r"""``AddReLU(a, b) = relu(a + b)``: what :func:`~minidl.nn.fuse` puts in place of an
    :class:`~minidl.nn.merge.Add` followed by a ReLU (the end of a ResNet block; torchvision's quantizable blocks call
    it ``add_relu``). It runs the pair :func:`~minidl.nn.merge.add_relu_forward`: on Numba one pass over memory. No
    parameters.

    .. math:: y = \max(0,\; a + b)

    Shape:
        - a, b: the same shape (no broadcasting).  - Output: that shape.
    Backward:
        dz = dout * [a + b > 0]; ``backward`` returns dz, the gradient of *each* input.
    Examples:
        >>> import numpy as np
        >>> join = AddReLU()
        >>> join(np.array([1.0, -2.0]), np.array([-3.0, 4.0]))
        array([0., 2.])
        >>> join.backward(np.array([5.0, 5.0]))
        array([0., 5.])
    """

    def forward(self, a: Any, b: Any) -> Any:
        out, cache = F.add_relu_forward(a, b)
        self.save_for_backward(cache)
        return out

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        return F.add_relu_backward(dout, cache)

    def _where(self) -> str:
        return "AddReLU"


def _plain(module: Module | None, *classes: type) -> bool:
    """``module`` is exactly one of ``classes`` (not a subclass, whose forward may differ), its ``forward`` and
    ``backward`` are the class's (not replaced on the instance, as a profiler or a student may do), and it has no
    hooks (a fused module would not call them)."""
    return (
        module is not None
        and type(module) in classes
        and not {"forward", "backward"} & module.__dict__.keys()
        and not has_hooks(module)
    )


def _plain_end(parent: Module, joins: tuple[str, str]) -> bool:
    """The slots ``joins`` of ``parent`` still hold what ``fuse`` put there for a joined block end, plain: the
    :class:`AddReLU` and the :class:`Identity` in the ReLU's slot (a join does not call them)."""
    add, relu = (parent._modules.get(name) for name in joins)
    return _plain(add, AddReLU) and _plain(relu, Identity)


def __getattr__(name: str) -> Any:
    """``fuse``, which moved to :mod:`minidl.nn.fusion_pass`, still imports from here (``from minidl.nn.fusion import
    fuse``): looked up when asked for, as that module imports this one."""
    if name == "fuse":
        from minidl.nn.fusion_pass import fuse

        return fuse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
