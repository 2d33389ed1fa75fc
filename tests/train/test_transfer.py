"""Transfer-learning helpers: freeze/unfreeze by prefix, replace_head, param groups at 1/10 lr, frozen BatchNorm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import gradcheck, nn, optim
from minidl.train import (
    count_parameters,
    find_last_linear,
    freeze,
    freeze_batchnorm,
    get_submodule,
    param_groups_with_lr,
    replace_head,
    trainable_parameters,
    unfreeze,
    unfreeze_batchnorm,
)
from tests.helpers import arr, assert_close, to_torch, torch_or_skip


class Net(nn.Module):
    """A backbone ``features`` and a head ``classifier`` (VGG-like names), plus a top-level ``fc``."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8))
        self.classifier = nn.Sequential(nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))

    def backward(self, dout):
        return self.features.backward(self.classifier.backward(dout))


FEATURES = 6 * 8 + 8 + 8 + 8 + 8 * 8 + 8  # Linear, BN affine, Linear


def test_freeze_unfreeze_counts():
    net = Net()
    total = FEATURES + 8 * 5 + 5
    assert count_parameters(net) == total
    freeze(net)
    assert count_parameters(net) == 0 and count_parameters(net, trainable_only=False) == total
    unfreeze(net, "classifier")
    assert count_parameters(net) == 45 and len(trainable_parameters(net)) == 2
    unfreeze(net, ["features.3"])
    assert count_parameters(net) == 45 + 72
    freeze(net, "features.3.bias")
    assert count_parameters(net) == 45 + 64
    unfreeze(net)
    freeze(net, exclude=("classifier", "features.1"))
    assert [n for n, p in net.named_parameters() if p.requires_grad] == [
        "features.1.weight",
        "features.1.bias",
        "classifier.2.weight",
        "classifier.2.bias",
    ]


def test_prefix_is_a_whole_name_component():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    freeze(model, "1")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["1.weight", "1.bias"]  # not 10.* or 11.*


@given(k=st.integers(0, 5), seed=st.integers(0, 100))
def test_frozen_parameters_get_no_gradient_and_do_not_move(k, seed):
    minidl.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(5)])
    freeze(model, [str(i) for i in range(k)])
    before = {n: minidl.to_numpy(p.data).copy() for n, p in model.named_parameters()}
    opt = optim.SGD(model.parameters(), lr=0.1)  # frozen parameters handed over anyway: skipped
    x = arr(np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32))
    out = model(x)
    model.backward(out)  # the gradient of 0.5 * ||out||^2
    opt.step()
    assert count_parameters(model) == 12 * (5 - k)
    for n, p in model.named_parameters():
        layer = int(n.split(".")[0])
        assert (p.grad is None) == (layer < k)
        assert np.array_equal(minidl.to_numpy(p.data), before[n]) == (layer < k), n


def test_replace_head():
    net = Net(num_classes=1000)
    freeze(net)
    keys = list(net.state_dict())
    old = replace_head(net, "classifier.2", 10)
    assert old.out_features == 1000
    head = net.classifier[2]
    assert (head.in_features, head.out_features) == (8, 10) and head.bias is not None
    assert list(net.state_dict()) == keys  # same names in the same order
    assert count_parameters(net) == 8 * 10 + 10  # the new head is trainable, the rest stays frozen
    assert net(arr(np.zeros((2, 6), np.float32))).shape == (2, 10)
    name, last = find_last_linear(net)
    assert name == "classifier.2" and last is head
    new = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    net.eval()
    assert replace_head(net, None, new) is head and net.classifier[2] is new and not new.training
    assert get_submodule(net, "classifier.2.2").out_features == 3


def test_replace_head_errors():
    net = Net()
    with pytest.raises(
        ValueError, match=r"classifier has no child '7' \(path 'classifier.7'\); children: \['0', '1', '2'\]"
    ):
        replace_head(net, "classifier.7", 3)
    with pytest.raises(TypeError, match="an int .* can only replace a Linear, but 'classifier.0' is a ReLU"):
        replace_head(net, "classifier.0", 3)
    with pytest.raises(TypeError, match="new_module must be a Module or an int, got str"):
        replace_head(net, "classifier.2", "linear")
    with pytest.raises(ValueError, match="has no Linear layer"):
        find_last_linear(nn.Sequential(nn.ReLU()))
    with pytest.raises(
        ValueError, match=r"no parameter is named 'layer4' .* top-level names: \['classifier', 'features'\]"
    ):
        freeze(net, "layer4")


def test_param_groups_with_lr_one_tenth_for_the_backbone():
    net = Net()
    groups = param_groups_with_lr(net, base_lr=0.01, head_prefixes=("classifier",))
    opt = optim.SGD(groups, lr=0.01, momentum=0.9)
    assert [g["name"] for g in opt.param_groups] == ["backbone", "head"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.01])
    assert [sum(p.size for p in g["params"]) for g in opt.param_groups] == [FEATURES, 45]
    freeze(net, "features.0")
    groups = param_groups_with_lr(net, 0.1, backbone_lr_factor=0.5, head_prefixes="classifier")
    assert sum(p.size for p in groups[0]["params"]) == FEATURES - 56 and groups[0]["lr"] == 0.05
    groups = param_groups_with_lr(net, 0.1, head_prefixes="classifier", trainable_only=False)
    assert sum(p.size for p in groups[0]["params"]) == FEATURES
    freeze(net, exclude="classifier")
    assert [g["name"] for g in param_groups_with_lr(net, 0.1, head_prefixes="classifier")] == ["head"]
    freeze(net)
    with pytest.raises(ValueError, match="the model has no trainable parameters"):
        param_groups_with_lr(net, 0.1, head_prefixes="classifier")
    with pytest.raises(ValueError, match="no parameter is named 'fc'"):
        param_groups_with_lr(net, 0.1)
    with pytest.raises(ValueError, match="base_lr must be a number >= 0"):
        param_groups_with_lr(net, -1.0, head_prefixes="classifier")


def test_freeze_batchnorm_stays_in_eval_mode():
    net = Net()
    bn = net.features[1]
    assert freeze_batchnorm(net) == ["features.1"]
    assert isinstance(bn, nn.BatchNorm1d) and type(bn).__name__ == "FrozenBatchNorm1d"
    net.train()
    net.features.train()
    bn.train()
    assert not bn.training and net.training and net.features[0].training
    assert not bn.weight.requires_grad and not bn.bias.requires_grad
    stats = {k: minidl.to_numpy(v).copy() for k, v in bn.state_dict().items()}
    x = arr(np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32) * 3 + 1)
    out = net(x)
    net.backward(arr(np.ones(out.shape, np.float32)))
    for k, v in bn.state_dict().items():  # running statistics untouched in "training"
        np.testing.assert_array_equal(minidl.to_numpy(v), stats[k])
    assert net.features[0].weight.grad is not None and bn.weight.grad is None  # gradient flows through
    assert list(net.state_dict()) == list(Net().state_dict())
    assert unfreeze_batchnorm(net) == ["features.1"]
    assert type(bn) is nn.BatchNorm1d and bn.training and bn.weight.requires_grad
    net.eval()
    assert not bn.training
    assert freeze_batchnorm(net, prefixes="classifier") == []


def test_backward_through_frozen_batchnorm_is_exact():
    """Gradient check, and parity with PyTorch's BatchNorm1d in eval mode, of Linear -> frozen BN -> Linear."""
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)).to(np.float64)
    rng = np.random.default_rng(1)
    bn = model[1]
    bn.running_mean[...] = rng.standard_normal(5)
    bn.running_var[...] = rng.uniform(0.5, 2.0, 5)
    bn.weight.data[...] = rng.standard_normal(5)
    freeze_batchnorm(model, freeze_affine=False)
    model.train()
    x = rng.standard_normal((6, 4))
    gradcheck.check_module(model, arr(x))
    torch = torch_or_skip()
    t = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3)).double()
    t.load_state_dict({k: torch.tensor(minidl.to_numpy(v)) for k, v in model.state_dict().items()})
    t.train()
    t[1].eval()  # what PyTorch users do by overriding train()
    xt = to_torch(x, requires_grad=True)
    dout = rng.standard_normal((6, 3))
    t(xt).backward(torch.tensor(dout))
    model.zero_grad()
    out = model(arr(x))
    dx = model.backward(arr(dout))
    assert_close(out, t(xt), what="output")
    assert_close(dx, xt.grad, what="dx")
    assert_close(model[0].weight.grad, t[0].weight.grad, what="d first weight")
    assert_close(model[1].weight.grad, t[1].weight.grad, what="d gamma")
