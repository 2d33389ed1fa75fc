# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Architectures from LeNet to ResNet, MobileNet, ConvNeXt and ViT: parameters, FLOPs, and training one
#
# Follows the architecture sections of the Georgia Tech deck (`002`: AlexNet, VGG, GoogLeNet, ResNet), of "Training
# CNNs" (`003`: VGG, ResNet) and of the UCLA deck (`000`: MobileNet, ViT, ConvNeXt). For a convolution with $C$
# input and $O$ output channels, a $KH \times KW$ kernel and an $OH \times OW$ output,
#
# $$
# \text{params} = O\,(C\,KH\,KW + 1), \quad \text{MACs} = O\,OH\,OW\,C\,KH\,KW, \quad
# \text{FLOPs} \approx 2\,\text{MACs}
# $$
#
# VGG stacks 3x3 convolutions (two of them see 5x5 with $2 \cdot 9 C^2$ weights instead of $25 C^2$); ResNet adds
# identity shortcuts, $y = F(x) + x$, so that depth stops hurting; MobileNetV2 replaces a 3x3 convolution
# ($9 C O$ weights) by a depthwise 3x3 ($9 C$) and a pointwise 1x1 ($C O$). ConvNeXt modernizes the ResNet block
# (a depthwise 7x7, LayerNorm, a 4x MLP, LayerScale); the Vision Transformer cuts the image into patches and runs
# attention over them, so every patch sees every other from the first block.
#
# Quick mode (the default, `MINIDL_NOTEBOOK_QUICK=1`) trains ResNet-20 for 2 epochs on 1,000 images of the
# CIFAR-10 sample embedded in minidl; `MINIDL_NOTEBOOK_QUICK=0` trains it for 30 epochs on the full CIFAR-10 (from
# `MINIDL_DATA_DIR` or `../shared/data`; the sample when absent) with crops, flips and a one-cycle schedule, and adds
# VGG-16 to the ImageNet-size table.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import minidl
from minidl import models, nn, optim
from minidl import transforms as T
from minidl.data import DataLoader, Subset
from minidl.data.datasets import CIFAR10, CIFAR10Sample
from minidl.train import fit

QUICK = os.environ.get("MINIDL_NOTEBOOK_QUICK", "1") != "0"
DATA_DIR = os.environ.get("MINIDL_DATA_DIR") or ("../shared/data" if Path("../shared/data").is_dir() else None)
EPOCHS, TRAIN_IMAGES = (2, 1000) if QUICK else (30, None)
minidl.manual_seed(0)

# %% [markdown]
# ## One summary: LeNet-5
#
# `minidl.summary(model, input_shape)` runs one forward pass and lists every layer's output shape, parameters and
# multiply-accumulates, with the receptive field of the output.

# %%
print(minidl.summary(models.lenet5(), (1, 32, 32)))

# %% [markdown]
# ## The CIFAR-size models (32x32 inputs, 10 classes)

# %%
cifar_models = {
    "LeNet-5 (3 channels)": models.lenet5(in_channels=3),
    "CIFAR CNN": models.cifar_cnn(),
    "VGG-11 (CIFAR)": models.vgg11(num_classes=10, cifar=True),
    "VGG-16-BN (CIFAR)": models.vgg16_bn(num_classes=10, cifar=True),
    "ResNet-20": models.resnet20(),
    "ResNet-56": models.resnet56(),
    "ResNet-18 (CIFAR)": models.resnet18(num_classes=10, cifar=True),
    "MobileNetV2 (CIFAR)": models.mobilenet_v2(num_classes=10, cifar=True),
    "DenseNet-BC-100": models.densenet_cifar(),
    "WRN-16-4": models.wide_resnet_cifar(),
    "ConvNeXt (CIFAR)": models.convnext_cifar(),
    "ViT (CIFAR, patch 4)": models.vit_cifar(),
}
rows = []
for name, model in cifar_models.items():
    s = minidl.summary(model, (3, 32, 32))
    layers = sum(1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.MultiheadAttention)))
    rows.append((name, layers, s.total_params, s.total_flops))
print(f"{'model':<22}{'weight layers':>15}{'parameters':>14}{'MFLOPs':>10}")
for name, layers, params, flops in rows:
    print(f"{name:<22}{layers:>15}{params:>14,}{flops / 1e6:>10.1f}")

fig, ax = plt.subplots(figsize=(6.5, 4.5))
for name, _, params, flops in rows:
    ax.scatter(flops / 1e6, params / 1e6)
    ax.annotate(name, (flops / 1e6, params / 1e6), fontsize=8, xytext=(4, 2), textcoords="offset points")
ax.set(xscale="log", yscale="log", xlabel="MFLOPs per 32x32 image", ylabel="millions of parameters")
plt.show()

# %% [markdown]
# ## The ImageNet-size models (224x224 inputs, 1,000 classes)
#
# Their layer names and shapes are torchvision's, so converted torchvision weights load by name
# (`docs/models.md`). AlexNet keeps 96 % of its parameters in the classifier; GoogLeNet's Inception modules reach
# VGG's accuracy with a twentieth of its parameters; ResNet-50's bottleneck blocks (1x1, 3x3, 1x1) make it twice as
# deep as ResNet-34 for about the same cost; MobileNetV2 and V3 and EfficientNet-B0 cost a fifth of ResNet-18 or
# less; ConvNeXt-T and ViT-B/16 spend more compute for ImageNet accuracy.

# %%
imagenet_models = ["alexnet", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large"]
imagenet_models += [] if QUICK else ["vgg16", "densenet121", "efficientnet_b0", "convnext_tiny", "vit_b_16"]
print(f"{'model':<16}{'parameters':>14}{'GFLOPs':>9}{'activations (MB)':>18}")
for name in imagenet_models:
    model = models.get_model(name, aux_logits=False) if name == "googlenet" else models.get_model(name)
    s = minidl.summary(model, (3, 224, 224))
    print(f"{name:<16}{s.total_params:>14,}{s.total_flops / 1e9:>9.2f}{s.activation_bytes / 2**20:>18.1f}")

# %% [markdown]
# ## Training one: ResNet-20 on CIFAR-10
#
# He et al.'s CIFAR ResNet: three stages of 3 basic blocks (16, 32, 64 channels), global average pooling and one
# linear layer, 0.27 M parameters.

# %%
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
augment = [] if QUICK else [T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip()]
train_tf = T.Compose([*augment, T.ToArray(), T.Normalize(MEAN, STD)])
test_tf = T.Compose([T.ToArray(), T.Normalize(MEAN, STD)])
if not QUICK and DATA_DIR is not None:
    train_set, test_set = CIFAR10(DATA_DIR, train=True, transform=train_tf), CIFAR10(DATA_DIR, False, test_tf)
else:
    train_set, test_set = CIFAR10Sample(train=True, transform=train_tf), CIFAR10Sample(False, test_tf)
if TRAIN_IMAGES is not None:
    train_set = Subset(train_set, range(TRAIN_IMAGES))
train_loader = DataLoader(train_set, batch_size=128, shuffle=True, seed=0)
test_loader = DataLoader(test_set, batch_size=500)
model = models.resnet20()
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=EPOCHS * len(train_loader))
history = fit(
    model,
    train_loader,
    test_loader,
    nn.CrossEntropyLoss(),
    optimizer,
    epochs=EPOCHS,
    scheduler=scheduler,
    scheduler_step="batch",
    progress=False,
)
print(f"ResNet-20, {len(train_set)} training images, {EPOCHS} epochs: test accuracy {history['val_accuracy'][-1]:.3f}")
