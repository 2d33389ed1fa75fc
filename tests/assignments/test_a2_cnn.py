"""A2: the CNN of cnn.py computes the same with the solution's layers.py as with minidl's own pairs."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import minidl
from tests.assignments.helpers import load_solution


@pytest.mark.parametrize("training", [False, True])
def test_use_my_layers_runs_the_cnn_on_the_solution_pairs(training):
    layers, cnn = load_solution("a2_cnn", "layers"), load_solution("a2_cnn", "cnn")
    rng = np.random.default_rng(0)
    with minidl.use_backend("numpy"):
        model = cnn.build_cnn().to(np.float64)
        for m in model.modules():
            if type(m).__name__ == "Dropout":
                m.p = 0.0  # the two dropouts draw different masks; the rest must agree to rounding
        model.train(training)
        x = rng.standard_normal((2, 3, 32, 32))
        dout = rng.standard_normal((2, 10))
        runs = []
        for mine in (False, True):
            state = {k: v.copy() for k, v in model.state_dict().items()}
            with cnn.use_my_layers(layers) if mine else contextlib.nullcontext():
                out = model(x)
                dx = model.backward(dout)
            runs.append(
                (out, dx, [p.grad.copy() for p in model.parameters()], model.state_dict()["1.running_var"].copy())
            )
            model.zero_grad()
            model.load_state_dict(state)
    (out_a, dx_a, grads_a, var_a), (out_b, dx_b, grads_b, var_b) = runs
    np.testing.assert_allclose(out_b, out_a, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(dx_b, dx_a, rtol=1e-8, atol=1e-10)
    for a, b in zip(grads_a, grads_b, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(var_b, var_a, rtol=1e-12)
