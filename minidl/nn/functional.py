"""Every functional pair of minidl.nn in one namespace: ``from minidl.nn import functional as F``.

Each op is a pair ``F.<op>_forward(x, ...) -> (out, cache)`` and ``F.<op>_backward(dout, cache) -> grads`` (one
array for ops without parameters, else a tuple aligned with the forward's array arguments). The math of each op is
documented where it is defined, in the file of its layer family.

**This namespace is what the layers run.** Every Module in :mod:`minidl.nn` computes through these pairs, looked up
here when it is called (:mod:`minidl.nn.dispatch`), so replacing one replaces what the layers compute::

    from minidl.nn import functional as F
    F.relu_forward = my_relu_forward    # every nn.ReLU (and every pair built on relu) now calls yours

On the NumPy backend every pair runs the code you read. A fast backend replaces only the pairs marked
``@kernel``, and only while both halves here are still the originals, and so are those of the pairs they call
(:func:`minidl.nn.dispatch.is_reference`); a fused model's folded convolution follows the same rule.

Examples:
    >>> import numpy as np
    >>> from minidl.nn import functional as F
    >>> out, cache = F.relu_forward(np.array([-1.0, 2.0]))
    >>> F.relu_backward(np.array([5.0, 5.0]), cache)
    array([0., 5.])
"""

from __future__ import annotations

import sys

from minidl.nn.activation import (
    elu_backward,
    elu_forward,
    gelu_backward,
    gelu_forward,
    hardswish_backward,
    hardswish_forward,
    hardtanh_backward,
    hardtanh_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax_backward,
    log_softmax_forward,
    mish_backward,
    mish_forward,
    relu6_backward,
    relu6_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    silu_backward,
    silu_forward,
    softmax_backward,
    softmax_forward,
    softplus_backward,
    softplus_forward,
    tanh_backward,
    tanh_forward,
)
from minidl.nn.activation_gated import hardsigmoid_backward, hardsigmoid_forward
from minidl.nn.activation_param import prelu_backward, prelu_forward
from minidl.nn.attention_pairs import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from minidl.nn.conv import conv2d_backward, conv2d_forward
from minidl.nn.conv_fused import (
    conv2d_add_relu_backward,
    conv2d_add_relu_forward,
    conv2d_relu6_backward,
    conv2d_relu6_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
)
from minidl.nn.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from minidl.nn.dispatch import register_functional
from minidl.nn.dropout import (
    dropout2d_backward,
    dropout2d_forward,
    dropout_backward,
    dropout_forward,
)
from minidl.nn.embedding import embedding_backward, embedding_forward
from minidl.nn.flatten import flatten_backward, flatten_forward
from minidl.nn.layer_scale import layer_scale_backward, layer_scale_forward
from minidl.nn.linear import (
    linear_backward,
    linear_forward,
)
from minidl.nn.loss import (
    binary_cross_entropy_backward,
    binary_cross_entropy_forward,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_forward,
    distillation_loss_backward,
    distillation_loss_forward,
    kl_div_backward,
    kl_div_forward,
    l1_loss_backward,
    l1_loss_forward,
    mse_loss_backward,
    mse_loss_forward,
    nll_loss_backward,
    nll_loss_forward,
    smooth_l1_loss_backward,
    smooth_l1_loss_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from minidl.nn.maxout import maxout_backward, maxout_forward
from minidl.nn.merge import (
    add_backward,
    add_forward,
    add_relu_backward,
    add_relu_forward,
    batch_norm_add_relu_backward,
    batch_norm_add_relu_forward,
    channel_mul_backward,
    channel_mul_forward,
)
from minidl.nn.normalization import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_relu6_backward,
    batch_norm_relu6_forward,
    batch_norm_relu_backward,
    batch_norm_relu_forward,
)
from minidl.nn.normalization_group import (
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from minidl.nn.normalization_instance import instance_norm_backward, instance_norm_forward
from minidl.nn.normalization_local import local_response_norm_backward, local_response_norm_forward
from minidl.nn.padding import pad2d_backward, pad2d_forward
from minidl.nn.permute import permute_backward, permute_forward
from minidl.nn.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_output_size,
)
from minidl.nn.pooling_adaptive import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    adaptive_max_pool2d_backward,
    adaptive_max_pool2d_forward,
)
from minidl.nn.scale import mul_backward, mul_forward
from minidl.nn.shuffle import channel_shuffle_backward, channel_shuffle_forward
from minidl.nn.stochastic_depth import drop_path_backward, drop_path_forward
from minidl.nn.tokens import (
    class_token_backward,
    class_token_forward,
    position_embedding_backward,
    position_embedding_forward,
    select_backward,
    select_forward,
)
from minidl.nn.upsample import interpolate_backward, interpolate_forward

__all__ = [
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool2d_forward",
    "add_backward",
    "add_forward",
    "add_relu_backward",
    "add_relu_forward",
    "batch_norm_add_relu_backward",
    "batch_norm_add_relu_forward",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_relu6_backward",
    "batch_norm_relu6_forward",
    "batch_norm_relu_backward",
    "batch_norm_relu_forward",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_forward",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward",
    "channel_mul_backward",
    "channel_mul_forward",
    "channel_shuffle_backward",
    "channel_shuffle_forward",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_add_relu_backward",
    "conv2d_add_relu_forward",
    "conv2d_relu6_backward",
    "conv2d_relu6_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "distillation_loss_backward",
    "distillation_loss_forward",
    "dropout2d_backward",
    "dropout2d_forward",
    "dropout_backward",
    "dropout_forward",
    "elu_backward",
    "elu_forward",
    "embedding_backward",
    "embedding_forward",
    "flatten_backward",
    "flatten_forward",
    "permute_backward",
    "permute_forward",
    "gelu_backward",
    "gelu_forward",
    "group_norm_backward",
    "group_norm_forward",
    "hardswish_backward",
    "hardswish_forward",
    "hardtanh_backward",
    "hardtanh_forward",
    "instance_norm_backward",
    "instance_norm_forward",
    "kl_div_backward",
    "kl_div_forward",
    "l1_loss_backward",
    "l1_loss_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "local_response_norm_backward",
    "local_response_norm_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mish_backward",
    "mish_forward",
    "mse_loss_backward",
    "mse_loss_forward",
    "mul_backward",
    "mul_forward",
    "nll_loss_backward",
    "nll_loss_forward",
    "pad2d_backward",
    "pad2d_forward",
    "pool_output_size",
    "relu6_backward",
    "relu6_forward",
    "relu_backward",
    "relu_forward",
    "scaled_dot_product_attention_backward",
    "scaled_dot_product_attention_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "silu_backward",
    "silu_forward",
    "smooth_l1_loss_backward",
    "smooth_l1_loss_forward",
    "softmax_backward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "softmax_forward",
    "softplus_backward",
    "softplus_forward",
    "tanh_backward",
    "tanh_forward",
    "class_token_backward",
    "class_token_forward",
    "position_embedding_backward",
    "position_embedding_forward",
    "select_backward",
    "select_forward",
    # issue 14 (small and up-sampling layers)
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "drop_path_backward",
    "drop_path_forward",
    "hardsigmoid_backward",
    "hardsigmoid_forward",
    "interpolate_backward",
    "interpolate_forward",
    "layer_scale_backward",
    "layer_scale_forward",
    "maxout_backward",
    "maxout_forward",
    "prelu_backward",
    "prelu_forward",
]

register_functional(sys.modules[__name__])  # the layers read their pairs from this module, at call time
