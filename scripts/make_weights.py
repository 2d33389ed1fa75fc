"""Build a pretrained weights file that ships with minidl (``minidl/models/_weights/``) and its manifest entry.

For a model with a weights enum in ``minidl.models.weights`` (``airbench94``, ``resnet20``, ``cifar_cnn``) the script

1. trains it with the example that belongs to it (the command is in ``RECIPES`` and is recorded), or takes the
   weights of a run already made (``--from``: a state dict or a ``train_cifar10.py`` checkpoint);
2. writes the model's state dict to a temporary file (``--dtype float16`` halves it: airbench94's 1.97 M
   parameters take 3.9 MB instead of 7.9 MB);
3. loads that file back into a fresh model and measures its accuracy on the CIFAR-10 test set (10,000 images; for
   airbench94 also with the speedrun's test-time augmentation) and on the 500 test images embedded in minidl;
4. only then moves it to ``minidl/models/_weights/<model>_cifar10.npz`` and records the file's SHA-256, the
   accuracies, the recipe, the training time and the CPU in ``minidl/models/_weights/manifest.json`` under
   ``<Enum>.CIFAR10`` (each file replaced atomically, the weights put back if the manifest cannot be written: a
   run that fails half-way leaves the shipped weights and their manifest as they were).

``models.<model>(weights="cifar10")`` then checks the SHA-256 on every load; ``tests/models/test_weights.py``
checks that the file reproduces the accuracies recorded here.

Usage:
    python scripts/make_weights.py airbench94 --data-dir ../shared/data --dtype float16   # trains it (RECIPES)
    python scripts/make_weights.py airbench94 --data-dir ../shared/data --dtype float16 \\
        --from runs/speedrun/model-run0.npz --train-seconds 3110.6 \\
        --recipe "python examples/speedrun_cifar10.py --data-dir ../shared/data --runs 1 --seed 0 --epochs 11"
    python scripts/make_weights.py resnet20 --data-dir ../shared/data                      # trains it (RECIPES)
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))  # cpu_model: the CPU's name as the benchmark records give it

from _record import cpu_model  # noqa: E402

import minidl  # noqa: E402
from minidl import models  # noqa: E402
from minidl import transforms as T  # noqa: E402
from minidl.data.datasets import CIFAR10  # noqa: E402
from minidl.data.datasets.cifar import CLASSES  # noqa: E402
from minidl.data.sample import load_cifar10_sample  # noqa: E402
from minidl.models.weights import MANIFEST, WEIGHTS_DIR, cifar_eval_transforms, get_model_weights  # noqa: E402
from minidl.train.history import atomic_write_text  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # what the examples normalize with
# The training command of each model (run from the repository root; {data} and {out} are filled in), and the file
# of the run whose weights are shipped: the speedrun's model-run0.npz; train_cifar10.py's last checkpoint (the end
# of the schedule; not best.npz, which is chosen on the test set the manifest reports).
RECIPES = {
    "airbench94": (
        "python examples/speedrun_cifar10.py --data-dir {data} --runs 1 --epochs 11 --out {out}",
        "model-run0.npz",
    ),
    "resnet20": (
        "python examples/train_cifar10.py --data-dir {data} --model resnet20 --epochs 6 --seed 0 --out {out}",
        "checkpoints/last.npz",
    ),
    "cifar_cnn": (
        "python examples/train_cifar10.py --data-dir {data} --model cifar_cnn --epochs 12 --seed 0 --out {out}",
        "checkpoints/last.npz",
    ),
}
# The factory arguments each file was trained with; load_pretrained checks them against the model's attributes.
BUILDER_KWARGS = {
    "airbench94": {"widths": [64, 256, 256]},
    "resnet20": {"in_channels": 3},
    "cifar_cnn": {"in_channels": 3},
}


def state_dict_of(path: Path) -> dict:
    """The model's state dict in a plain state-dict file or in a training checkpoint (its ``"model"`` entry)."""
    obj = minidl.load(path)
    return obj["model"] if "model" in obj and isinstance(obj["model"], dict) else obj


def predict(model: minidl.nn.Module, images: np.ndarray, tta: bool) -> np.ndarray:
    """Predicted classes of (N, 32, 32, 3) uint8 images, preprocessed as ``weights.transforms()`` will (with the
    speedrun's six test-time views when ``tta``)."""
    preprocess = cifar_eval_transforms(MEAN, STD)
    x = np.stack([preprocess(img) for img in images])
    model.eval()
    logits = T.tta_predict(model, x, "flip_translate" if tta else "none", batch_size=500, average="logits")
    return minidl.to_numpy(logits).argmax(axis=1)


def accuracy(model: object, images: np.ndarray, labels: np.ndarray, tta: bool = False) -> dict:
    correct = int((predict(model, images, tta) == labels).sum())
    return {"acc@1": correct / len(labels), "correct": correct, "images": len(labels)}


def measure(model: minidl.nn.Module, data_dir: str, tta: bool) -> dict:
    """Accuracy on the CIFAR-10 test set and on the 500 embedded test images (also with TTA when ``tta``)."""
    test = CIFAR10(data_dir, False)
    sets = {"cifar10_test": (test.data, np.asarray(test.targets)), "sample_test": load_cifar10_sample()[2:4]}
    metrics = {name: accuracy(model, images, labels) for name, (images, labels) in sets.items()}
    if tta:
        metrics.update({f"{name}_tta": accuracy(model, *data, tta=True) for name, data in sets.items()})
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(RECIPES))
    parser.add_argument("--data-dir", required=True, help="folder holding CIFAR-10 (the test set is measured)")
    parser.add_argument("--from", dest="source", type=Path, help="the weights of a run already made (skip training)")
    parser.add_argument("--recipe", help="the command that made --from (default: RECIPES[model])")
    parser.add_argument("--out", type=Path, default=None, help="training output folder (default: runs/weights-<model>)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage of float arrays")
    parser.add_argument("--train-seconds", type=float, help="the training time of --from, to record")
    args = parser.parse_args()

    out = args.out or ROOT / "runs" / f"weights-{args.model}"
    command, result_file = RECIPES[args.model]
    # the recorded recipe leaves out --out: a path of this machine, which changes nothing in the weights
    recipe = args.recipe or command.replace(" --out {out}", "").format(data=args.data_dir)
    source, train_seconds = args.source, args.train_seconds
    if source is None:
        print(f"training: {recipe} --out {out}", flush=True)
        tick = time.perf_counter()
        run = shlex.split(command.format(data=shlex.quote(str(args.data_dir)), out=shlex.quote(str(out))))
        subprocess.run([sys.executable, *run[1:]], cwd=ROOT, check=True)
        train_seconds, source = time.perf_counter() - tick, out / result_file

    state = state_dict_of(source)
    dtype = np.dtype(args.dtype)
    packed = {
        k: (v.astype(dtype) if np.issubdtype(np.asarray(v).dtype, np.floating) else np.asarray(v))
        for k, v in ((k, minidl.to_numpy(v)) for k, v in state.items())
    }
    WEIGHTS_DIR.mkdir(exist_ok=True)
    file = WEIGHTS_DIR / f"{args.model}_cifar10.npz"
    with tempfile.TemporaryDirectory(dir=WEIGHTS_DIR) as staging:  # same file system: os.replace is atomic
        staged = Path(staging) / file.name
        minidl.save(packed, staged)
        sha256 = hashlib.sha256(staged.read_bytes()).hexdigest()
        model = getattr(models, args.model)(num_classes=10, **BUILDER_KWARGS[args.model])
        model.load_state_dict(minidl.load(staged))  # what users will load: the file as shipped, cast to float32
        metrics = measure(model, args.data_dir, tta=args.model == "airbench94")
        print(json.dumps(metrics), flush=True)

        key = f"{get_model_weights(args.model).__name__}.CIFAR10"
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
        manifest[key] = {
            "file": file.name,
            "sha256": sha256,
            "model": args.model,
            "builder_kwargs": BUILDER_KWARGS[args.model],
            "num_params": int(sum(p.size for p in model.parameters())),
            "dtype": args.dtype,
            "file_bytes": staged.stat().st_size,
            "categories": CLASSES,
            "mean": list(MEAN),
            "std": list(STD),
            "metrics": metrics,
            "recipe": recipe,
            "train_seconds": None if train_seconds is None else round(train_seconds, 1),
            "cpu": cpu_model(),
            "built": datetime.date.today().isoformat(),
            "backend": minidl.get_backend().name,
        }
        # the file and its manifest entry change together: if the manifest cannot be written, the old file goes back
        backup = Path(staging) / f"{file.name}.old"
        if file.exists():
            shutil.copy2(file, backup)
        os.replace(staged, file)
        try:
            atomic_write_text(MANIFEST, json.dumps(manifest, indent=2) + "\n", "make_weights")
        except BaseException:
            if backup.exists():
                os.replace(backup, file)
            else:
                file.unlink()
            raise
    print(f"wrote {file} ({file.stat().st_size:,} bytes, SHA-256 {sha256}) and its entry {key} in {MANIFEST}")


if __name__ == "__main__":
    main()
