"""The PyTorch CPU twin of ``minidl.models.airbench94`` and of the training step of ``examples/speedrun_cifar10.py``.

The network is airbench94's ``make_net`` with the module names of minidl's :class:`~minidl.models.AirbenchNet`
(``whiten``, ``block1.conv1``, ``block1.norm1``, ..., ``linear``), so ``load_state_dict`` carries weights from one
to the other by name; ``tests/models/test_airbench.py`` checks that both compute the same function in float64. It
runs in float32 on the CPU (airbench runs float16 on a GPU).

:func:`make_optimizer` and :func:`lr_factor` are the recipe's: Nesterov SGD on two param groups (the BatchNorm
biases with a 64x learning rate), label smoothing 0.2, the summed loss, the triangular schedule, Lookahead every 5
steps. The data order and augmentation come from the caller (``bench_airbench.py`` draws them with NumPy and feeds
the same batches to both frameworks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

HYP = {"lr": 11.5, "momentum": 0.85, "weight_decay": 0.0153, "bias_scaler": 64.0, "label_smoothing": 0.2}


class ConvGroup(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, momentum: float = 0.4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(channels_out, eps=1e-12, momentum=momentum)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels_out, eps=1e-12, momentum=momentum)
        self.act = nn.GELU()
        for norm in (self.norm1, self.norm2):
            norm.weight.requires_grad = False
        for conv in (self.conv1, self.conv2):
            nn.init.dirac_(conv.weight.data[: conv.in_channels])

    def forward(self, x: Any) -> Any:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchTorch(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)) -> None:
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        nn.init.zeros_(self.whiten.bias)
        self.whiten.weight.requires_grad = False
        self.act = nn.GELU()
        self.block1 = ConvGroup(24, widths[0])
        self.block2 = ConvGroup(widths[0], widths[1])
        self.block3 = ConvGroup(widths[1], widths[2])
        self.pool = nn.MaxPool2d(3)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = 1 / 9

    def forward(self, x: Any) -> Any:
        x = self.act(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        return self.linear(self.flatten(self.pool(x))) * self.scale


def make_optimizer(model: nn.Module, batch_size: int) -> torch.optim.SGD:
    """airbench's decoupled hyperparameters turned into torch.optim.SGD's (see the example for the derivation)."""
    kilostep_scale = 1024 * (1 + 1 / (1 - HYP["momentum"]))
    lr = HYP["lr"] / kilostep_scale
    wd = HYP["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * HYP["bias_scaler"]
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    norm_biases = [p for k, p in named if "norm" in k]
    others = [p for k, p in named if "norm" not in k]
    groups = [
        {"params": norm_biases, "lr": lr_biases, "weight_decay": wd / lr_biases},
        {"params": others, "lr": lr, "weight_decay": wd / lr},
    ]
    return torch.optim.SGD(groups, momentum=HYP["momentum"], nesterov=True)


def lr_factor(step: int, total_steps: int) -> float:
    """The triangular schedule: 0.2 -> 1 over the first 23 % of the steps, then down to 0.07."""
    warmup = int(total_steps * 0.23)
    if step < warmup:
        frac = step / warmup
        return 0.2 * (1 - frac) + 1.0 * frac
    frac = (step - warmup) / (total_steps - warmup)
    return 1.0 * (1 - frac) + 0.07 * frac
