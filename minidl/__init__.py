"""minidl: a deep-learning framework written from scratch on NumPy, to read, to teach and to train with.

Every layer has an explicit, hand-written and gradient-checked backward; the array backend (NumPy reference,
Numba on CPU, CuPy on GPU) is swapped with one call.

Examples:
    >>> import numpy as np
    >>> import minidl
    >>> from minidl import nn
    >>> _ = minidl.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> loss_fn = nn.CrossEntropyLoss()
    >>> loss = loss_fn(model(np.ones((2, 4), np.float32)), np.array([0, 2]))
    >>> grad_x = model.backward(loss_fn.backward())
    >>> grad_x.shape
    (2, 4)
"""

from minidl import data, gradcheck, models, nn, optim, train, transforms  # noqa: E402  (they need the names above)
from minidl._dtype import get_default_dtype, set_default_dtype
from minidl._random import default_generator, fork_rng, get_rng_state, initial_seed, manual_seed, set_rng_state
from minidl.anomaly_mode import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from minidl.backend import (
    available_backends,
    get_array_module,
    get_backend,
    set_backend,
    to_numpy,
    use_backend,
)
from minidl.backend._threads import get_num_threads, set_num_threads
from minidl.grad_mode import is_grad_enabled, no_grad, set_grad_enabled
from minidl.memory_format import channels_last, contiguous, contiguous_format, is_contiguous, suggest_memory_format
from minidl.serialization import checkpoint_info, load, save
from minidl.summary import summary

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "available_backends",
    "channels_last",
    "checkpoint_info",
    "contiguous",
    "contiguous_format",
    "data",
    "default_generator",
    "detect_anomaly",
    "fork_rng",
    "get_array_module",
    "get_backend",
    "get_default_dtype",
    "get_num_threads",
    "get_rng_state",
    "gradcheck",
    "initial_seed",
    "is_anomaly_enabled",
    "is_contiguous",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "models",
    "nn",
    "no_grad",
    "optim",
    "save",
    "set_backend",
    "set_default_dtype",
    "set_detect_anomaly",
    "set_grad_enabled",
    "set_num_threads",
    "set_rng_state",
    "suggest_memory_format",
    "summary",
    "to_numpy",
    "train",
    "transforms",
    "use_backend",
]
