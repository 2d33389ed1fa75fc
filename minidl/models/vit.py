r"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", ICLR 2021), with torchvision's structure and state_dict keys, and a small ViT for CIFAR-10.

A ViT reads an image as a sequence. A convolution with kernel and stride P (``conv_proj``) cuts the image into
L = (H / P)(W / P) patches and embeds each into D numbers; a learned class token goes in front and a learned position
embedding is added, and the sequence (N, 1 + L, D) runs through pre-norm Transformer encoder blocks,

.. math::

    x' = x + \mathrm{Dropout}(\mathrm{MHA}(\mathrm{LN}_1(x))), \qquad
    y = x' + \mathrm{MLP}(\mathrm{LN}_2(x')), \qquad \mathrm{MLP}(u) = W_2\,\mathrm{GELU}(W_1 u + b_1) + b_2 .

The classifier reads the class token's output after a final LayerNorm. Attention lets every patch look at every
other from the first layer on (a CNN's receptive field grows layer by layer); the price is that a ViT has no built-in
notion of locality and needs more data or more augmentation than a CNN of the same size.

**Backward of a block.** Each residual sum passes its gradient to both terms, and a value that fed two paths gets
the sum of their gradients: with :math:`g = \partial L / \partial y`,

.. math::

    \frac{\partial L}{\partial x'} = g + \mathrm{LN}_2^\top \mathrm{MLP}^\top g, \qquad
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial x'}
        + \mathrm{LN}_1^\top\big(dq + dk + dv\big),

where :math:`dq, dk, dv` are what the attention's backward returns for :math:`\partial L / \partial x'` (self-attention
uses :math:`\mathrm{LN}_1(x)` as query, key and value, so their gradients add). The sequence glue (class token,
position embedding, picking the class token's output) is in :mod:`minidl.nn.tokens`.

Initialization as torchvision: ``conv_proj`` truncated normal with std :math:`\sqrt{1 / \text{fan\_in}}`, the position
embedding N(0, 0.02²), the class token and the head zero, the MLP's Linear layers Xavier-uniform with biases
N(0, 1e-6²), the attention as :class:`~minidl.nn.MultiheadAttention` initializes itself.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from minidl.nn import init
from minidl.nn._checks import check_float, check_int, check_layout
from minidl.nn.activation_gated import GELU
from minidl.nn.attention import MultiheadAttention
from minidl.nn.containers import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dispatch import F
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Linear
from minidl.nn.merge import Add
from minidl.nn.module import Module
from minidl.nn.normalization_group import LayerNorm
from minidl.nn.parameter import Parameter
from minidl.nn.permute import Permute

__all__ = [
    "Encoder",
    "EncoderBlock",
    "MLPBlock",
    "VisionTransformer",
    "vit_b_16",
    "vit_b_32",
    "vit_cifar",
    "vit_l_16",
    "vit_l_32",
]


class MLPBlock(Sequential):
    """The Transformer's MLP: Linear(D, M) -> GELU -> Dropout -> Linear(M, D) -> Dropout (torchvision's keys
    ``0`` and ``3``).

    Examples:
        >>> block = MLPBlock(8, 32, 0.0)
        >>> block(np.zeros((2, 5, 8), np.float32)).shape, [k for k in block.state_dict()]
        ((2, 5, 8), ['0.weight', '0.bias', '3.weight', '3.bias'])
    """

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(Linear(in_dim, mlp_dim), GELU(), Dropout(dropout), Linear(mlp_dim, in_dim), Dropout(dropout))
        for m in (self[0], self[3]):
            init.xavier_uniform_(m.weight)
            init.normal_(m.bias, std=1e-6)


class EncoderBlock(Module):
    """One pre-norm Transformer encoder block (see the module docstring for its math and backward).

    Args:
        num_heads: attention heads (D must be divisible by it).
        hidden_dim: D.
        mlp_dim: the MLP's hidden width M.
        dropout: after the attention and inside the MLP.
        attention_dropout: on the attention weights.

    Shape:
        - Input: (N, L, D).  - Output: (N, L, D).

    Examples:
        >>> block = EncoderBlock(2, 8, 16, 0.0, 0.0)
        >>> y = block(np.ones((3, 5, 8), np.float32))
        >>> y.shape, block.backward(np.ones_like(y)).shape
        ((3, 5, 8), (3, 5, 8))
    """

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = Dropout(dropout)
        self.add_1 = Add()
        self.ln_2 = LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)
        self.add_2 = Add()

    def forward(self, input: Any) -> Any:
        check_layout("EncoderBlock", input, ndim=3)
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.add_1(self.dropout(x), input)
        return self.add_2(x, self.mlp(self.ln_2(x)))

    def backward(self, dout: Any) -> Any:
        dz = self.add_2.backward(dout)  # y = x' + mlp(ln_2(x')): both terms get dz
        dx = dz + self.ln_2.backward(self.mlp.backward(dz))  # x' fed the sum and the MLP branch
        dsum = self.add_1.backward(dx)  # x' = dropout(attention) + input
        dq, dk, dv = self.self_attention.backward(self.dropout.backward(dsum))
        return dsum + self.ln_1.backward(dq + dk + dv)  # ln_1(input) was query, key and value


class Encoder(Module):
    """Position embedding, dropout, the encoder blocks (``layers.encoder_layer_{i}``) and a final LayerNorm.

    Shape:
        - Input: (N, L, D) with L = ``seq_length``.  - Output: (N, L, D).

    Examples:
        >>> enc = Encoder(seq_length=5, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16)
        >>> enc(np.zeros((3, 5, 8), np.float32)).shape, enc.pos_embedding.shape
        ((3, 5, 8), (1, 5, 8))
    """

    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.pos_embedding = Parameter(np.zeros((1, seq_length, hidden_dim), np.float32))
        init.normal_(self.pos_embedding, std=0.02)  # from BERT
        self.dropout = Dropout(dropout)
        blocks = OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout))
            for i in range(num_layers)
        )
        self.layers = Sequential(blocks)
        self.ln = LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, input: Any) -> Any:
        x, cache = F.position_embedding_forward(input, self.pos_embedding.data)
        self.save_for_backward(cache)
        return self.ln(self.layers(self.dropout(x)))

    def backward(self, dout: Any) -> Any:
        (cache,) = self.pop_saved()
        d = self.dropout.backward(self.layers.backward(self.ln.backward(dout)))
        dx, dpos = F.position_embedding_backward(d, cache)
        self.pos_embedding.accumulate_grad(dpos)
        return dx


class VisionTransformer(Module):
    """A Vision Transformer with torchvision's module names (``conv_proj``, ``class_token``, ``encoder``,
    ``heads.head``), so a torchvision ``state_dict`` loads by name.

    Args:
        image_size: H = W of the input (divisible by ``patch_size``).
        patch_size: P.
        num_layers: encoder blocks.
        num_heads: attention heads.
        hidden_dim: D.
        mlp_dim: the MLP's hidden width.
        dropout: dropout after the attention, in the MLP and on the embedded sequence. Default: 0.
        attention_dropout: on the attention weights. Default: 0.
        num_classes: classes. Default: 1000.
        in_channels: image channels. Default: 3.

    Shape:
        - Input: (N, in_channels, image_size, image_size).  - Output: (N, num_classes).

    Examples:
        >>> vit = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
        ...                         num_classes=3)
        >>> y = vit(np.ones((2, 3, 8, 8), np.float32))
        >>> y.shape, vit.backward(np.ones_like(y)).shape
        ((2, 3), (2, 3, 8, 8))
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        where = "VisionTransformer"
        image_size = check_int(where, "image_size", image_size)
        patch_size = check_int(where, "patch_size", patch_size)
        if image_size % patch_size:
            raise ValueError(f"{where}: image_size {image_size} is not divisible by patch_size {patch_size}")
        check_float(where, "dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.patches = Flatten(start_dim=2)  # (N, D, H/P, W/P) -> (N, D, L)
        self.to_sequence = Permute([0, 2, 1])  # -> (N, L, D)
        self.class_token = Parameter(np.zeros((1, 1, hidden_dim), np.float32))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout)
        self.seq_length = seq_length
        self.heads = Sequential(OrderedDict(head=Linear(hidden_dim, num_classes)))
        fan_in = in_channels * patch_size * patch_size
        init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        init.zeros_(self.conv_proj.bias)
        init.zeros_(self.heads.head.weight)
        init.zeros_(self.heads.head.bias)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, patch_size={self.patch_size}, hidden_dim={self.hidden_dim}"

    def forward(self, x: Any) -> Any:
        check_layout(self._where(), x, ndim=4)
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"{self._where()}: expected images of {self.image_size}x{self.image_size} pixels (its position "
                f"embedding has {self.seq_length - 1} patches), got input shape {tuple(x.shape)}"
            )
        x = self.to_sequence(self.patches(self.conv_proj(x)))
        x, token_cache = F.class_token_forward(x, self.class_token.data)
        x = self.encoder(x)
        x, select_cache = F.select_forward(x, 1, 0)  # the class token's output
        self.save_for_backward(token_cache, select_cache)
        return self.heads(x)

    def backward(self, dout: Any) -> Any:
        token_cache, select_cache = self.pop_saved()
        d = F.select_backward(self.heads.backward(dout), select_cache)
        d, dtoken = F.class_token_backward(self.encoder.backward(d), token_cache)
        self.class_token.accumulate_grad(dtoken)
        return self.conv_proj.backward(self.patches.backward(self.to_sequence.backward(d)))


def _vit(patch_size: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int, **kwargs: Any) -> Any:
    kwargs.setdefault("image_size", 224)
    return VisionTransformer(
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        **kwargs,
    )


def vit_b_16(num_classes: int = 1000, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16: patch 16, 12 layers, 12 heads, D = 768, MLP 3072; 86,567,656 parameters with 1000 classes at 224.

    Examples:
        >>> from minidl import models
        >>> models.vit_b_16  # doctest: +ELLIPSIS
        <function vit_b_16 at ...>
    """
    return _vit(16, 12, 12, 768, 3072, num_classes=num_classes, **kwargs)


def vit_b_32(num_classes: int = 1000, **kwargs: Any) -> VisionTransformer:
    """ViT-B/32: patch 32, 12 layers, 12 heads, D = 768, MLP 3072 (88,224,232 parameters with 1000 classes)."""
    return _vit(32, 12, 12, 768, 3072, num_classes=num_classes, **kwargs)


def vit_l_16(num_classes: int = 1000, **kwargs: Any) -> VisionTransformer:
    """ViT-L/16: patch 16, 24 layers, 16 heads, D = 1024, MLP 4096 (304,326,632 parameters with 1000 classes)."""
    return _vit(16, 24, 16, 1024, 4096, num_classes=num_classes, **kwargs)


def vit_l_32(num_classes: int = 1000, **kwargs: Any) -> VisionTransformer:
    """ViT-L/32: patch 32, 24 layers, 16 heads, D = 1024, MLP 4096 (306,535,400 parameters with 1000 classes)."""
    return _vit(32, 24, 16, 1024, 4096, num_classes=num_classes, **kwargs)


def vit_cifar(
    num_classes: int = 10,
    patch_size: int = 4,
    num_layers: int = 6,
    num_heads: int = 4,
    hidden_dim: int = 128,
    mlp_dim: int = 256,
    dropout: float = 0.0,
    **kwargs: Any,
) -> VisionTransformer:
    """A small ViT for 32x32 images: patch 4 (64 patches + the class token), 6 layers, 4 heads, D = 128, MLP 256
    (about 0.8 M parameters). Trains on a laptop CPU; see ``docs/results.md`` for what it reaches.

    Examples:
        >>> from minidl import models
        >>> net = models.vit_cifar(num_layers=1)
        >>> net(np.zeros((2, 3, 32, 32), np.float32)).shape
        (2, 10)
    """
    kwargs.setdefault("image_size", 32)
    return VisionTransformer(
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        dropout=dropout,
        num_classes=num_classes,
        **kwargs,
    )
