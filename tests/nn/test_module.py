"""Module and Parameter: registration, traversal, modes, gradients, state_dict, casting, errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import minidl
from minidl import gradcheck, nn
from minidl.nn import functional as F
from tests.helpers import arr, host


class Affine(nn.Module):
    """y = x * weight + bias, elementwise over the last dimension (a minimal layer for the tests)."""

    def __init__(self, features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(arr(np.ones(features), dtype=np.float32))
        self.bias = nn.Parameter(arr(np.zeros(features), dtype=np.float32)) if bias else None
        self.register_buffer("calls", arr(np.zeros((), np.int64)))

    def forward(self, x):
        self.calls += 1
        self.save_for_backward(x)
        out = x * self.weight.data
        return out + self.bias.data if self.bias is not None else out

    def backward(self, dout):
        (x,) = self.pop_saved()
        self.weight.accumulate_grad((dout * x).reshape(-1, x.shape[-1]).sum(0))
        if self.bias is not None:
            self.bias.accumulate_grad(dout.reshape(-1, x.shape[-1]).sum(0))
        return dout * self.weight.data


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = Affine(3)
        self.body = nn.Sequential(Affine(3), nn.Identity(), Affine(3, bias=False))

    def forward(self, x):
        return self.body(self.first(x))

    def backward(self, dout):
        return self.first.backward(self.body.backward(dout))


def test_parameters_buffers_and_children_are_registered_in_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "first.weight",
        "first.bias",
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
    ]
    assert [n for n, _ in net.named_buffers()] == ["first.calls", "body.0.calls", "body.2.calls"]
    assert [n for n, _ in net.named_children()] == ["first", "body"]
    assert [n for n, _ in net.named_modules()] == ["", "first", "body", "body.0", "body.1", "body.2"]
    assert len(list(net.parameters())) == 5


def test_state_dict_keys_follow_pytorch_order_and_include_buffers():
    keys = list(Net().state_dict())
    assert keys == [
        "first.weight",
        "first.bias",
        "first.calls",
        "body.0.weight",
        "body.0.bias",
        "body.0.calls",
        "body.2.weight",
        "body.2.calls",
    ]


def test_non_persistent_buffers_are_not_saved():
    m = Affine(2)
    m.register_buffer("scratch", np.zeros(2), persistent=False)
    assert "scratch" not in m.state_dict() and "scratch" in dict(m.named_buffers())


def test_shared_parameter_is_listed_once():
    a, b = Affine(2), Affine(2)
    b.weight = a.weight
    assert len(list(nn.Sequential(a, b).parameters())) == 3


def test_state_dict_round_trip_restores_outputs():
    minidl.manual_seed(0)
    src, dst = Net(), Net()
    for p in src.parameters():
        p.data[...] = arr(np.random.default_rng(1).normal(size=p.shape))
    dst.load_state_dict({k: v.copy() for k, v in src.state_dict().items()})
    x = arr(np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32))
    np.testing.assert_array_equal(minidl.to_numpy(src(x)), minidl.to_numpy(dst(x)))


def test_load_state_dict_copies_in_place_and_keeps_dtype():
    m = Affine(3)
    weight = m.weight.data
    m.load_state_dict({"weight": np.full(3, 2.0), "bias": np.ones(3), "calls": np.array(5)})
    assert m.weight.data is weight and weight.dtype == np.float32 and weight.tolist() == [2.0, 2.0, 2.0]
    assert int(m.calls) == 5


def test_load_state_dict_strict_errors_name_the_keys():
    m = Affine(3)
    with pytest.raises(RuntimeError, match=r"missing key\(s\): bias, calls") as info:
        m.load_state_dict({"weight": np.ones(3), "extra": np.ones(1)})
    assert "unexpected key(s): extra" in str(info.value)


def test_load_state_dict_shape_mismatch_is_an_error_and_changes_nothing():
    m = Affine(3)
    with pytest.raises(
        RuntimeError, match=r"size mismatch for weight: the file has shape \(4,\), the model expects \(3,\)"
    ):
        m.load_state_dict({"weight": np.ones(4), "bias": np.full(3, 9.0), "calls": np.array(1)})
    assert m.bias.data.tolist() == [0.0, 0.0, 0.0]


def test_load_state_dict_casts_real_values_as_pytorch_copy_does_and_refuses_complex_ones():
    """float64 into a float32 model is rounded to float32 (PyTorch's load_state_dict copies with a cast too); int and
    bool values are cast; a complex value is refused whole, before anything is copied (a cast would drop .imag)."""
    m = Affine(3)
    third = np.full(3, 1 / 3)  # float64
    m.load_state_dict({"weight": third, "bias": np.array([True, False, True]), "calls": np.array(7, np.int32)})
    assert m.weight.data.dtype == np.float32 and m.weight.data.tolist() == np.float32(third).tolist()
    assert m.bias.data.tolist() == [1.0, 0.0, 1.0] and int(m.calls) == 7
    with pytest.raises(RuntimeError, match=r"dtype mismatch for bias: the file has dtype complex64, the model expects"):
        m.load_state_dict({"weight": np.zeros(3), "bias": np.full(3, 1 + 2j, np.complex64), "calls": np.array(0)})
    assert m.weight.data.tolist() == np.float32(third).tolist() and int(m.calls) == 7
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(3, 1)
    lin.load_state_dict({"weight": torch.full((1, 3), 1 / 3, dtype=torch.float64), "bias": torch.zeros(1)})
    assert lin.weight.dtype == torch.float32 and lin.weight[0, 0].item() == float(np.float32(1 / 3))


def test_load_state_dict_non_strict_reports_what_it_skipped():
    m = Affine(3)
    result = m.load_state_dict({"weight": np.full(3, 3.0), "junk": np.ones(2)}, strict=False)
    assert result.missing_keys == ["bias", "calls"] and result.unexpected_keys == ["junk"]
    assert m.weight.data.tolist() == [3.0, 3.0, 3.0]


def test_train_eval_propagate_to_every_submodule():
    net = Net()
    assert net.training
    assert net.eval() is net
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError, match="expects a bool"):
        net.train("no")


def test_gradients_accumulate_until_zero_grad():
    m = Affine(2)
    x = arr(np.array([[1.0, 2.0]], np.float32))
    for _ in range(2):
        m(x)
        m.backward(arr(np.ones((1, 2), np.float32)))
    assert minidl.to_numpy(m.weight.grad).tolist() == [2.0, 4.0]
    m.zero_grad()
    assert m.weight.grad is None
    m(x)
    m.backward(arr(np.ones((1, 2), np.float32)))
    m.zero_grad(set_to_none=False)
    assert minidl.to_numpy(m.weight.grad).tolist() == [0.0, 0.0]


def test_frozen_parameters_get_no_gradient():
    net = Net()
    net.first.requires_grad_(False)
    x = arr(np.ones((2, 3), np.float32))
    net(x)
    net.backward(arr(np.ones((2, 3), np.float32)))
    assert net.first.weight.grad is None and net.first.bias.grad is None
    assert net.body[0].weight.grad is not None


def test_backward_without_forward_is_a_clear_error():
    m = Affine(2)
    with pytest.raises(RuntimeError, match=r"Affine.backward\(\) was called without a matching forward\(\)"):
        m.backward(np.ones((1, 2), np.float32))


def test_backward_twice_is_an_error_because_the_cache_is_freed():
    m = Affine(2)
    m(arr(np.ones((1, 2), np.float32)))
    m.backward(arr(np.ones((1, 2), np.float32)))
    with pytest.raises(RuntimeError, match="once per forward"):
        m.backward(arr(np.ones((1, 2), np.float32)))


def test_no_grad_keeps_no_cache():
    m = Affine(2)
    with minidl.no_grad():
        assert not minidl.is_grad_enabled()
        m(arr(np.ones((1, 2), np.float32)))
    assert minidl.is_grad_enabled()
    assert not m._saved
    with pytest.raises(RuntimeError, match="no_grad"):
        m.backward(arr(np.ones((1, 2), np.float32)))


def test_to_float64_casts_parameters_gradients_and_float_buffers_only():
    m = Affine(2)
    m(arr(np.ones((1, 2), np.float32)))
    m.backward(arr(np.ones((1, 2), np.float32)))
    m.double()
    assert m.weight.dtype == np.float64 and m.weight.grad.dtype == np.float64
    assert m.calls.dtype == np.int64
    m.float()
    assert m.bias.dtype == np.float32


def test_to_rejects_non_float_dtypes_and_unknown_names():
    m = Affine(2)
    with pytest.raises(TypeError, match="floating dtype"):
        m.to(np.int32)
    with pytest.raises(TypeError, match="backend name or a float dtype"):
        m.to("tpu")


def test_to_backend_name_keeps_arrays_usable():
    m = Affine(2).to("numpy")
    assert isinstance(m.weight.data, np.ndarray)


def test_assigning_wrong_types_to_registered_names_fails():
    m = Affine(2)
    with pytest.raises(TypeError, match="cannot assign ndarray as parameter 'weight'"):
        m.weight = np.ones(2)
    m.bias = None  # allowed, like PyTorch
    assert "bias" not in m.state_dict()


def test_setattr_before_init_is_explained():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1))

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\)"):
        Forgot()


def test_parameter_validation_and_repr():
    with pytest.raises(TypeError, match="Parameter expects an array"):
        nn.Parameter([1, 2])
    p = nn.Parameter(np.zeros((2, 3), np.float32))
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float32, requires_grad=True)"
    with pytest.raises(
        ValueError, match=r"accumulate_grad: expected a gradient of the parameter.s shape \(2, 3\), got shape \(3,\)"
    ):
        p.accumulate_grad(np.ones(3, np.float32))


def test_repr_nests_children():
    text = repr(Net())
    assert text.startswith("Net(\n  (first): Affine()\n  (body): Sequential(\n    (0): Affine()")


def test_sequential_indexing_slicing_and_ordered_dict():
    a, b, c = Affine(1), nn.Identity(), Affine(1)
    seq = nn.Sequential(OrderedDict([("a", a), ("b", b), ("c", c)]))
    assert seq[0] is a and seq[-1] is c and len(seq) == 3
    assert list(seq[1:]) == [b, c]
    assert [n for n, _ in seq.named_parameters()] == ["a.weight", "a.bias", "c.weight", "c.bias"]
    with pytest.raises(IndexError, match="index 3 is out of range for 3 modules"):
        seq[3]
    with pytest.raises(TypeError, match="argument 0 is a int, not a Module"):
        nn.Sequential(1)


def test_module_list_registers_its_modules():
    blocks = nn.ModuleList([Affine(2), Affine(2)])
    blocks.append(Affine(2))
    assert len(blocks) == 3 and len(list(blocks.parameters())) == 6
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        blocks(np.ones(2))


def test_integer_parameters_cannot_require_gradients():
    with pytest.raises(TypeError, match="only floating-point arrays can require gradients, got dtype int64"):
        nn.Parameter(np.array([1, 2]))
    assert nn.Parameter(np.array([1, 2]), requires_grad=False).dtype == np.int64


def test_backward_rejects_integer_and_mismatched_dtype_gradients():
    layer = nn.Linear(3, 2)
    x = arr(np.ones((4, 3), np.float32))
    layer(x)
    with pytest.raises(TypeError, match=r"linear_backward: expected a floating-point gradient, got dtype int64"):
        layer.backward(arr(np.ones((4, 2), np.int64)))
    layer(x)
    with pytest.raises(TypeError, match=r"the gradient has dtype float64 but the forward computed in float32"):
        layer.backward(arr(np.ones((4, 2), np.float64)))


# ---------------------------------------------------------------------------------------------- a module used twice
class TorchvisionBasicBlock(nn.Module):
    """torchvision's BasicBlock as written there: one ``relu`` module applied twice in each forward."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)

    def backward(self, dout):
        dz = self.relu.backward(dout)  # the second call's mask first: last in, first out
        d = self.conv2.backward(self.bn2.backward(dz))
        d = self.conv1.backward(self.bn1.backward(self.relu.backward(d)))
        return d + dz


def test_a_module_called_twice_in_one_pass_keeps_one_cache_per_call():
    from minidl.models.resnet import BasicBlock

    minidl.manual_seed(0)
    ours = BasicBlock(3, 3).double()  # one module per call: relu1, add, relu2
    theirs = TorchvisionBasicBlock(3).double()
    theirs.load_state_dict(ours.state_dict())
    x = arr(np.random.default_rng(0).standard_normal((2, 3, 5, 5)))
    np.testing.assert_allclose(host(theirs(x)), host(ours(x)), rtol=1e-12)
    dout = arr(np.random.default_rng(1).standard_normal((2, 3, 5, 5)))
    np.testing.assert_allclose(host(theirs.backward(dout)), host(ours.backward(dout)), rtol=1e-10, atol=1e-12)
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(host(their_params[name].grad), host(p.grad), rtol=1e-10, atol=1e-12)
    assert not theirs.relu._saved
    with pytest.raises(RuntimeError, match=r"ReLU.backward\(\) was called without a matching forward"):
        theirs.relu.backward(dout)


def test_a_module_reused_across_two_outermost_calls_says_why_backward_fails():
    relu = nn.ReLU()
    x = arr(np.array([-1.0, 2.0]))
    relu(relu(x))  # works inside one model(x); here, two separate passes: the second drops the first's values
    np.testing.assert_array_equal(host(relu.backward(arr(np.ones(2)))), [0.0, 1.0])
    with pytest.raises(
        RuntimeError,
        match=r"^ReLU.backward\(\) has nothing left to take back: .* dropped the values "
        r"of 1 earlier call\(s\)\. A pass is one outermost module call",
    ):
        relu.backward(arr(np.ones(2)))
    twice = nn.Sequential(relu, relu)  # the same reuse inside one pass works
    twice(x)
    assert len(relu._saved) == 2
    twice.backward(arr(np.ones(2)))
    assert not relu._saved


def test_saved_values_of_an_unfinished_pass_never_pile_up():
    minidl.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu)
    x = arr(np.ones((2, 3), np.float32))
    for _ in range(5):  # forward passes without backward (evaluating in train mode, say)
        model(x)
    assert len(relu._saved) == 2, "only the last pass's two calls"
    for _ in range(3):  # a layer's forward called directly keeps one entry, as a single-use module
        relu.forward(x)
    assert len(relu._saved) == 1
    with minidl.no_grad():
        model(x)
    assert len(relu._saved) == 1, "nothing saved without gradients"


def test_errors_of_a_pair_name_the_module_that_called_it():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 4, kernel_size=\(3, 3\)\): expected 3 channels"):
        conv(arr(np.zeros((1, 2, 5, 5), np.float32)))
    with pytest.raises(ValueError, match=r"^conv2d_forward: expected 3 channels"):  # the pair itself: its name
        F.conv2d_forward(arr(np.zeros((1, 2, 5, 5), np.float32)), conv.weight.data)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with pytest.raises(TypeError, match=r"^Linear\(in_features=4, out_features=3\): expected a floating-point input"):
        model(arr(np.zeros((2, 4), np.int64)))


def test_save_for_backward_is_the_public_cache_of_a_custom_layer():
    class Cube(nn.Module):
        def forward(self, x):
            self.save_for_backward(x, x * x)
            return x * x * x

        def backward(self, dout):
            x, x2 = self.pop_saved()
            return 3 * x2 * dout

    cube = Cube()
    report = gradcheck.check_module(cube, arr(np.random.default_rng(0).standard_normal((3, 2))))
    assert report.passed, report


# ---------------------------------------------------------------------------------------------- containers
def test_sequential_item_assignment_deletion_insert_and_extend():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    model[3] = nn.Linear(8, 2)  # the lectures' model.classifier[1] = nn.Linear(1280, 2)
    assert model(arr(np.ones((5, 4), np.float32))).shape == (5, 2)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    del model[2]
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # renumbered, as in PyTorch
    model.insert(1, nn.BatchNorm1d(8))
    model.extend([nn.ReLU(), nn.Linear(2, 2)])
    assert [type(m).__name__ for m in model] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "ReLU", "Linear"]
    model.insert(-1, nn.Identity())
    assert type(model[-2]).__name__ == "Identity"
    del model[1:3]
    assert [type(m).__name__ for m in model] == ["Linear", "Linear", "ReLU", "Identity", "Linear"]
    with pytest.raises(TypeError, match="Sequential: the module for index 0 is a str, not a Module"):
        model[0] = "relu"
    with pytest.raises(IndexError, match="index 9 is out of range for 5 modules"):
        model[9] = nn.ReLU()
    with pytest.raises(IndexError, match="Sequential.insert: index 7 is out of range"):
        model.insert(7, nn.ReLU())
    assert type(model[np.int64(1)]).__name__ == "Linear"  # NumPy integers index too
    with pytest.raises(TypeError, match=r"^Sequential.insert: an index must be an integer, got float"):
        model.insert(1.0, nn.ReLU())
    with pytest.raises(TypeError, match=r"an index must be an integer, got True"):
        model[True]


def test_module_dict_registers_its_modules_by_name():
    heads = nn.ModuleDict({"cls": nn.Linear(8, 10)})
    heads["box"] = nn.Linear(8, 4)
    heads.update([("extra", nn.ReLU())])
    assert list(heads) == ["cls", "box", "extra"] and "box" in heads and len(heads) == 3
    assert sorted(heads.state_dict()) == ["box.bias", "box.weight", "cls.bias", "cls.weight"]
    del heads["extra"]
    assert list(heads.keys()) == ["cls", "box"]
    with pytest.raises(KeyError, match="ModuleDict has no module 'nope'"):
        heads["nope"]
    with pytest.raises(TypeError, match="keys must be strings"):
        heads[1] = nn.ReLU()
    with pytest.raises(NotImplementedError, match="ModuleDict has no forward"):
        heads(arr(np.ones(3)))


def test_set_grad_enabled_as_a_plain_call_and_as_a_context_manager():
    assert minidl.is_grad_enabled()
    try:
        minidl.set_grad_enabled(False)
        assert not minidl.is_grad_enabled()
        relu = nn.ReLU()
        relu(arr(np.ones(2)))
        assert not relu._saved
    finally:
        minidl.set_grad_enabled(True)
    with minidl.set_grad_enabled(False):
        assert not minidl.is_grad_enabled()
    assert minidl.is_grad_enabled()
    with pytest.raises(TypeError, match="set_grad_enabled\\(mode\\) expects a bool"):
        minidl.set_grad_enabled("no")


def test_a_containers_backward_names_the_child_whose_pair_refused_the_gradient():
    class Crop(nn.Module):  # a custom layer whose backward returns the wrong shape
        def forward(self, x):
            return x

        def backward(self, dout):
            return dout[..., :-1]

    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), Crop(), nn.Conv2d(8, 8, 1))
    y = model(arr(np.ones((2, 3, 7, 8), np.float32)))
    with pytest.raises(ValueError, match=r"^ReLU.backward: the gradient has shape \(2, 8, 5, 5\) but the forward"):
        model.backward(arr(np.ones(y.shape, np.float32)))
