r"""The blocks of the residual networks of ``resnet.py``: :class:`BasicBlock` (ResNet-18/34, the CIFAR ResNets) and
:class:`Bottleneck` (ResNet-50/101/152, ResNeXt), and the convolutions they are built from.

Backward of a block. With :math:`z = F(x) + s(x)` and :math:`y = \mathrm{relu}(z)`:

.. math::

    dz = dy \odot [z > 0], \qquad
    dx = \underbrace{F.\mathrm{backward}(dz)}_{\text{the body, layers in reverse}}
       + \underbrace{s.\mathrm{backward}(dz)}_{dz \text{ itself for the identity}}

The sum hands :math:`dz` unchanged to both terms, and because :math:`x` fed both branches (a fork), their
gradients add. The body's first convolution takes that sum in its own backward (``conv1.backward(d, dx_add=...)``,
the pair ``conv2d_backward``'s ``dx_add``), which on the Numba backend adds the shortcut's gradient as it writes dx
instead of in a pass of its own. The identity path carries :math:`dz` to :math:`x` untouched, which is why very
deep ResNets still train: the gradient always has a path that no weight matrix shrinks.

Fused (:func:`minidl.nn.fuse`), a block runs its end, the last convolution, BatchNorm, sum and ReLU, in fewer passes
over memory: in inference the convolution with the BatchNorm folded in adds the shortcut and applies the ReLU in its
output pass (``conv2d_add_relu``); in training the BatchNorm adds it and applies the ReLU in its normalize pass
(``batch_norm_add_relu``). In training a :class:`BasicBlock` also hands its first BatchNorm and ReLU to its second
convolution, which applies them as it reads their input (``bn1.defer(out)``: their output is never written). Each is
one visible branch of ``forward``, and ``backward`` takes the branch its forward took.
"""

from __future__ import annotations

from typing import Any

from minidl.nn._checks import check_int
from minidl.nn.activation import ReLU
from minidl.nn.conv import Conv2d
from minidl.nn.dispatch import F
from minidl.nn.fusion import joins_residual, reads_batch_norm_relu
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d

__all__ = ["BasicBlock", "Bottleneck", "conv1x1", "conv3x3"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows, whose beta is the bias)."""
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    """1x1 convolution without bias: mixes channels, and with ``stride`` 2 also halves the resolution."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _check_shortcut(where: str, shape: tuple[int, ...], identity: Any) -> None:
    shape = tuple(shape)
    if shape != tuple(identity.shape):
        raise ValueError(
            f"{where}: the residual branch gives shape {shape} but the shortcut gives "
            f"{tuple(identity.shape)}; pass downsample=Sequential(conv1x1(inplanes, planes * expansion, stride), "
            "BatchNorm2d(planes * expansion)) when the stride or the channels change"
        )


class _ResidualBlock(Module):
    """What BasicBlock and Bottleneck share besides their layers: the arguments, the repr, the shortcut's backward
    and the receptive-field branches."""

    inplanes: int
    planes: int
    stride: int
    downsample: Module | None

    def _init_common(self, inplanes: int, planes: int, stride: int, downsample: Module | None) -> None:
        where = type(self).__name__
        self.inplanes = check_int(where, "inplanes", inplanes)
        self.planes = check_int(where, "planes", planes)
        self.stride = check_int(where, "stride", stride)
        if downsample is not None and not isinstance(downsample, Module):
            raise TypeError(f"{where}: downsample must be a Module or None, got {type(downsample).__name__}")

    def extra_repr(self) -> str:
        return f"{self.inplanes}, {self.planes}, stride={self.stride}"

    def _shortcut(self, x: Any, shape: tuple[int, ...]) -> Any:
        """The shortcut of x (the identity, or ``downsample``), checked against the ``shape`` of the body's output."""
        identity = x if self.downsample is None else self.downsample(x)
        _check_shortcut(f"{type(self).__name__}({self.extra_repr()})", shape, identity)
        return identity

    def _joined(self, conv: Module, out: Any, x: Any) -> Any:
        """The block's end when ``nn.fuse`` joined it (``joins_residual(conv)``): the fused ``conv`` adds the shortcut
        and applies the ReLU in its output pass, ``conv(out, shortcut)``. The shortcut is checked against the shape
        the body's output will have (``conv``, 3 x 3 padding 1 or 1 x 1, keeps out's height and width)."""
        return conv(out, self._shortcut(x, (out.shape[0], conv.out_channels, *out.shape[2:])))

    def _branches_backward(self, count: int) -> list[bool]:
        """The ``count`` flags of the branches the forward this backward undoes took (as ``forward`` saved them: the
        shortcut handed to the last BatchNorm; in :class:`BasicBlock` also bn1 deferred to conv2), False for each
        it did not save (a subclass's own ``forward``, which takes none of them)."""
        saved = list(self.pop_saved()) if self._saved else []
        return [bool(flag) for flag in saved[:count]] + [False] * (count - len(saved))

    def _shortcut_backward(self, dz: Any) -> Any:
        return dz if self.downsample is None else self.downsample.backward(dz)

    @staticmethod
    def _input_gradient(conv: Module, dout: Any, shortcut: Any) -> Any:
        """dx of the block: the body's gradient of x, ``conv.backward(dout)`` (``conv`` its first layer), plus the
        shortcut's (x fed both: their gradients add). A :class:`~minidl.nn.Conv2d` running its class's ``backward``
        takes the sum in it, ``conv.backward(dout, dx_add=shortcut)`` (on the Numba backend F(4x4, 3x3) adds it as
        it writes dx, one pass over memory fewer); with hooks on it (they must see its own gradient) or a replaced
        ``backward``, the sum pair after it."""
        if isinstance(conv, Conv2d) and type(conv).backward is Conv2d.backward and "backward" not in vars(conv):
            return conv.backward(dout, dx_add=shortcut)
        return F.add_forward(conv.backward(dout), shortcut)[0]

    def receptive_field_branches(self) -> list[list[Module]]:
        """Main path and shortcut, for :func:`minidl.summary`'s receptive field (``[]`` is the identity)."""
        main = [m for name, m in self.named_children() if name not in ("downsample", "add")]
        return [main, [] if self.downsample is None else [self.downsample]]


class BasicBlock(_ResidualBlock):
    r"""Two 3x3 convolutions with a residual connection (ResNet-18/34, CIFAR ResNets).

    .. math:: y = \mathrm{relu}(\mathrm{bn_2}(\mathrm{conv_2}(\mathrm{relu}(\mathrm{bn_1}(\mathrm{conv_1}(x)))))
              + \mathrm{downsample}(x))

    The state_dict keys are torchvision's (``conv1.weight``, ``bn1.*``, ``conv2.weight``, ``bn2.*``,
    ``downsample.0.weight``, ``downsample.1.*``). Where torchvision applies one ``relu`` module twice, the block
    holds ``relu1`` and ``relu2``, and the sum is a module, ``add`` (as in torchvision's quantizable ResNet), so that
    :func:`minidl.nn.fuse` can merge each with its neighbours (``fusion_groups``); none has parameters, so the keys
    are the same. (A module called twice in one forward also works: see :meth:`~minidl.nn.Module.save_for_backward`.)
    Fused, the block hands the shortcut to ``conv2`` in inference, which runs the folded ``bn2``, ``add`` and
    ``relu2`` in its output pass, and to ``bn2`` in training, which runs ``add`` and ``relu2`` in its normalize pass
    (:func:`minidl.nn.fusion.joins_residual`); in training it also hands ``bn1`` and ``relu1`` to ``conv2``, which
    computes their output as it reads their input, ``conv2(bn1.defer(out))``
    (:func:`minidl.nn.fusion.reads_batch_norm_relu`, on a backend that reads it so: Numba's F(4x4, 3x3)). Each is a
    branch in ``forward``, and ``backward`` takes the one its forward took.

    Args:
        inplanes: C, the input channels.
        planes: O, the output channels (``expansion`` is 1).
        stride: stride of ``conv1`` (2 halves H and W). Default: 1.
        downsample: the shortcut when the shape changes (1x1 conv + BN); None for the identity. Default: None.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, O, OH, OW), OH = floor((H - 1) / stride) + 1, likewise OW.

    Backward:
        dz = add.backward(relu2.backward(dy)) (the gradient of the sum, for each term; joined in training, bn2's
        backward gives it with its own); the body's layers in reverse order on dz (with bn1 deferred to conv2,
        conv2's backward gives the gradient of bn1's output, and relu1, which never ran, is skipped: bn1's backward
        applies the ReLU's mask); dx = dbody +
        (downsample.backward(dz) if downsample else dz), the sum taken by ``conv1.backward(..., dx_add=...)``
        (:meth:`~minidl.nn.Conv2d.backward`; see ``_input_gradient``).

    Examples:
        >>> import numpy as np
        >>> from minidl.nn import Sequential
        >>> block = BasicBlock(16, 32, stride=2, downsample=Sequential(conv1x1(16, 32, 2), BatchNorm2d(32)))
        >>> y = block(np.ones((2, 16, 8, 8), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 32, 4, 4), (2, 16, 8, 8))
    """

    expansion = 1
    fusion_groups = (("conv1", "bn1", "relu1"), ("conv2", "bn2", "add", "relu2"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Module | None = None) -> None:
        super().__init__()
        self._init_common(inplanes, planes, stride, downsample)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = downsample
        self.add = Add()
        self.relu2 = ReLU()

    def forward(self, x: Any) -> Any:
        out = self.conv1(x)
        deferred = reads_batch_norm_relu(self.conv2, self.bn1, self.relu1, out)
        if deferred:  # nn.fuse, in training: conv2 applies bn1 and relu1 as it reads out (their output never written)
            out = self.conv2(self.bn1.defer(out))
        else:
            out = self.relu1(self.bn1(out))
            if joins_residual(self.conv2):  # nn.fuse, in inference: relu(bn2(conv2(out)) + shortcut), one folded pass
                return self._joined(self.conv2, out, x)
            out = self.conv2(out)
        joined = joins_residual(self.bn2)  # nn.fuse, in training: relu(bn2(out) + shortcut) as one pass
        if joined:
            out = self.bn2(out, self._shortcut(x, out.shape))
        else:
            out = self.relu2(self.add(self.bn2(out), self._shortcut(x, out.shape)))
        self.save_for_backward(joined, deferred)  # the branches backward takes
        return out

    def backward(self, dout: Any) -> Any:
        joined, deferred = self._branches_backward(2)
        if joined:  # bn2 ran the sum and relu2 too: the gradients of its two inputs
            d, dz = self.bn2.backward(dout)
        else:
            dz = self.add.backward(self.relu2.backward(dout))  # the sum hands its gradient to both terms
            d = self.bn2.backward(dz)
        d = self.conv2.backward(d)  # (deferred: the gradient of bn1's output, which relu1 never saw)
        d = self.bn1.backward(d if deferred else self.relu1.backward(d))
        return self._input_gradient(self.conv1, d, self._shortcut_backward(dz))  # x fed both branches: they add


class Bottleneck(_ResidualBlock):
    r"""1x1 (reduce) - 3x3 (stride, groups) - 1x1 (expand x4) with a residual connection (ResNet-50/101/152).

    .. math:: y = \mathrm{relu}(\mathrm{bn_3}(\mathrm{conv_3}(\mathrm{relu}(\mathrm{bn_2}(\mathrm{conv_2}(
              \mathrm{relu}(\mathrm{bn_1}(\mathrm{conv_1}(x)))))))) + \mathrm{downsample}(x))

    The stride sits on the 3x3 convolution (torchvision's ResNet v1.5). The inner width is
    ``int(planes * width_per_group / 64) * groups`` (``planes`` for plain ResNets; ResNeXt and wide ResNets
    change it). Where torchvision applies one ``relu`` three times, the block holds ``relu1``, ``relu2`` and
    ``relu3``, and the sum is the module ``add`` (as in torchvision's quantizable ResNet); none has parameters, so
    the state_dict keys are torchvision's. Fused, its end joins as :class:`BasicBlock`'s does, with ``conv3``,
    ``bn3``, ``add`` and ``relu3``.

    Args:
        inplanes: C, the input channels.
        planes: the bottleneck's base width; the output has O = 4 * planes channels.
        stride: stride of ``conv2``. Default: 1.
        downsample: the shortcut when the shape changes; None for the identity. Default: None.
        groups: groups of the 3x3 convolution (ResNeXt). Default: 1.
        width_per_group: channels per group at planes = 64. Default: 64.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, 4 * planes, OH, OW), OH = floor((H - 1) / stride) + 1, likewise OW.

    Backward:
        dz = add.backward(relu3.backward(dy)) (joined in training, bn3's backward gives it with its own);  dbody =
        the body's layers in reverse order on dz; dx = dbody + (downsample.backward(dz) if downsample else dz), the
        sum taken by ``conv1.backward(..., dx_add=...)`` as in :class:`BasicBlock`.

    Examples:
        >>> import numpy as np
        >>> block = Bottleneck(64, 16)  # 64 -> 16 -> 16 -> 64 channels: the identity shortcut fits
        >>> y = block(np.ones((2, 64, 5, 5), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((2, 64, 5, 5), (2, 64, 5, 5))
    """

    expansion = 4
    fusion_groups = (("conv1", "bn1", "relu1"), ("conv2", "bn2", "relu2"), ("conv3", "bn3", "add", "relu3"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Module | None = None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        self._init_common(inplanes, planes, stride, downsample)
        groups = check_int("Bottleneck", "groups", groups)
        width_per_group = check_int("Bottleneck", "width_per_group", width_per_group)
        width = int(planes * (width_per_group / 64.0)) * groups
        if width < 1:
            raise ValueError(f"Bottleneck: planes={planes} with width_per_group={width_per_group} gives no channels")
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = BatchNorm2d(width)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = BatchNorm2d(width)
        self.relu2 = ReLU()
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.add = Add()
        self.relu3 = ReLU()

    def forward(self, x: Any) -> Any:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        if joins_residual(self.conv3):  # nn.fuse, in inference: relu(bn3(conv3(out)) + shortcut) as one folded pass
            return self._joined(self.conv3, out, x)
        out = self.conv3(out)
        joined = joins_residual(self.bn3)  # nn.fuse, in training: relu(bn3(out) + shortcut) as one pass
        if joined:
            out = self.bn3(out, self._shortcut(x, out.shape))
        else:
            out = self.relu3(self.add(self.bn3(out), self._shortcut(x, out.shape)))
        self.save_for_backward(joined)
        return out

    def backward(self, dout: Any) -> Any:
        (joined,) = self._branches_backward(1)
        if joined:  # bn3 ran the sum and relu3 too
            d, dz = self.bn3.backward(dout)
        else:
            dz = self.add.backward(self.relu3.backward(dout))
            d = self.bn3.backward(dz)
        d = self.conv2.backward(self.bn2.backward(self.relu2.backward(self.conv3.backward(d))))
        d = self.bn1.backward(self.relu1.backward(d))
        return self._input_gradient(self.conv1, d, self._shortcut_backward(dz))  # x fed both branches: they add
