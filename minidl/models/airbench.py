r"""``airbench94``: Keller Jordan's CIFAR-10 speedrun network (arXiv 2404.00498), 94 % test accuracy in 9.9 epochs.

The network, as ``make_net`` of airbench94 builds it (PyTorch's state_dict keys here are ``whiten.weight``,
``block1.conv1.weight``, ``block1.norm1.bias``, ..., ``linear.weight``):

================================================  ==============  ==========================================
layer                                             output          why
================================================  ==============  ==========================================
whiten: conv 2x2 3->24 (bias), GELU               24 x 31 x 31    patch whitening, weight frozen
block1: conv 3x3 24->64, max-pool 2, BN, GELU,    64 x 15 x 15    pool *before* BN: BN and GELU
conv 3x3 64->64, BN, GELU                                         run on a quarter of the pixels
block2: the same, 64->256                         256 x 7 x 7
block3: the same, 256->256                        256 x 3 x 3
max-pool 3, flatten                               256             a global max over the 3x3 map
linear 256->10 (no bias), Mul(1/9)                10              fixed logit temperature
================================================  ==============  ==========================================

In all 1,972,792 parameters, of which 1,440 are frozen (the 288 whitening weights and the 1,152 BatchNorm scales),
so 1,971,352 train. One 32x32 image costs 118.1 MMAC = 0.236 GFLOP forward; 9.9 epochs of forward and backward
(about 3x the forward) over 50,000 images are 0.35 PFLOP, the paper's 0.36. The ingredients:

* **Patch whitening.** The first layer's 24 filters are set, before training, from the eigenvectors of the
  covariance of the training images' 2x2 patches, scaled by :math:`1/\sqrt{\lambda + \epsilon}`, with both signs
  (:func:`minidl.nn.init.patch_whitening_`); its weight is frozen (``requires_grad=False``), its bias trains for
  the first 3 epochs only (the training script does that).
* **Identity initialization.** Each 3x3 conv keeps PyTorch's default init, except that its first ``in_channels``
  filters are the Dirac delta (:func:`minidl.nn.init.dirac_`): at the start, the first channels pass through.
* **BatchNorm** with its scale frozen at 1 (``weight.requires_grad=False``; it would only duplicate the next
  conv's scale), eps 1e-12 and momentum 0.4 in PyTorch's convention (airbench writes 0.6 for the weight of the
  old running value: running = 0.6 running + 0.4 batch). Its bias trains with a 64x larger learning rate.
* **GELU** activations, no residual connections, and **Mul(1/9)** after a bias-free Linear: the logits' scale is
  fixed by the architecture.

Widths ``(128, 384, 384)`` give the larger airbench95 network (95 % with 15 epochs in the paper). The training
recipe (label smoothing, Nesterov SGD, schedule, Lookahead, alternating flip, translate, TTA) is in
``examples/speedrun_cifar10.py`` and ``docs/speedrun.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minidl.models.weights import Airbench94_Weights, load_pretrained
from minidl.nn import init
from minidl.nn._checks import check_float, check_int, check_layout
from minidl.nn.activation import GELU
from minidl.nn.conv import Conv2d
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling import MaxPool2d
from minidl.nn.scale import Mul

__all__ = ["AirbenchConvGroup", "AirbenchNet", "airbench94"]


def _dirac_conv(in_channels: int, out_channels: int, kernel_size: int, padding: int, bias: bool) -> Conv2d:
    """airbench's Conv: PyTorch's default init, bias zeroed, the first ``in_channels`` filters the identity."""
    conv = Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
    if conv.bias is not None:
        init.zeros_(conv.bias)
    init.dirac_(conv.weight.data[: min(in_channels, out_channels)])
    return conv


def _frozen_scale_bn(num_features: int, momentum: float) -> BatchNorm2d:
    """BatchNorm2d with eps 1e-12 whose scale (weight) stays 1: only the bias (beta) trains."""
    bn = BatchNorm2d(num_features, eps=1e-12, momentum=momentum)
    bn.weight.requires_grad = False
    return bn


class AirbenchConvGroup(Module):
    r"""One airbench block: conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (no residual).

    .. math:: y = \mathrm{GELU}(\mathrm{BN}_2(W_2 * \mathrm{GELU}(\mathrm{BN}_1(\mathrm{maxpool}_2(W_1 * x)))))

    Args:
        in_channels: C.  out_channels: O.
        batchnorm_momentum: PyTorch-convention momentum of both BatchNorms. Default: 0.4.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, floor(H / 2), floor(W / 2)).
    Backward:
        the layers' backwards in reverse order; the one ``act`` module runs twice and pops its two saved inputs
        last in, first out.

    Examples:
        >>> import numpy as np
        >>> g = AirbenchConvGroup(3, 8)
        >>> g(np.zeros((2, 3, 9, 9), np.float32)).shape
        (2, 8, 4, 4)
    """

    def __init__(self, in_channels: int, out_channels: int, batchnorm_momentum: float = 0.4) -> None:
        super().__init__()
        self.in_channels = check_int("AirbenchConvGroup", "in_channels", in_channels)
        self.out_channels = check_int("AirbenchConvGroup", "out_channels", out_channels)
        self.conv1 = _dirac_conv(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = MaxPool2d(2)
        self.norm1 = _frozen_scale_bn(out_channels, batchnorm_momentum)
        self.conv2 = _dirac_conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _frozen_scale_bn(out_channels, batchnorm_momentum)
        self.act = GELU()

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"

    def forward(self, x: Any) -> Any:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))

    def backward(self, dout: Any) -> Any:
        d = self.conv2.backward(self.norm2.backward(self.act.backward(dout)))
        return self.conv1.backward(self.pool.backward(self.norm1.backward(self.act.backward(d))))


class AirbenchNet(Module):
    r"""The airbench network (see the module docstring): whitening conv, three conv groups, global max, linear.

    .. math:: \mathrm{logits} = \tfrac{1}{9}\, W_{fc}\, \max_{3\times 3} G_3(G_2(G_1(\mathrm{GELU}(W_0 * x + b_0))))

    Args:
        num_classes: outputs. Default: 10.
        widths: the three groups' channels. Default: (64, 256, 256) (airbench94); (128, 384, 384) is airbench95.
        batchnorm_momentum: PyTorch-convention BatchNorm momentum (airbench's 0.6 = 1 - 0.4). Default: 0.4.
        scaling_factor: the logits' factor. Default: 1/9.

    Attributes:
        whiten: Conv2d(3, 24, 2, bias=True) with ``weight.requires_grad`` False.  act: its GELU.
        block1, block2, block3: :class:`AirbenchConvGroup`.  pool: MaxPool2d(3).  flatten: Flatten.
        linear: Linear(widths[2], num_classes, bias=False).  scale: Mul(scaling_factor).

    Shape:
        - Input: (N, 3, H, W) with 25 <= H, W <= 48 (CIFAR: 32x32), so that the last pool gives 1x1; any size >= 9
          after ``net.pool = AdaptiveMaxPool2d(1)`` (the same global max at 32x32, used for transfer).
        - Output: (N, num_classes).
    Backward:
        the children's backwards in reverse order.

    Examples:
        >>> import numpy as np
        >>> net = AirbenchNet()
        >>> y = net(np.zeros((2, 3, 32, 32), np.float32))
        >>> y.shape, net.backward(np.ones_like(y)).shape
        ((2, 10), (2, 3, 32, 32))
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (64, 256, 256),
        batchnorm_momentum: float = 0.4,
        scaling_factor: float = 1 / 9,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("AirbenchNet", "num_classes", num_classes)
        if not isinstance(widths, (tuple, list)) or len(widths) != 3:
            raise ValueError(f"AirbenchNet: widths must be three ints (one per conv group), got {widths!r}")
        self.widths = tuple(check_int("AirbenchNet", f"widths[{i}]", w) for i, w in enumerate(widths))
        momentum = check_float("AirbenchNet", "batchnorm_momentum", batchnorm_momentum, low=0.0, high=1.0)
        whiten_width = 2 * 3 * 2 * 2  # both signs of the 12 eigenvectors of 2x2x3 patches
        self.whiten = _dirac_conv(3, whiten_width, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False  # set by init.patch_whitening_ from the data, then frozen
        self.act = GELU()
        self.block1 = AirbenchConvGroup(whiten_width, self.widths[0], momentum)
        self.block2 = AirbenchConvGroup(self.widths[0], self.widths[1], momentum)
        self.block3 = AirbenchConvGroup(self.widths[1], self.widths[2], momentum)
        self.pool = MaxPool2d(3)
        self.flatten = Flatten()
        self.linear = Linear(self.widths[2], num_classes, bias=False)
        self.scale = Mul(check_float("AirbenchNet", "scaling_factor", scaling_factor))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, widths={self.widths}"

    def forward(self, x: Any) -> Any:
        check_layout("AirbenchNet", x, ndim=4, channels=3)
        size = tuple(x.shape)
        if type(self.pool) is MaxPool2d and not all(
            25 <= s <= 48 for s in size[2:]
        ):  # checked before any state changes
            raise ValueError(
                f"AirbenchNet: expected images of 25 to 48 pixels a side (CIFAR: 32x32), so that the last max-pool "
                f"{self.pool!r} gives 1x1, got shape {size}; for other sizes set net.pool = nn.AdaptiveMaxPool2d(1) "
                "(a global max-pool, the same at 32x32)"
            )
        x = self.act(self.whiten(x))
        x = self.pool(self.block3(self.block2(self.block1(x))))
        if x.shape[2:] != (1, 1):  # a pool set by hand that does not end in 1x1
            raise ValueError(
                f"AirbenchNet: the last pool {self.pool!r} gave {x.shape[2]}x{x.shape[3]} maps, expected 1x1"
            )
        return self.scale(self.linear(self.flatten(x)))

    def backward(self, dout: Any) -> Any:
        d = self.pool.backward(self.flatten.backward(self.linear.backward(self.scale.backward(dout))))
        d = self.block1.backward(self.block2.backward(self.block3.backward(d)))
        return self.whiten.backward(self.act.backward(d))


def airbench94(
    num_classes: int = 10,
    widths: Sequence[int] = (64, 256, 256),
    *,
    weights: Airbench94_Weights | str | None = None,
    **kwargs: Any,
) -> AirbenchNet:
    """airbench94 (Jordan 2024, arXiv 2404.00498): 1,972,792 parameters, of which 1,440 are frozen (the 2x2
    whitening filters and the BatchNorm scales).

    Args:
        num_classes: outputs. Default: 10.
        widths: channels of the three conv groups. Default: (64, 256, 256); (128, 384, 384) for airbench95.
        weights: ``None`` (random), or :class:`~minidl.models.weights.Airbench94_Weights` ``.CIFAR10`` (also given
            as ``"cifar10"`` or ``"DEFAULT"``): the shipped weights trained by ``examples/speedrun_cifar10.py``,
            checked against their SHA-256. Default: None.
        **kwargs: passed to :class:`AirbenchNet` (``batchnorm_momentum``, ``scaling_factor``).

    Examples:
        >>> import numpy as np
        >>> net = airbench94()
        >>> net(np.zeros((4, 3, 32, 32), np.float32)).shape, sum(p.size for p in net.parameters())
        ((4, 10), 1972792)
        >>> sum(p.size for p in net.parameters() if p.requires_grad)
        1971352
    """
    weights = Airbench94_Weights.verify(weights, "airbench94")
    model = AirbenchNet(num_classes, widths, **kwargs)
    if weights is not None:
        load_pretrained(model, weights, "airbench94")
    return model
