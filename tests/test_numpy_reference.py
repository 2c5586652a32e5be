"""Checks the float64 NumPy reference's backward against finite differences,
so that the layer tests compare against a reference that is itself right."""

import numpy as np
import pytest

from tests import harness
from tests import numpy_reference as ref


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "shape,axis", [((3, 4), -1), ((2, 3, 4), -1), ((2, 4, 3, 2), 1)]
)
def test_frn_backward_matches_finite_differences(shape, axis, masked):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) * 0.1
    c = shape[axis]
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    eps, eps_l = 1e-3, -2e-3
    w = rng.normal(size=shape)
    mask = None
    if masked:
        # Some positions of each sample left out, one sample entirely.
        mask = rng.random(np.delete(shape, axis % len(shape))) < 0.6
        mask[0] = False
    grads = ref.frn_backward(x, axis, gamma, beta, eps, eps_l, w, mask)

    def loss(**kw):
        args = dict(x=x, gamma=gamma, beta=beta, eps_learned=eps_l)
        args.update(kw)
        out = ref.frn_forward(
            args["x"], axis, args["gamma"], args["beta"], eps,
            args["eps_learned"], mask,
        )
        return np.sum(w * out)

    for name, value in [("x", x), ("gamma", gamma), ("beta", beta)]:
        numerical = harness.numerical_gradient(lambda v: loss(**{name: v}), value)
        np.testing.assert_allclose(grads[name], numerical, rtol=1e-5, atol=1e-7)
    numerical = harness.numerical_gradient(lambda v: loss(eps_learned=float(v)), eps_l)
    np.testing.assert_allclose(grads["eps_learned"], numerical, rtol=1e-5)


@pytest.mark.parametrize("affine", [False, True])
def test_tlu_backward_matches_finite_differences(affine):
    rng = np.random.default_rng(1)
    shape, axis = (3, 5, 4), -1
    x = rng.normal(size=shape)
    tau = rng.normal(size=4) * 0.5
    alpha = rng.normal(size=4) * 0.5 if affine else None
    w = rng.normal(size=shape)
    grads = ref.tlu_backward(x, axis, tau, alpha, w)

    def loss(x=x, tau=tau, alpha=alpha):
        return np.sum(w * ref.tlu_forward(x, axis, tau, alpha))

    np.testing.assert_allclose(
        grads["x"], harness.numerical_gradient(lambda v: loss(x=v), x), atol=1e-6
    )
    np.testing.assert_allclose(
        grads["tau"], harness.numerical_gradient(lambda v: loss(tau=v), tau), atol=1e-6
    )
    if affine:
        np.testing.assert_allclose(
            grads["alpha"],
            harness.numerical_gradient(lambda v: loss(alpha=v), alpha),
            atol=1e-6,
        )
