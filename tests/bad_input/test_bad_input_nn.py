"""Bad input to the layers, one case per line: each raises a clear error (never a silent acceptance), and the message
names the layer or function, what was expected and what was received."""

# One case per line, so a new case is one line and a failing id points at it: the long lines are deliberate.
# ruff: noqa: E501

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.nn.dispatch import F
from tests.helpers import TEST_BACKEND, arr, host

X4 = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
X2 = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)


def float64_gradient_into(layer, x=X4):
    """Run ``layer`` forward in float32, then its backward with a float64 gradient (which must be refused)."""
    y = layer(arr(x))
    return layer.backward(arr(np.ones(y.shape, np.float64)))


def preset_grad(shape, dtype=np.float32):
    """A Linear(3, 4) whose weight.grad was set by hand before backward."""
    layer = nn.Linear(3, 4)
    layer.weight.grad = arr(np.zeros(shape, dtype))
    layer(arr(X2))
    return layer.backward(arr(np.ones((2, 4), np.float32)))


def linear_backward_with_cache(cache):
    return F.linear_backward(arr(np.ones((2, 4), np.float32)), cache)


# fmt: off
CASES = [
    # Concat's dim is not taken modulo ndim (torch.cat raises IndexError too)
    pytest.param(lambda: nn.Concat(nn.Identity(), nn.Identity(), dim=7)(arr(X4)), IndexError, r"^Concat\(dim=7\): dim 7 is out of range .*4-D outputs \(expected a dim in \[-4, 3\], got 7", id="concat-dim-7-on-4d"),
    pytest.param(lambda: nn.Concat(nn.Identity(), dim=-5)(arr(X4)), IndexError, r"^Concat\(dim=-5\): .*expected a dim in \[-4, 3\], got -5", id="concat-dim-minus-5-on-4d"),
    # requires_grad takes a bool (bool("no") is True)
    pytest.param(lambda: nn.Linear(2, 2).requires_grad_("no"), TypeError, r"^Linear\.requires_grad_\(requires_grad\) expects a bool, got 'no' \(str\)", id="requires_grad_-str"),
    pytest.param(lambda: nn.Parameter(np.zeros(2, np.float32), requires_grad="no"), TypeError, r"^Parameter: requires_grad must be a bool, got 'no' \(str\)", id="parameter-requires_grad-str"),
    # BCELoss targets are probabilities
    pytest.param(lambda: nn.BCELoss()(arr(np.full((2, 3), 0.5, np.float32)), arr(np.full((2, 3), 2.0, np.float32))), ValueError, r"^BCELoss: the target must hold probabilities in \[0, 1\] \(got min 2, max 2\)", id="bce-target-2"),
    pytest.param(lambda: nn.BCELoss()(arr(np.full((2, 3), 0.5, np.float32)), arr(np.array([[0, 1, -1]] * 2, np.float32))), ValueError, r"^BCELoss: the target must hold probabilities in \[0, 1\] \(got min -1, max 1\)", id="bce-target-minus-1"),
    # a float64 gradient into a float32 layer's backward (it would turn every gradient below into float64)
    pytest.param(lambda: float64_gradient_into(nn.ReLU()), TypeError, r"^relu_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-relu"),
    pytest.param(lambda: float64_gradient_into(nn.MaxPool2d(2)), TypeError, r"^max_pool2d_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-maxpool2d"),
    pytest.param(lambda: float64_gradient_into(nn.BatchNorm2d(4)), TypeError, r"^batch_norm_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-batchnorm2d"),
    pytest.param(lambda: float64_gradient_into(nn.LayerNorm([6, 6])), TypeError, r"^layer_norm_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-layernorm"),
    pytest.param(lambda: float64_gradient_into(nn.Conv2d(4, 2, 3)), TypeError, r"^conv2d_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-conv2d"),
    pytest.param(lambda: float64_gradient_into(nn.Linear(3, 2), X2), TypeError, r"^linear_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-linear"),
    pytest.param(lambda: float64_gradient_into(nn.Identity()), TypeError, r"^Identity\.backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-identity"),
    pytest.param(lambda: float64_gradient_into(nn.Residual(nn.Identity())), TypeError, r"^Residual\.backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-residual"),
    pytest.param(lambda: float64_gradient_into(nn.Concat(nn.Identity(), nn.Identity())), TypeError, r"^Concat\.backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-concat"),
    pytest.param(lambda: float64_gradient_into(nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU())), TypeError, r"^ReLU\.backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-sequential"),
    pytest.param(lambda: float64_gradient_into(nn.ConvTranspose2d(4, 2, 3, stride=2)), TypeError, r"^conv_transpose2d_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-convtranspose2d"),
    pytest.param(lambda: float64_gradient_into(nn.Upsample(scale_factor=1.5, mode="bilinear")), TypeError, r"^interpolate_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-upsample"),
    pytest.param(lambda: float64_gradient_into(nn.PReLU(4)), TypeError, r"^prelu_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-prelu"),
    pytest.param(lambda: float64_gradient_into(nn.Maxout(2)), TypeError, r"^maxout_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-maxout"),
    pytest.param(lambda: float64_gradient_into(nn.LayerScale(6)), TypeError, r"^layer_scale_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-layerscale"),
    pytest.param(lambda: float64_gradient_into(nn.DropPath(0.5)), TypeError, r"^drop_path_backward: the gradient has dtype float64 but the forward computed in float32", id="float64-grad-droppath"),
    # a .grad set by hand to another shape or dtype (was numpy's broadcast error)
    pytest.param(lambda: preset_grad((3,)), ValueError, r"^Parameter\.accumulate_grad: the parameter's \.grad has shape \(3,\) and dtype float32, expected the parameter's shape \(4, 3\) and dtype float32", id="grad-preset-wrong-shape"),
    pytest.param(lambda: preset_grad((1, 3)), ValueError, r"^Parameter\.accumulate_grad: the parameter's \.grad has shape \(1, 3\) .*expected the parameter's shape \(4, 3\)", id="grad-preset-broadcastable-shape"),
    pytest.param(lambda: preset_grad((4, 3), np.float64), ValueError, r"^Parameter\.accumulate_grad: .*dtype float64, expected the parameter's shape \(4, 3\) and dtype float32", id="grad-preset-wrong-dtype"),
    pytest.param(lambda: nn.Parameter(np.zeros((2, 3), np.float32)).accumulate_grad(np.ones(3, np.float32)), ValueError, r"^Parameter\.accumulate_grad: expected a gradient of the parameter's shape \(2, 3\), got shape \(3,\)", id="accumulate-grad-wrong-shape"),
    # NumPy subclasses whose semantics differ are refused by name (np.memmap is accepted: see below)
    pytest.param(lambda: nn.Linear(3, 4)(np.matrix(X2)), TypeError, r"^Linear\(in_features=3, out_features=4\): expected the input to be a plain numpy\.ndarray, got a numpy\.matrix \(its \* is a matrix product", id="matrix-into-linear"),
    pytest.param(lambda: F.relu_forward(np.matrix(X2)), TypeError, r"^relu_forward: expected the input to be a plain numpy\.ndarray, got a numpy\.matrix", id="matrix-into-relu_forward"),
    pytest.param(lambda: nn.Conv2d(4, 2, 3)(np.ma.masked_array(X4)), TypeError, r"^Conv2d\(4, 2, .*expected the input to be a plain numpy\.ndarray, got a numpy\.ma\.MaskedArray \(its mask would be ignored\)", id="masked-array-into-conv2d"),
    # InstanceNorm2d: the count it reports is per instance; an empty batch cannot update running statistics
    pytest.param(lambda: nn.InstanceNorm2d(3)(arr(np.zeros((2, 3, 1, 1), np.float32))), ValueError, r"^InstanceNorm2d\(3\): expected more than 1 spatial element when training, got input shape \(2, 3, 1, 1\) \(1 spatial elements per instance\)", id="instancenorm-1x1"),
    pytest.param(lambda: nn.InstanceNorm2d(3, track_running_stats=True)(arr(np.zeros((0, 3, 8, 8), np.float32))), ValueError, r"^InstanceNorm2d\(3\): got an empty batch \(input shape \(0, 3, 8, 8\)\): it has no statistics", id="instancenorm-empty-batch-running-stats"),
    pytest.param(lambda: nn.BatchNorm2d(3)(arr(np.zeros((0, 3, 8, 8), np.float32))), ValueError, r"^BatchNorm2d\(3\): expected more than 1 value per channel when training, got input shape \(0, 3, 8, 8\) \(0 values per channel\)", id="batchnorm-empty-batch"),
    # linear_backward: shapes reported by name, not by the matmul gufunc
    pytest.param(lambda: linear_backward_with_cache((arr(np.ones((2, 5), np.float32)), arr(np.ones((4, 3), np.float32)), False)), ValueError, r"^linear_backward: the cache's x has shape \(2, 5\) but its weight has shape \(4, 3\); expected x's last dimension to be in_features=3", id="linear_backward-mismatched-cache"),
    pytest.param(lambda: linear_backward_with_cache("cache"), TypeError, r"^linear_backward: expected the cache linear_forward returned, \(x, weight, has_bias\), got 'cache'", id="linear_backward-not-a-cache"),
    pytest.param(lambda: F.linear_backward(arr(np.ones((2, 5), np.float32)), F.linear_forward(arr(X2), arr(np.ones((4, 3), np.float32)))[1]), ValueError, r"^linear_backward: the gradient has shape \(2, 5\) but the forward output had shape \(2, 4\)", id="linear_backward-wrong-dout"),
    # load_state_dict casts between real dtypes (as PyTorch's copy_), never from complex, strings or objects
    pytest.param(lambda: nn.Linear(2, 2).load_state_dict({"weight": np.ones((2, 2), np.complex128), "bias": np.zeros(2)}), RuntimeError, r"^error\(s\) loading state_dict into Linear:\n  dtype mismatch for weight: the file has dtype complex128, the model expects float32 \(load_state_dict casts bool, int and float values, never complex, string or object ones\)$", id="load_state_dict-complex"),
    pytest.param(lambda: nn.Linear(2, 2).load_state_dict({"weight": np.ones((2, 2)), "bias": np.array(["1", "2"])}), RuntimeError, r"^error\(s\) loading state_dict into Linear:\n  dtype mismatch for bias: the file has dtype <U1, the model expects float32 \(load_state_dict casts", id="load_state_dict-strings"),
    pytest.param(lambda: nn.Linear(2, 2).load_state_dict({"weight": [[1, 2], [3, None]], "bias": np.zeros(2)}), RuntimeError, r"^error\(s\) loading state_dict into Linear:\n  dtype mismatch for weight: the file has dtype object, the model expects float32", id="load_state_dict-object-list"),
    # summary needs a Module
    pytest.param(lambda: minidl.summary(lambda x: x, (3, 8, 8)), TypeError, r"^summary: expected a minidl\.nn\.Module, got function '<lambda>'", id="summary-lambda"),
    pytest.param(lambda: minidl.summary(nn.Linear(3, 2), (3,), batch_size=0), ValueError, r"^summary: batch_size must be a positive int, got 0", id="summary-batch-size-0"),
    # anomaly mode takes a bool
    pytest.param(lambda: minidl.set_detect_anomaly("yes"), TypeError, r"^set_detect_anomaly\(mode\) expects a bool, got 'yes' \(str\)", id="set_detect_anomaly-str"),
    # Embedding takes integer indices within the table; MultiheadAttention's masks have PyTorch's shapes
    pytest.param(lambda: nn.Embedding(5, 3)(arr(np.array([0.0, 1.0]))), TypeError, r"^Embedding\(5, 3\): expected an integer array of indices in \[0, 5\), got dtype float64", id="embedding-float-indices"),
    pytest.param(lambda: nn.Embedding(5, 3)(arr(np.array([[0, 7]]))), IndexError, r"^Embedding\(5, 3\): index 7 is out of range: expected indices in \[0, 5\) \(num_embeddings=5\), got values from 0 to 7", id="embedding-index-out-of-range"),
    pytest.param(lambda: nn.MultiheadAttention(3, 1)(arr(X2), arr(X2), arr(X2), key_padding_mask=arr(np.zeros(3, bool))), ValueError, r"^MultiheadAttention\(embed_dim=3, num_heads=1\): expected key_padding_mask of shape \(S,\) = \(2,\), got shape \(3,\)", id="mha-key-padding-mask-shape"),
    pytest.param(lambda: nn.MultiheadAttention(3, 1)(arr(X2), arr(X2), arr(X2), attn_mask=arr(np.zeros((2, 2), np.float64))), TypeError, r"^MultiheadAttention\(embed_dim=3, num_heads=1\): attn_mask must be bool \(True = not allowed\) or the input's dtype float32 \(added to the scores\), got dtype float64", id="mha-float64-mask-into-float32"),
]
# fmt: on


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_bad_input_is_refused_with_a_message_naming_the_layer_expected_and_received(call, error, match):
    if TEST_BACKEND == "cupy" and ("matrix" in match or "MaskedArray" in match):
        pytest.skip("NumPy subclasses are host arrays: on the CuPy backend they are refused as host data")
    with pytest.raises(error, match=match):
        call()


def test_a_memmap_input_computes_as_the_plain_array_it_views(tmp_path):
    if TEST_BACKEND == "cupy":
        pytest.skip("a memmap is host data")
    mm = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=X4.shape)
    mm[...] = X4
    net = nn.Sequential(nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    y_mm = net(mm)
    gx_mm = net.backward(np.ones(y_mm.shape, np.float32))
    y, gx = net(np.asarray(X4)), net.backward(np.ones(y_mm.shape, np.float32))
    np.testing.assert_array_equal(y_mm, y)
    np.testing.assert_array_equal(gx_mm, gx)


def test_an_empty_batch_passes_instance_norm_as_in_pytorch():
    layer = nn.InstanceNorm2d(3, affine=True)
    y = layer(arr(np.zeros((0, 3, 8, 8), np.float32)))
    assert y.shape == (0, 3, 8, 8)
    assert layer.backward(arr(np.zeros((0, 3, 8, 8), np.float32))).shape == (0, 3, 8, 8)
    np.testing.assert_array_equal(host(layer.weight.grad), np.zeros(3, np.float32))


def test_a_float64_gradient_is_refused_through_a_named_container():
    model = nn.Sequential(OrderedDict(body=nn.Sequential(nn.Linear(3, 3), nn.Tanh())))
    y = model(arr(X2))
    with pytest.raises(TypeError, match=r"^Tanh\.backward: the gradient has dtype float64 but .* in float32"):
        model.backward(arr(np.ones(y.shape, np.float64)))
