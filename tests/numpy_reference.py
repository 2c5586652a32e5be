"""Independent float64 NumPy reference of FRN, TLU and Proxy Normalization.

Written from the paper's formulas, not from the layer code. The backward
passes give the gradients of `loss = sum(upstream * output)`; they are
themselves checked against finite differences in `test_numpy_reference.py`.
"""

import math

import numpy as np


def _axes(x, axis):
    axis = axis % x.ndim
    reduced = tuple(i for i in range(1, x.ndim) if i != axis)
    not_channel = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return reduced, not_channel, shape


def _counted(x, axis, reduced, mask):
    """`(m, n)` for `nu2 = sum(m * x^2) / n` over `reduced`: `m` is 1 at the
    positions that count (all of them without a `mask`, which has the
    input's shape without the channel axis), `n` how many count per sample
    and channel, at least 1 (nu2 = 0 where none does)."""
    if mask is None:
        return 1.0, int(np.prod([x.shape[i] for i in reduced]))
    m = np.expand_dims(np.asarray(mask, np.float64), axis % x.ndim)
    return m, np.maximum(np.sum(m, axis=reduced, keepdims=True), 1)


def _mean_square(x, m, n, reduced):
    """`sum(m * x^2) / n`, the left-out values (inf or NaN, maybe) not
    multiplied by 0 but left out."""
    squares = np.where(m == 1, x, 0.0) ** 2
    return np.sum(squares, axis=reduced, keepdims=True) / n


def frn_forward(x, axis, gamma, beta, epsilon, eps_learned=None, mask=None):
    """`gamma * x / sqrt(mean(x^2, spatial) + eps) + beta`, float64; with a
    `mask`, the mean is over the masked-in positions."""
    x = np.asarray(x, np.float64)
    reduced, _, shape = _axes(x, axis)
    nu2 = _mean_square(x, *_counted(x, axis, reduced, mask), reduced)
    eps = epsilon + (0.0 if eps_learned is None else abs(eps_learned))
    return gamma.reshape(shape) * x / np.sqrt(nu2 + eps) + beta.reshape(shape)


def frn_backward(x, axis, gamma, beta, epsilon, eps_learned, upstream,
                 mask=None):
    """Returns `dict(x=, gamma=, beta=, eps_learned=)` gradients."""
    x = np.asarray(x, np.float64)
    reduced, not_channel, shape = _axes(x, axis)
    m, n = _counted(x, axis, reduced, mask)
    nu2 = _mean_square(x, m, n, reduced)
    eps = epsilon + (0.0 if eps_learned is None else abs(eps_learned))
    r = 1.0 / np.sqrt(nu2 + eps)
    g = gamma.reshape(shape)
    w = upstream
    s = np.sum(w * g * x, axis=reduced, keepdims=True)
    grads = {
        # d/dx of g*x*r(x): the direct term and the term through nu2.
        "x": g * r * w - m * x * r**3 * s / n,
        "gamma": np.sum(w * x * r, axis=not_channel),
        "beta": np.sum(w, axis=not_channel),
    }
    if eps_learned is not None:
        d_eps = np.sum(-0.5 * s * r**3)
        grads["eps_learned"] = d_eps * np.sign(eps_learned)
    return grads


def frn_tlu_forward(x, axis, gamma, beta, epsilon, eps_learned, tau,
                    mask=None):
    """`max(frn_forward(...), tau)`, float64."""
    y = frn_forward(x, axis, gamma, beta, epsilon, eps_learned, mask)
    return tlu_forward(y, axis, tau)


def frn_tlu_backward(x, axis, gamma, beta, epsilon, eps_learned, tau,
                     upstream, mask=None):
    """The gradients of FRN followed by TLU, by the chain rule through
    `tlu_backward` and `frn_backward`: `frn_backward`'s and `tau`."""
    y = frn_forward(x, axis, gamma, beta, epsilon, eps_learned, mask)
    tlu = tlu_backward(y, axis, tau, None, upstream)
    frn = frn_backward(x, axis, gamma, beta, epsilon, eps_learned, tlu["x"],
                       mask)
    return {**frn, "tau": tlu["tau"]}


def tlu_forward(x, axis, tau, alpha=None):
    """`max(x, tau)` or `max(x, alpha * x + tau)`, float64."""
    x = np.asarray(x, np.float64)
    _, _, shape = _axes(x, axis)
    t = tau.reshape(shape)
    if alpha is None:
        return np.maximum(x, t)
    return np.maximum(x, alpha.reshape(shape) * x + t)


def tlu_backward(x, axis, tau, alpha, upstream):
    """Returns `dict(x=, tau=[, alpha=])`. Ties go to `x`, as in
    TensorFlow's gradient of `maximum`."""
    x = np.asarray(x, np.float64)
    _, not_channel, shape = _axes(x, axis)
    t = tau.reshape(shape)
    a = 0.0 if alpha is None else alpha.reshape(shape)
    other = a * x + t
    x_wins = x >= other
    w = upstream
    grads = {
        "x": np.where(x_wins, w, w * a),
        "tau": np.sum(np.where(x_wins, 0.0, w), axis=not_channel),
    }
    if alpha is not None:
        grads["alpha"] = np.sum(np.where(x_wins, 0.0, w * x), axis=not_channel)
    return grads


# Proxy Normalization (Labatie et al. 2021) ----------------------------------

def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def normal_cdf(x):
    return 0.5 * (1.0 + _erf(np.asarray(x, np.float64) / math.sqrt(2.0)))


def normal_pdf(x):
    x = np.asarray(x, np.float64)
    return np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)


def midpoint_normal_quantiles(n):
    """`Phi^-1((i + 1/2) / n)` by bisection on the CDF (not the layer's
    `statistics.NormalDist`)."""
    p = (np.arange(n) + 0.5) / n
    lo, hi = np.full(n, -10.0), np.full(n, 10.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = normal_cdf(mid) < p
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


ACTIVATIONS = {
    "relu": lambda t: np.maximum(t, 0.0),
    "gelu": lambda t: t * normal_cdf(t),
    "silu": lambda t: t / (1.0 + np.exp(-t)),
    "tanh": np.tanh,
}


def proxy_moments(activation, gamma, beta, proxy_scale, proxy_shift, n):
    """Mean and variance of `phi(gamma * ((1 + s) r + b) + beta)` over the
    `n` midpoint normal quantiles `r`, per channel."""
    r = midpoint_normal_quantiles(n)[:, None]
    z = ACTIVATIONS[activation](gamma * ((1 + proxy_scale) * r + proxy_shift)
                                + beta)
    return z.mean(axis=0), z.var(axis=0)


def relu_normal_moments(mu, sigma):
    """Exact mean and variance of relu(Z), Z ~ N(mu, sigma^2)."""
    a = mu / sigma
    mean = mu * normal_cdf(a) + sigma * normal_pdf(a)
    second = (mu**2 + sigma**2) * normal_cdf(a) + mu * sigma * normal_pdf(a)
    return mean, second - mean**2


def proxy_norm_forward(x, axis, activation, gamma, beta, proxy_scale,
                       proxy_shift, epsilon, n):
    """PN-Act: `(phi(gamma x + beta) - m) / sqrt(v + eps)`, float64."""
    x = np.asarray(x, np.float64)
    _, _, shape = _axes(x, axis)
    mean, var = proxy_moments(activation, gamma, beta, proxy_scale,
                              proxy_shift, n)
    z = ACTIVATIONS[activation](gamma.reshape(shape) * x + beta.reshape(shape))
    return (z - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + epsilon)
