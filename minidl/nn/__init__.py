"""Layers, containers and losses: every Module with an explicit forward and backward.

Each layer family lives in one file with its math, its functional pair (``<op>_forward``/``<op>_backward``, also
re-exported from :mod:`minidl.nn.functional`) and its Module class. The names each file exports are listed in
its ``__all__``.
"""

from minidl.nn import functional, init, utils
from minidl.nn.activation import *  # noqa: F403
from minidl.nn.containers import *  # noqa: F403
from minidl.nn.conv import *  # noqa: F403
from minidl.nn.dropout import *  # noqa: F403
from minidl.nn.linear import *  # noqa: F403
from minidl.nn.loss import *  # noqa: F403
from minidl.nn.module import IncompatibleKeys, Module, Parameter
from minidl.nn.normalization import *  # noqa: F403
from minidl.nn.pooling import *  # noqa: F403
from minidl.nn.regularization import *  # noqa: F403
