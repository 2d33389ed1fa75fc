"""Layers, containers and losses: every Module with an explicit forward and backward.

Each layer family lives in one file with its math, its functional pair (``<op>_forward``/``<op>_backward``, also
re-exported from :mod:`minidl.nn.functional`) and its Module class, which computes through that pair. The names
each file exports are listed in its ``__all__``. :func:`fuse` (``fusion.py``) fuses adjacent layers of a model.
"""

from minidl.nn import dispatch, functional, init, utils
from minidl.nn.activation import *  # noqa: F403
from minidl.nn.containers import *  # noqa: F403
from minidl.nn.conv import *  # noqa: F403
from minidl.nn.dropout import *  # noqa: F403
from minidl.nn.fusion import *  # noqa: F403
from minidl.nn.linear import *  # noqa: F403
from minidl.nn.loss import *  # noqa: F403
from minidl.nn.module import IncompatibleKeys, Module, Parameter
from minidl.nn.normalization import *  # noqa: F403
from minidl.nn.normalization_group import *  # noqa: F403
from minidl.nn.normalization_instance import *  # noqa: F403
from minidl.nn.pooling import *  # noqa: F403
from minidl.nn.pooling_adaptive import *  # noqa: F403
from minidl.nn.regularization import *  # noqa: F403
