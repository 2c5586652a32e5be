"""Independent float64 NumPy reference of FRN and TLU, forward and backward.

Written from the paper's formulas, not from the layer code. The backward
passes give the gradients of `loss = sum(upstream * output)`; they are
themselves checked against finite differences in `test_numpy_reference.py`.
"""

import numpy as np


def _axes(x, axis):
    axis = axis % x.ndim
    reduced = tuple(i for i in range(1, x.ndim) if i != axis)
    not_channel = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return reduced, not_channel, shape


def frn_forward(x, axis, gamma, beta, epsilon, eps_learned=None):
    """`gamma * x / sqrt(mean(x^2, spatial) + eps) + beta`, float64."""
    x = np.asarray(x, np.float64)
    reduced, _, shape = _axes(x, axis)
    nu2 = np.mean(x**2, axis=reduced, keepdims=True)
    eps = epsilon + (0.0 if eps_learned is None else abs(eps_learned))
    return gamma.reshape(shape) * x / np.sqrt(nu2 + eps) + beta.reshape(shape)


def frn_backward(x, axis, gamma, beta, epsilon, eps_learned, upstream):
    """Returns `dict(x=, gamma=, beta=, eps_learned=)` gradients."""
    x = np.asarray(x, np.float64)
    reduced, not_channel, shape = _axes(x, axis)
    n = int(np.prod([x.shape[i] for i in reduced]))
    nu2 = np.mean(x**2, axis=reduced, keepdims=True)
    eps = epsilon + (0.0 if eps_learned is None else abs(eps_learned))
    r = 1.0 / np.sqrt(nu2 + eps)
    g = gamma.reshape(shape)
    w = upstream
    s = np.sum(w * g * x, axis=reduced, keepdims=True)
    grads = {
        # d/dx of g*x*r(x): the direct term and the term through nu2.
        "x": g * r * w - x * r**3 * s / n,
        "gamma": np.sum(w * x * r, axis=not_channel),
        "beta": np.sum(w, axis=not_channel),
    }
    if eps_learned is not None:
        d_eps = np.sum(-0.5 * s * r**3)
        grads["eps_learned"] = d_eps * np.sign(eps_learned)
    return grads


def tlu_forward(x, axis, tau, alpha=None):
    """`max(x, tau)` or `max(x, alpha * x + tau)`, float64."""
    x = np.asarray(x, np.float64)
    _, _, shape = _axes(x, axis)
    t = tau.reshape(shape)
    if alpha is None:
        return np.maximum(x, t)
    return np.maximum(x, alpha.reshape(shape) * x + t)


def tlu_backward(x, axis, tau, alpha, upstream):
    """Returns `dict(x=, tau=[, alpha=])`; assumes no ties."""
    x = np.asarray(x, np.float64)
    _, not_channel, shape = _axes(x, axis)
    t = tau.reshape(shape)
    a = 0.0 if alpha is None else alpha.reshape(shape)
    other = a * x + t
    x_wins = x > other
    w = upstream
    grads = {
        "x": np.where(x_wins, w, w * a),
        "tau": np.sum(np.where(x_wins, 0.0, w), axis=not_channel),
    }
    if alpha is not None:
        grads["alpha"] = np.sum(np.where(x_wins, 0.0, w * x), axis=not_channel)
    return grads
