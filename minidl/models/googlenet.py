r"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015), as torchvision builds it:
BatchNorm after every convolution (``BasicConv2d``, eps 0.001), and the "5x5" branch of each Inception module is
a 3x3 convolution (a slip in the original port that the pretrained weights depend on, which torchvision kept).

An **Inception module** runs four branches on the same input and concatenates their channels:

.. math:: y = \big[\, b_1(x),\ b_2(x),\ b_3(x),\ b_4(x) \,\big]_{\text{channels}}

``branch1`` 1x1; ``branch2`` 1x1 then 3x3; ``branch3`` 1x1 then 3x3 (the paper's 5x5); ``branch4`` a 3x3/1
max-pool then 1x1. The 1x1 convolutions before the larger ones reduce the channels first, the idea that kept 22
layers at 1.5 GMAC. Its backward hands each branch its slice of the gradient and adds what the four return.

Two **auxiliary classifiers** (``aux1`` after ``inception4a``, ``aux2`` after ``inception4d``) add a loss at mid
depth during training (weight 0.3 in the paper). As in torchvision they run only in training mode with
``aux_logits=True``; the forward then returns :class:`GoogLeNetOutputs` ``(logits, aux_logits2, aux_logits1)`` and
:meth:`GoogLeNet.backward` takes the gradients as a tuple in the same order, e.g.
``model.backward(GoogLeNetOutputs(dlogits, 0.3 * daux2, 0.3 * daux1))``. In eval mode (or without the auxiliary
heads) the forward returns the logits and the backward takes their gradient.

The state_dict keys are torchvision's (``conv1.conv.weight``, ``conv1.bn.running_var``,
``inception3a.branch2.1.conv.weight``, ``aux1.fc1.weight``, ``fc.weight``); the initialization is torchvision's
(``trunc_normal_(std=0.01, a=-2, b=2)`` for convolutions and linear layers, whose biases keep PyTorch's default).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.backend import get_array_module
from minidl.nn import init
from minidl.nn._checks import check_array, check_int
from minidl.nn.activation import ReLU
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.nn.pooling import MaxPool2d
from minidl.nn.pooling_adaptive import AdaptiveAvgPool2d

__all__ = ["BasicConv2d", "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux", "TransformInput", "googlenet"]


class GoogLeNetOutputs(NamedTuple):
    """GoogLeNet's outputs in training mode with auxiliary heads (torchvision's namedtuple): the main logits, then
    ``aux2``'s (after ``inception4d``), then ``aux1``'s (after ``inception4a``). Also the form of the gradient
    that :meth:`GoogLeNet.backward` takes in that mode."""

    logits: Any
    aux_logits2: Any
    aux_logits1: Any


class BasicConv2d(Module):
    r"""Convolution without bias, BatchNorm (eps 0.001), ReLU: torchvision's GoogLeNet unit (``conv``, ``bn``).

    .. math:: y = \mathrm{relu}(\mathrm{bn}(\mathrm{conv}(x)))

    Args:
        in_channels: C.  out_channels: O.
        **kwargs: passed to :class:`~minidl.nn.Conv2d` (``kernel_size``, ``stride``, ``padding``).

    Shape:
        - Input: (N, C, H, W).  - Output: (N, O, OH, OW), the convolution's output size.

    Backward:
        dx = conv.backward(bn.backward(relu.backward(dy))).

    Examples:
        >>> unit = BasicConv2d(3, 8, kernel_size=3, padding=1)
        >>> y = unit(np.ones((2, 3, 5, 5), np.float32))
        >>> y.shape, unit.backward(np.ones_like(y)).shape, unit.bn.eps
        ((2, 8, 5, 5), (2, 3, 5, 5), 0.001)
    """

    fusion_groups = (("conv", "bn", "relu"),)

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = BatchNorm2d(out_channels, eps=0.001)
        self.relu = ReLU()

    def forward(self, x: Any) -> Any:
        return self.relu(self.bn(self.conv(x)))

    def backward(self, dout: Any) -> Any:
        return self.conv.backward(self.bn.backward(self.relu.backward(dout)))


class Inception(Module):
    r"""An Inception module: four branches on the same input, concatenated (torchvision's ``Inception``).

    .. math:: y = [\, b_1(x),\ b_2(x),\ b_3(x),\ b_4(x) \,]

    Args:
        in_channels: C.
        ch1x1: channels of ``branch1`` (1x1).
        ch3x3red, ch3x3: ``branch2``: 1x1 to ch3x3red channels, then 3x3 to ch3x3.
        ch5x5red, ch5x5: ``branch3``: 1x1 to ch5x5red, then 3x3 (the paper's 5x5; see the module docstring).
        pool_proj: ``branch4``: 3x3/1 max-pool, then 1x1 to pool_proj channels.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).

    Backward:
        dy splits along the channels into the four branches' slices; dx = the sum of the four branches' backward.

    Examples:
        >>> block = Inception(192, 64, 96, 128, 16, 32, 32)  # inception3a
        >>> y = block(np.ones((1, 192, 4, 4), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((1, 256, 4, 4), (1, 192, 4, 4))
    """

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1), BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        self.branch3 = Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1), BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1)
        )
        self.branch4 = Sequential(
            MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        self.sizes = (ch1x1, ch3x3, ch5x5, pool_proj)

    def branches(self) -> list[Module]:
        return [self.branch1, self.branch2, self.branch3, self.branch4]

    def forward(self, x: Any) -> Any:
        outputs = [branch(x) for branch in self.branches()]
        return get_array_module(x).concatenate(outputs, axis=1)

    def backward(self, dout: Any) -> Any:
        dx, start = None, 0
        for branch, size in zip(self.branches(), self.sizes, strict=True):
            d = branch.backward(dout[:, start : start + size])  # each branch gets its own channels' gradient
            dx = d if dx is None else dx + d  # x fed all four: the gradients add
            start += size
        return dx

    def receptive_field_branches(self) -> list[list[Module]]:
        """The four branches, for :func:`minidl.summary`'s receptive field."""
        return [[branch] for branch in self.branches()]


class InceptionAux(Module):
    r"""An auxiliary classifier: 4x4 adaptive average pooling, 1x1 BasicConv2d to 128 channels, linear 2048 ->
    1024, ReLU, dropout, linear -> classes (torchvision's ``InceptionAux``: ``conv``, ``fc1``, ``fc2``).

    .. math:: y = \mathrm{fc_2}(\mathrm{dropout}(\mathrm{relu}(\mathrm{fc_1}(\mathrm{flatten}(
        \mathrm{conv}(\mathrm{avgpool}_{4\times4}(x)))))))

    Args:
        in_channels: C.  num_classes: outputs.  dropout: probability. Default: 0.7.

    Shape:
        - Input: (N, C, H, W).  - Output: (N, num_classes).

    Backward:
        The layers' backward in reverse order.

    Examples:
        >>> aux = InceptionAux(512, 10)
        >>> y = aux(np.ones((2, 512, 14, 14), np.float32))
        >>> y.shape, aux.backward(np.ones_like(y)).shape
        ((2, 10), (2, 512, 14, 14))
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.avgpool = AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.flatten = Flatten(1)
        self.fc1 = Linear(2048, 1024)
        self.relu = ReLU()
        self.dropout = Dropout(p=dropout)
        self.fc2 = Linear(1024, num_classes)

    def forward(self, x: Any) -> Any:
        x = self.flatten(self.conv(self.avgpool(x)))
        return self.fc2(self.dropout(self.relu(self.fc1(x))))

    def backward(self, dout: Any) -> Any:
        d = self.fc1.backward(self.relu.backward(self.dropout.backward(self.fc2.backward(dout))))
        return self.avgpool.backward(self.conv.backward(self.flatten.backward(d)))


class TransformInput(Module):
    r"""torchvision's ``transform_input``: turn an image normalized with the ImageNet mean and std into one
    normalized to [-1, 1] (what the original GoogLeNet weights expect).

    .. math:: y_{n,c} = x_{n,c}\, \frac{\sigma_c}{0.5} + \frac{\mu_c - 0.5}{0.5}, \qquad
        \mu = (0.485, 0.456, 0.406),\ \sigma = (0.229, 0.224, 0.225)

    Shape:
        - Input: (N, 3, H, W).  - Output: (N, 3, H, W).

    Backward:
        dx_{n,c} = dy_{n,c} * sigma_c / 0.5.

    Examples:
        >>> t = TransformInput()
        >>> y = t(np.zeros((1, 3, 1, 1)))
        >>> y.ravel(), t.backward(np.ones_like(y)).ravel()
        (array([-0.03 , -0.088, -0.188]), array([0.458, 0.448, 0.45 ]))
    """

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def _factors(self, x: Any) -> tuple[Any, Any]:
        xp = get_array_module(x)
        scale = xp.asarray([s / 0.5 for s in self.std], dtype=x.dtype).reshape(1, 3, 1, 1)
        shift = xp.asarray([(m - 0.5) / 0.5 for m in self.mean], dtype=x.dtype).reshape(1, 3, 1, 1)
        return scale, shift

    def forward(self, x: Any) -> Any:
        check_array("GoogLeNet(transform_input=True)", x, ndim=4, channels=3)
        scale, shift = self._factors(x)
        self.save_for_backward(scale)
        return x * scale + shift

    def backward(self, dout: Any) -> Any:
        (scale,) = self.pop_saved()
        return dout * scale


class GoogLeNet(Module):
    """GoogLeNet with torchvision's layout and names.

    Args:
        num_classes: outputs of ``fc`` (and of the auxiliary heads). Default: 1000.
        aux_logits: build the auxiliary classifiers ``aux1`` and ``aux2``. Default: True (as torchvision).
        transform_input: rescale ImageNet-normalized input to [-1, 1] first (:class:`TransformInput`).
            Default: False.
        init_weights: torchvision's truncated-normal initialization; False keeps the layers' defaults.
            Default: True.
        dropout: before ``fc``. Default: 0.2.  dropout_aux: in the auxiliary heads. Default: 0.7.

    Shape:
        - Input: (N, 3, H, W), H and W at least 15 (the auxiliary heads need inputs that reach them).
        - Output: (N, num_classes); in training mode with ``aux_logits``, :class:`GoogLeNetOutputs` of three.

    Backward:
        ``backward(dlogits)``, or in training mode with ``aux_logits`` ``backward((dlogits, daux2, daux1))``: the
        main path in reverse; at ``inception4d``'s output the gradient from ``aux2`` is added, at
        ``inception4a``'s the one from ``aux1`` (a fork's gradients add). ``None`` for an auxiliary gradient
        means that head's output was not used (it then gets no gradient).

    Examples:
        >>> net = GoogLeNet(num_classes=10, aux_logits=True)
        >>> out = net(np.zeros((2, 3, 64, 64), np.float32))
        >>> type(out).__name__, [o.shape for o in out]
        ('GoogLeNetOutputs', [(2, 10), (2, 10), (2, 10)])
        >>> net.backward(GoogLeNetOutputs(*[np.ones_like(o) for o in out])).shape
        (2, 3, 64, 64)
        >>> net.eval()(np.zeros((2, 3, 64, 64), np.float32)).shape  # eval: the logits only
        (2, 10)
    """

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool = True,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("GoogLeNet", "num_classes", num_classes)
        for name, flag in (
            ("aux_logits", aux_logits),
            ("transform_input", transform_input),
            ("init_weights", init_weights),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"GoogLeNet: {name} must be a bool, got {flag!r}")
        self.aux_logits = aux_logits
        self.transform_input = TransformInput() if transform_input else None
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux) if aux_logits else None
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.flatten = Flatten(1)
        self.dropout = Dropout(p=dropout)
        self.fc = Linear(1024, num_classes)
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's init: convs and linear layers ``trunc_normal_(0, 0.01, a=-2, b=2)``, BN weight 1 and
        bias 0; the biases of the linear layers keep PyTorch's default."""
        for m in self.modules():
            if isinstance(m, (Conv2d, Linear)):
                init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, BatchNorm2d):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, aux_logits={self.aux_logits}"

    def _stem(self) -> list[Module]:
        """The layers up to ``inception4a``'s input."""
        return [self.conv1, self.maxpool1, self.conv2, self.conv3, self.maxpool2, self.inception3a,
                self.inception3b, self.maxpool3]  # fmt: skip

    def _head(self) -> list[Module]:
        """The layers after ``inception4d``."""
        return [self.inception4e, self.maxpool4, self.inception5a, self.inception5b, self.avgpool, self.flatten,
                self.dropout, self.fc]  # fmt: skip

    def _with_aux(self) -> bool:
        return self.training and self.aux_logits

    def forward(self, x: Any) -> Any:
        if self.transform_input is not None:
            x = self.transform_input(x)
        for layer in self._stem():
            x = layer(x)
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self._with_aux() else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self._with_aux() else None
        for layer in self._head():
            x = layer(x)
        self.save_for_backward(self._with_aux())
        return GoogLeNetOutputs(x, aux2, aux1) if self._with_aux() else x

    def backward(self, dout: Any) -> Any:
        (with_aux,) = self.pop_saved()
        if with_aux:
            if not (isinstance(dout, tuple) and len(dout) == 3):
                raise TypeError(
                    "GoogLeNet.backward: the training-mode forward returned GoogLeNetOutputs(logits, aux_logits2, "
                    f"aux_logits1), so expected a tuple of 3 gradients in that order, got {type(dout).__name__}"
                )
            d, daux2, daux1 = dout
        elif isinstance(dout, tuple):
            raise TypeError(
                "GoogLeNet.backward: the forward returned only the logits (eval mode or aux_logits=False), so "
                f"expected one gradient array, got a tuple of {len(dout)}"
            )
        else:
            d = dout
        for layer in reversed(self._head()):
            d = layer.backward(d)
        if with_aux and daux2 is not None:
            d = d + self.aux2.backward(daux2)  # inception4d's output fed the head and aux2
        d = self.inception4b.backward(self.inception4c.backward(self.inception4d.backward(d)))
        if with_aux and daux1 is not None:
            d = d + self.aux1.backward(daux1)
        d = self.inception4a.backward(d)
        for layer in reversed(self._stem()):
            d = layer.backward(d)
        return d if self.transform_input is None else self.transform_input.backward(d)

    def receptive_field_branches(self) -> list[list[Module]]:
        """The main path, for :func:`minidl.summary` (the auxiliary heads end in linear layers)."""
        main = [self.inception4a, self.inception4b, self.inception4c, self.inception4d]
        return [[*self._stem(), *main, *self._head()]]


def googlenet(num_classes: int = 1000, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet: 6,624,904 parameters with 1000 classes without the auxiliary heads (13,004,888 with them), 1.50
    GMAC at 224x224 (torchvision's ``googlenet``).

    Args:
        num_classes: outputs of ``fc``. Default: 1000.
        **kwargs: passed to :class:`GoogLeNet` (``aux_logits``, ``transform_input``, ``init_weights``, ...).

    Examples:
        >>> sum(p.size for p in googlenet(aux_logits=False).parameters())
        6624904
    """
    return GoogLeNet(num_classes, **kwargs)
