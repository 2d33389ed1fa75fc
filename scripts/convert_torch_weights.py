"""Convert PyTorch weights to a minidl state-dict file (``.npz`` or ``.safetensors``), without pickle at load time.

minidl's layers use PyTorch's parameter names and shapes, so a converted state_dict loads with
``model.load_state_dict(minidl.load(path))`` and gives the same outputs as the PyTorch model. torch is needed only
here, at conversion time; minidl itself never imports it.

Sources:

* a file written by ``torch.save(model.state_dict(), path)``, read with ``torch.load(path, map_location="cpu",
  weights_only=True)`` (which refuses arbitrary pickled code). A checkpoint dict holding the weights under
  ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` works too, and the ``module.`` prefix of
  ``DataParallel``/``DistributedDataParallel`` (and ``_orig_mod.`` of ``torch.compile``) is removed;
* ``torchvision:NAME`` or ``torchvision:NAME:WEIGHTS`` (needs torchvision; pretrained weights are downloaded and
  verified by torchvision itself), e.g. ``torchvision:resnet18:DEFAULT`` or ``torchvision:mobilenet_v2:IMAGENET1K_V2``.
  Without ``:WEIGHTS`` the model's random initialization is converted.

Usage:
    python scripts/convert_torch_weights.py SOURCE OUTPUT [--dtype float32|float64] [--model NAME]
                                                          [--num-classes K] [-o KEY=VALUE ...]

    python scripts/convert_torch_weights.py torchvision:resnet18:DEFAULT resnet18.npz --model resnet18
    python scripts/convert_torch_weights.py my_model.pt my_model.safetensors --dtype float32
    python scripts/convert_torch_weights.py ckpt.pth mbv2.npz --model mobilenet_v2 -o width_mult=0.5 -o cifar=True

``--model NAME`` then builds ``minidl.models.get_model(NAME, num_classes=K, **options)`` (K read from the weights
unless given; options from ``-o KEY=VALUE``), loads the converted file with ``strict=True`` (so every name and
shape must match), and, for a torchvision source, compares both models' outputs on a random input in float64 and
eval mode.

In Python::

    import minidl
    from minidl import models
    model = models.resnet18()
    model.load_state_dict(minidl.load("resnet18.npz"))
    model.eval()
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

import minidl

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
PREFIXES = ("module.", "_orig_mod.")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise SystemExit("convert_torch_weights: reading PyTorch weights needs PyTorch: pip install torch") from None
    return torch


def find_state_dict(obj: Any) -> dict[str, Any]:
    """The name -> tensor mapping inside what ``torch.load`` returned (a state_dict or a checkpoint dict)."""
    torch = _torch()
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), dict):
                return find_state_dict(obj[key])
        found = sorted(str(k) for k in obj)
        raise ValueError(
            f"convert_torch_weights: no state_dict found: expected a dict of tensors or a checkpoint with one of "
            f"{STATE_DICT_KEYS}; the file holds the keys {found[:10]}"
        )
    raise ValueError(f"convert_torch_weights: expected a state_dict (a dict of tensors), got {type(obj).__name__}")


def strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Remove a wrapper prefix (``module.``, ``_orig_mod.``) that every key carries."""
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = OrderedDict((k[len(prefix) :], v) for k, v in state.items())
    return state


def to_numpy_state_dict(state: dict[str, Any], dtype: str | None = None) -> OrderedDict[str, np.ndarray]:
    """Tensors -> contiguous NumPy arrays. Floating tensors are cast to ``dtype`` when given (bfloat16, which NumPy
    lacks, becomes float32 otherwise); integer buffers such as ``num_batches_tracked`` stay int64."""
    torch = _torch()
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"convert_torch_weights: {key!r} is a {type(tensor).__name__}, not a tensor")
        t = tensor.detach().cpu()
        if t.is_floating_point():
            if dtype is not None:
                t = t.to(getattr(torch, dtype))
            elif t.dtype == torch.bfloat16:
                t = t.float()
        out[key] = t.numpy().copy()  # a C-contiguous copy (np.ascontiguousarray would make 0-d arrays 1-d)
    return out


def load_source(source: str) -> tuple[dict[str, Any], Any]:
    """(state_dict, torch module or None) for a file path or ``torchvision:NAME[:WEIGHTS]``."""
    torch = _torch()
    if source.startswith("torchvision:"):
        parts = source.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise SystemExit(
                f"convert_torch_weights: expected torchvision:NAME or torchvision:NAME:WEIGHTS, got {source!r}"
            )
        try:
            import torchvision
        except ImportError:
            raise SystemExit("convert_torch_weights: torchvision is not installed (pip install torchvision)") from None
        except RuntimeError as exc:  # e.g. "operator torchvision::nms does not exist": built for another torch
            import torch

            raise SystemExit(
                f"convert_torch_weights: torchvision cannot be imported with the installed torch {torch.__version__} "
                f"({exc}); install the torchvision release built for this torch"
            ) from None
        weights = parts[2] if len(parts) == 3 else None
        module = torchvision.models.get_model(parts[1], weights=weights)
        return module.state_dict(), module
    path = Path(source)
    if not path.is_file():
        raise SystemExit(f"convert_torch_weights: no file at {path} (and it does not start with 'torchvision:')")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return strip_prefixes(find_state_dict(obj)), None


def infer_num_classes(state: dict[str, np.ndarray]) -> int:
    """The output size: the first dimension of the last 2-D weight (the classifier's)."""
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if not matrices:
        raise ValueError("convert_torch_weights: no 2-D weight to read num_classes from; pass --num-classes")
    return int(matrices[-1].shape[0])


def parse_options(options: list[str]) -> dict[str, Any]:
    """``["width_mult=0.5", "cifar=True"]`` -> ``{"width_mult": 0.5, "cifar": True}`` (Python literals, else str)."""
    kwargs: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"convert_torch_weights: expected KEY=VALUE for --option, got {option!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def check_model(
    name: str, path: Path, num_classes: int, torch_module: Any = None, model_kwargs: dict[str, Any] | None = None
) -> float | None:
    """Load ``path`` into ``minidl.models.get_model(name, num_classes=..., **model_kwargs)`` strictly; with a torch
    module, return the largest difference between the two models' float64 outputs on a random input (eval mode)."""
    from minidl import models

    model = models.get_model(name, num_classes=num_classes, **(model_kwargs or {})).to(np.float64)
    model.load_state_dict(minidl.load(path))
    if torch_module is None:
        return None
    torch = _torch()
    size = 32 if getattr(model, "stem", "imagenet") == "cifar" or getattr(model, "cifar", False) else 224
    channels = getattr(model, "in_channels", None) or 3
    x = np.random.default_rng(0).standard_normal((2, channels, size, size))
    model.eval()
    with minidl.no_grad():
        ours = minidl.to_numpy(model(x))
    with torch.no_grad():
        theirs = torch_module.double().eval()(torch.from_numpy(x)).numpy()
    return float(np.abs(ours - theirs).max())


def convert(
    source: str,
    output: str | Path,
    dtype: str | None = None,
    model: str | None = None,
    num_classes: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> OrderedDict[str, np.ndarray]:
    """Convert ``source`` to ``output`` (``.npz`` or ``.safetensors``); return the converted state_dict.

    With ``model`` (a :func:`minidl.models.list_models` name, built with ``num_classes`` and ``model_kwargs``), the
    file is also loaded into that model with ``strict=True``.
    """
    output = Path(output)
    if output.suffix not in (".npz", ".safetensors"):
        raise SystemExit(f"convert_torch_weights: the output must end in .npz or .safetensors, got {output.name!r}")
    if dtype not in (None, "float32", "float64"):
        raise SystemExit(f"convert_torch_weights: --dtype must be float32 or float64, got {dtype!r}")
    state, torch_module = load_source(source)
    arrays = to_numpy_state_dict(state, dtype)
    minidl.save(arrays, output)
    total = sum(int(v.size) for k, v in arrays.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {len(arrays)} arrays ({total:,} values) to {output}")
    if model is not None:
        k = num_classes if num_classes is not None else infer_num_classes(arrays)
        diff = check_model(model, output, k, torch_module, model_kwargs)
        extra = "".join(f", {key}={value!r}" for key, value in (model_kwargs or {}).items())
        print(
            f"loaded into minidl.models.{model}(num_classes={k}{extra}) with strict=True: every name and shape matches"
        )
        if diff is not None:
            print(f"largest output difference against the PyTorch model (float64, eval): {diff:.3g}")
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="a torch.save'd state_dict / checkpoint, or torchvision:NAME[:WEIGHTS]")
    parser.add_argument("output", help="the file to write: .npz or .safetensors")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="cast floating tensors (default: keep their dtype)",
    )
    parser.add_argument("--model", default=None, help="a minidl.models name to check the converted weights against")
    parser.add_argument("--num-classes", type=int, default=None, help="num_classes for --model (default: inferred)")
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another keyword for --model's factory, e.g. -o width_mult=0.5 -o cifar=True",
    )
    args = parser.parse_args(argv)
    convert(args.source, args.output, args.dtype, args.model, args.num_classes, parse_options(args.option))
    return 0


if __name__ == "__main__":
    sys.exit(main())
