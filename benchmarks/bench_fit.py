"""What a user of ``train.fit`` gets: images per second of whole training epochs (batches, loss, backward, SGD,
metrics, validation), for ``cifar_cnn`` and ``resnet20`` on random 32x32 images, on the Numba backend.

    python benchmarks/bench_fit.py                              # this checkout
    python benchmarks/bench_fit.py --baseline ../before --rounds 4

``fit`` fuses the model as it does for a user (on a fast backend). With ``--baseline DIR`` the same measurement runs
on another checkout of minidl (say, the commit before a change), alternating with this one in every round, and the
end gives this checkout's speed over the baseline's per round. Each run is its own process; an epoch is
``--batches`` training batches of 128 and a quarter as many validation batches, and the figure is the fastest of the
epochs after the first (which compiles and warms up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(model_name: str, batches: int, epochs: int) -> dict[str, float]:
    import numpy as np

    import minidl
    from minidl import models, nn, optim, train

    minidl.set_backend("numba")
    minidl.manual_seed(0)
    rng = np.random.default_rng(0)
    data = [
        (rng.standard_normal((128, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 128))
        for _ in range(batches + max(1, batches // 4))
    ]
    train_batches, val_batches = data[:batches], data[batches:]
    model = models.get_model(model_name, num_classes=10)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    seconds: list[float] = []

    class Clock(train.Callback):
        def on_epoch_begin(self, trainer, epoch):  # noqa: ANN001, ANN201 (the Callback interface)
            self.start = time.perf_counter()

        def on_epoch_end(self, trainer, epoch, logs):  # noqa: ANN001, ANN201
            seconds.append(time.perf_counter() - self.start)

    train.fit(
        model, train_batches, val_batches, nn.CrossEntropyLoss(), optimizer, epochs=epochs, callbacks=[Clock()],
        progress=False, verbose=False,
    )  # fmt: skip
    images = 128 * (len(train_batches) + len(val_batches))
    return {"img_per_s": images / min(seconds[1:]), "epochs": len(seconds)}


def spawn(root: Path, model_name: str, args: argparse.Namespace) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", model_name]
    cmd += ["--batches", str(args.batches), "--epochs", str(args.epochs)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[len("RESULT ") :])["img_per_s"])
    raise SystemExit(f"{root}: {model_name} failed:\n{proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cifar_cnn", "resnet20"])
    parser.add_argument("--batches", type=int, default=8, help="training batches of 128 per epoch. Default: 8")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is warm-up). Default: 4")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each checkout, interleaved. Default: 1")
    parser.add_argument("--baseline", type=Path, default=None, help="another minidl checkout to compare with")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")
    if args.worker:
        print("RESULT " + json.dumps(measure(args.worker, args.batches, args.epochs)))
        return
    roots = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print(f"fit on the Numba backend, {args.batches} + {max(1, args.batches // 4)} batches of 128 per epoch, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for model_name in args.models:
        runs: dict[str, list[float]] = {name: [] for name in roots}
        for _ in range(args.rounds):
            for name, root in roots.items():
                runs[name].append(spawn(root, model_name, args))
        line = "  ".join(f"{name} {max(v):7.0f} img/s (best of {len(v)})" for name, v in runs.items())
        if args.baseline:
            ratios = sorted(a / b for a, b in zip(runs["this"], runs["baseline"], strict=True))
            line += f"  this/baseline per round min / median / max {ratios[0]:.3f} / "
            line += f"{statistics.median(ratios):.3f} / {ratios[-1]:.3f}"
        print(f"{model_name:10s} {line}")


if __name__ == "__main__":
    main()
