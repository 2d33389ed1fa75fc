"""Conformance checks: does a forward/backward pair, or a layer, compute what minidl's reference computes?

:func:`gradcheck <minidl.gradcheck.check_function>` proves a backward consistent with its own forward, but it cannot
grade a forward pass: a convolution with the wrong padding has a self-consistent gradient and passes. These checks
compare with the reference too:

* :func:`check_pair` runs ``candidate_forward``/``candidate_backward`` beside ``F.<op>_forward/_backward``;
* :func:`check_layer` runs a Module class beside ``nn.<Layer>``;

both over configurations that hypothesis draws (shapes, stride, padding, dilation, groups, train/eval, ...), in
float64 on the NumPy backend (the reference mode), and both run the numerical gradient check on the candidate. A
mismatch raises :class:`ConformanceError` (an AssertionError) naming the function, the smallest failing
configuration, which output or gradient, and the worst error.

hypothesis is needed here only: ``pip install 'minidl[test]'``.

Examples:
    >>> import numpy as np
    >>> from minidl.testing import check_pair
    >>> def relu_forward(x):
    ...     return np.maximum(x, 0), x > 0
    >>> def relu_backward(dout, mask):
    ...     return dout * mask
    >>> check_pair(relu_forward, relu_backward, "relu", max_examples=5).examples  # (a quick check's 4 first)
    9
    >>> def relu_backward_wrong(dout, mask):
    ...     return dout                                  # forgot the mask
    >>> try:
    ...     check_pair(relu_forward, relu_backward_wrong, "relu", max_examples=5)
    ... except AssertionError as err:
    ...     print(str(err).splitlines()[0][:60])
    relu_backward_wrong: the gradient of x differs from the refe
"""

from minidl.testing._check import check_layer, check_pair
from minidl.testing._compare import ConformanceError, ConformanceReport
from minidl.testing._ops import OpSpec, register_op, registered_ops

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "OpSpec",
    "check_layer",
    "check_pair",
    "register_op",
    "registered_ops",
]
