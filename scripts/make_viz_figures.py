"""Draw the figures of docs/visualization.md into docs/img/viz/ from a cifar_cnn trained on real CIFAR-10.

Run from the repository root:

    python scripts/make_viz_figures.py --data-dir ../shared/data            # trains (a few minutes), then draws
    python scripts/make_viz_figures.py --data-dir ../shared/data --checkpoint runs/viz/cifar_cnn.npz   # draws only

Training: ``cifar_cnn`` on the first ``--train-images`` CIFAR-10 training images (pad-crop + flip), SGD with
momentum, linear warm-up then cosine decay, ``--epochs`` epochs, with the four training-health monitors attached
(:class:`~minidl.train.ActivationStats`, :class:`~minidl.train.UpdateRatio`, :class:`~minidl.train.DeadReLU`,
:class:`~minidl.train.GradientNorms`). The weights are saved to ``runs/viz/cifar_cnn.npz`` (not committed) and the
monitors' histories next to them, so ``--checkpoint`` redraws without training.

Figures (each a PNG under 200 KB):
    grad_cam.png            Grad-CAM on the last convolution block (features.16, 8 x 8) for 8 test images
    saliency.png            saliency and SmoothGrad for 4 test images
    filters.png             the 32 first-layer filters (3 x 3 x 3, RGB, each scaled to [0, 1])
    activation_maps.png     the first 16 channels of features.2 (the first ReLU) for one test image
    class_model.png         class-model visualization of 5 classes (gradient ascent on the input)
    activation_stats.png    per-layer mean/std and histograms of the activations at the first step of training
    update_ratios.png       ||update|| / ||W|| per weight over training, with the 1e-3 line
    dead_relu.png           dead-unit fraction and zero fraction per ReLU over training
    gradient_norms.png      per-layer and global gradient norms over training
    init_small.png          the deck's init demo: a 10-layer tanh MLP (width 256) with weights drawn at std 0.01
    init_xavier.png         the same MLP with Xavier (Glorot) normal init
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import minidl
from minidl import models, nn, optim, train, viz
from minidl import transforms as T
from minidl.data import DataLoader, Subset, TensorDataset
from minidl.data.datasets import CIFAR10

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "viz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
DPI = 90


def train_model(args: argparse.Namespace, run: Path) -> tuple[nn.Module, list[train.Callback]]:
    augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToArray(), T.Normalize(MEAN, STD)])
    train_set = Subset(CIFAR10(args.data_dir, True, augment), range(args.train_images))
    loader = DataLoader(train_set, 128, shuffle=True, drop_last=True, seed=args.seed, device="current")
    model = models.cifar_cnn()
    opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = args.epochs * len(loader)
    warmup = len(loader) // 2
    scheduler = optim.lr_scheduler.SequentialLR(
        opt,
        [
            optim.lr_scheduler.LinearLR(opt, start_factor=0.05, total_iters=warmup),
            optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - warmup),
        ],
        milestones=[warmup],
    )
    monitors = [
        train.ActivationStats(every=25, histogram_bins=40),
        train.UpdateRatio(every=5),
        train.DeadReLU(every=5),
        train.GradientNorms(every=5),
    ]
    # fuse=False: the monitors see every layer on its own (a fused model shows its fused BatchNorm+ReLU modules)
    train.fit(model, loader, None, nn.CrossEntropyLoss(), opt, args.epochs, scheduler=scheduler,
              scheduler_step="batch", callbacks=monitors, fuse=False, progress=False)  # fmt: skip
    minidl.save(model.state_dict(), run / "cifar_cnn.npz")
    for monitor in monitors:
        minidl.save(monitor.state_dict(), run / f"{type(monitor).__name__}.npz")
    return model, monitors


def load_model(args: argparse.Namespace, run: Path) -> tuple[nn.Module, list[train.Callback]]:
    model = models.cifar_cnn()
    model.load_state_dict(minidl.load(args.checkpoint))
    monitors = []
    for cls in (train.ActivationStats, train.UpdateRatio, train.DeadReLU, train.GradientNorms):
        monitor = cls()
        monitor.load_state_dict(minidl.load(Path(args.checkpoint).parent / f"{cls.__name__}.npz"))
        monitors.append(monitor)
    return model, monitors


def init_demo(out: Path) -> None:
    """The CS231n init demo: activation statistics of a deep tanh MLP at initialization, two inits."""
    x = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.zeros(512, np.int64)), batch_size=512, device="current")
    for name, std in (("init_small", 0.01), ("init_xavier", None)):
        minidl.manual_seed(0)
        layers: list[nn.Module] = []
        for _ in range(10):
            linear = nn.Linear(256, 256, bias=False)
            nn.init.normal_(linear.weight, std=std) if std else nn.init.xavier_normal_(linear.weight)
            layers += [linear, nn.Tanh()]
        model = nn.Sequential(*layers, nn.Linear(256, 10))
        stats = train.ActivationStats(modules=[str(2 * i + 1) for i in range(10)], histogram_bins=40)
        train.fit(model, loader, None, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), 1,
                  callbacks=[stats], verbose=False, progress=False)  # fmt: skip
        label = "N(0, 0.01^2)" if std else "Xavier normal"
        train.plot_activation_stats(stats, out / f"{name}.png", max_layers=10, dpi=DPI,
                                    title=f"10 tanh layers of 256 units, weights {label}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data", help="folder holding CIFAR-10")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--checkpoint", help="draw from these weights (and the monitor states next to them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    minidl.manual_seed(args.seed)
    run = ROOT / "runs" / "viz"
    run.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, monitors = load_model(args, run) if args.checkpoint else train_model(args, run)
    init_demo(args.out)
    print(f"model ready after {time.perf_counter() - start:.0f} s")
    test_set = CIFAR10(args.data_dir, False, T.Compose([T.ToArray(), T.Normalize(MEAN, STD)]))
    names = test_set.classes
    test = train.evaluate(model, DataLoader(test_set, 500, device="current"), nn.CrossEntropyLoss())
    print(f"test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")
    (run / "test.json").write_text(json.dumps(test))
    x = np.stack([test_set[i][0] for i in range(8)]).astype(np.float32)
    y = np.array([test_set[i][1] for i in range(8)])
    model.eval()
    with minidl.no_grad():
        pred = minidl.to_numpy(model(x)).argmax(1)
    model.train()
    titles = [f"{names[p]} ({names[t]})" for p, t in zip(pred, y, strict=True)]
    out = args.out
    cam = viz.grad_cam(model, x, pred, "features.16")
    viz.plot_heatmaps(x, {"Grad-CAM": cam.cam}, out / "grad_cam.png", titles=titles, mean=MEAN, std=STD, dpi=DPI)
    sal = viz.saliency(model, x[:4], pred[:4])
    smooth = viz.smooth_grad(model, x[:4], pred[:4], n_samples=25, noise_level=0.15, seed=0)
    viz.plot_heatmaps(x[:4], {"saliency": sal.map, "SmoothGrad": smooth.map}, out / "saliency.png",
                      titles=titles[:4], mean=MEAN, std=STD, cmap="hot", alpha=0.6, dpi=DPI)  # fmt: skip
    viz.plot_filters(model, out / "filters.png", title="features.0: 32 filters 3x3x3", dpi=DPI)
    maps = viz.activation_maps(model, x[:1], "features.2")
    viz.plot_activation_maps(maps, out / "activation_maps.png", max_channels=16,
                             title=f"features.2 (ReLU), channels 0-15, on a {names[y[0]]}", dpi=DPI)  # fmt: skip
    low, high = (0 - np.array(MEAN)) / np.array(STD), (1 - np.array(MEAN)) / np.array(STD)
    classes = [1, 3, 5, 7, 9]
    images = []
    for c in classes:
        result = viz.class_model_visualization(model, c, (3, 32, 32), steps=150, lr=0.05, l2=1e-3, jitter=2,
                                               clamp=(float(low.min()), float(high.max())), seed=c)  # fmt: skip
        images.append(result.image)
        print(f"class model {names[c]}: score {result.scores[0]:.2f} -> {result.scores[-1]:.2f}")
    viz.plot_images(np.stack(images), out / "class_model.png", titles=[names[c] for c in classes], mean=MEAN,
                    std=STD, dpi=DPI)  # fmt: skip
    stats, ratios, dead, norms = monitors
    train.plot_activation_stats(stats, out / "activation_stats.png", record=0, max_layers=8, dpi=DPI,
                                title="cifar_cnn at initialization (step 0)")  # fmt: skip
    train.plot_update_ratios(ratios, out / "update_ratios.png", dpi=DPI)
    train.plot_dead_relu(dead, out / "dead_relu.png", dpi=DPI)
    train.plot_gradient_norms(norms, out / "gradient_norms.png", dpi=DPI)
    for path in sorted(out.glob("*.png")):
        print(f"{path}: {path.stat().st_size / 1024:.0f} KB")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
