"""FRN's forward pass with an analytic backward pass.

Autodiff of `gamma * x * rsqrt(mean(x^2) + eps) + beta` builds a long chain
of elementwise and reduction ops. The analytic gradient needs one reduction,
`sum(dy * x)` per sample and channel, and one elementwise pass:

    r  = rsqrt(nu2 + eps),  s = gamma * r,  S = sum over spatial of dy * x
    dx = s * dy - x * (s * r^2 * S / N)
    dgamma = sum over batch of r * S,   dbeta = sum of dy
    d eps_learned = sign(eps_learned) * sum(-gamma * S * r^3 / 2)

With a TLU fused in (`z = max(y, tau)`), the TLU's gradient is a mask on dy:
`dy = where(y >= tau, dz, 0)` (ties go to y, as in TensorFlow's gradient of
`maximum`) and `dtau = sum(dz) - sum(dy)`, where `sum(dy)` is dbeta's sum.
One custom gradient over both lets XLA read x and dz in the same loops as
FRN's own reductions instead of materializing the masked dy.

With a Keras mask (padded sequences), only the valid positions count:
`counted = where(mask, x, 0)`, `nu2 = sum(counted^2) / N` with N their
number per sample (at least 1), and dx's second term is
`counted * (s * r^2 * S / N)`: padded positions do not reach nu2. S,
dgamma, dbeta and d eps_learned keep their form, as every position is
normalized, padded ones too.

Outside XLA, the elementwise forward pass of a channels-last input with few
channels runs on a wide view of `x` (`_wide_broadcast`), where TensorFlow
broadcasts the per-channel tensors faster.

(N is the number of spatial positions; `tests/numpy_reference.py` has the
same formulas in float64 NumPy, checked against finite differences.)
"""

from keras import ops

from frn_keras.layers._activation_boundary import computed_once
from frn_keras.layers._custom_gradient import custom_gradient
from frn_keras.layers._staged_sum import staged_sum
from frn_keras.layers._sum_of_squares import sum_of_squares
from frn_keras.layers._wide_broadcast import tile_channels
from frn_keras.layers._wide_broadcast import widen
from frn_keras.layers._wide_broadcast import widening_factor


def filter_response_normalize(x, gamma, beta, eps_learned, epsilon, axes,
                              tau=None, mask=None):
    """FRN of `x` over `axes` (then `max(., tau)` if `tau` is given), with a
    custom gradient.

    Args:
        x: Input tensor (float32 or wider).
        gamma, beta: Per-channel tensors shaped to broadcast against `x`, or
            `None` (no scale / no offset).
        eps_learned: Tensor of shape `(1,)`, or `None`.
        epsilon: Python float > 0.
        axes: Tuple of the spatial axes (may be empty: N = 1).
        tau: Per-channel TLU threshold shaped like `gamma`, or `None`.
        mask: Boolean tensor shaped like `x` with a size-1 channel axis, or
            `None`: the positions that count in the statistics.
    """
    weights = (("gamma", gamma), ("beta", beta), ("eps_learned", eps_learned),
               ("tau", tau))
    names = [name for name, value in weights if value is not None]
    constants = () if mask is None else (mask,)

    # Channels-last (batch, positions, C): broadcast over a wide last axis
    # outside XLA (see _wide_broadcast).
    k = widening_factor(x.shape) if axes == (1,) and len(x.shape) == 3 \
        else 1

    def normalize(x, p, mask):
        """`(counted, n, r, y, z)` of the forward pass, `p` the weights by
        name."""
        eps = epsilon
        if "eps_learned" in p:
            eps = eps + ops.abs(p["eps_learned"])
        # `where`, not a product with the mask, whose 0 * inf would be NaN.
        counted = x if mask is None else ops.where(mask, x, 0)
        n = _count(x, axes, mask)
        r = ops.rsqrt(sum_of_squares(counted, axes) / n + eps)
        s = r * p["gamma"] if "gamma" in p else r
        y, z = _scale_offset_threshold(x, s, p.get("beta"), p.get("tau"), k)
        return counted, n, r, y, z

    def forward(inputs, constants):
        x, *params = inputs
        mask = constants[0] if constants else None
        p = dict(zip(names, params))
        counted, n, r, y, z = normalize(x, p, mask)
        if "tau" in p:
            z = computed_once(z, p["tau"])
        # What the backward pass reads and cannot take from the inputs, none
        # of it the output (which PyTorch's Function could then not return).
        residuals = (r,)
        if mask is not None:
            residuals += (counted, n)
        if "tau" in p:
            residuals += (y,)
        return z, residuals

    def backward(dz, inputs, constants, residuals):
        x, *params = inputs
        mask = constants[0] if constants else None
        p = dict(zip(names, params))
        if 0 in x.shape:
            # An empty input: every gradient is a sum over nothing. (The
            # formulas below would be 0 too, but TensorFlow's graph
            # optimizer crashes the process (SIGFPE) on `s * dy` when `dy`
            # is a constant of ones with a zero size.)
            return (ops.zeros_like(x),
                    *(ops.zeros_like(p[name]) for name in names))
        r, *rest = residuals
        if mask is None:
            counted, n = x, _positions(x, axes)
        else:
            counted, n = rest.pop(0), rest.pop(0)
        y = rest.pop(0) if "tau" in p else None
        s = r * p["gamma"] if "gamma" in p else r
        return _backward(dz, x, p, counted, r, s, y, n, axes)

    inputs = (x, *(value for _, value in weights if value is not None))
    return custom_gradient(forward, backward)(inputs, constants)


def _backward(dz, x, p, counted, r, s, y, n, axes):
    """The gradients w.r.t. `x` and each weight in `p` (in `p`'s order),
    given the upstream gradient `dz` and the forward pass's values (see
    the module's docstring for the formulas)."""
    dy = ops.where(y >= p["tau"], dz, 0) if "tau" in p else dz
    dy_x = _spatial_sum(dy * x, axes)
    dx = s * dy - counted * (s * ops.square(r) * dy_x / n)
    grads = {}
    batch_and_spatial = (0, *axes)
    if "gamma" in p:
        grads["gamma"] = ops.sum(r * dy_x, axis=0, keepdims=True)
    if "beta" in p:
        grads["beta"] = ops.sum(dy, axis=batch_and_spatial, keepdims=True)
    if "eps_learned" in p:
        d_eps = ops.sum(-0.5 * s * ops.square(r) * dy_x)
        grads["eps_learned"] = ops.reshape(
            d_eps, (1,)) * ops.sign(p["eps_learned"])
    if "tau" in p:
        # sum(dz - dy) as sum(dz) - sum(dy), reusing dbeta's sum: XLA then
        # reduces dz alone, one pass over x fewer.
        dy_sum = grads["beta"] if "beta" in p else ops.sum(
            dy, axis=batch_and_spatial, keepdims=True)
        grads["tau"] = ops.sum(dz, axis=batch_and_spatial,
                               keepdims=True) - dy_sum
    # Each gradient in its weight's own shape ((C,) broadcasts).
    return (dx, *(ops.reshape(grads[name], ops.shape(value))
                  for name, value in p.items()))


def _spatial_sum(t, axes):
    """The sum over the spatial `axes`, kept as size-1 axes; with none
    (rank-2 input: N = 1) the sum is `t` itself."""
    return staged_sum(t, axes) if axes else t


def _count(x, axes, mask):
    """N, the number of positions that count in the statistics: all of them
    (`_positions`), or those `mask` keeps, per sample (at least 1)."""
    if mask is None:
        return _positions(x, axes)
    return ops.maximum(_spatial_sum(ops.cast(mask, x.dtype), axes), 1)


def _positions(x, axes):
    """N, the number of positions summed over: a Python number, or a
    tensor where a spatial size is unknown until run time (fully
    convolutional). At least 1, as for a sample that its mask leaves
    empty: with no positions the sum of squares is 0, not 0 / 0 = NaN
    (which would reach gamma's gradient)."""
    n = 1
    dynamic = False
    for axis in axes:
        size = x.shape[axis]
        if size is None:
            size = ops.cast(ops.shape(x)[axis], x.dtype)
            dynamic = True
        n = n * size
    return ops.maximum(n, 1) if dynamic else max(n, 1)


def _scale_offset_threshold(x, s, beta, tau, k):
    """`(y, z)`: `y = x * s (+ beta)` and `z = max(y, tau)` (`z` is `y`
    without `tau`), computed on `widen(x, k)` when `k > 1`."""
    if k > 1:
        shape = x.shape
        x, s = widen(x, k), tile_channels(s, k)
        beta, tau = (None if v is None else tile_channels(v, k)
                     for v in (beta, tau))
    y = x * s
    if beta is not None:
        y = y + beta
    z = y if tau is None else ops.maximum(y, tau)
    if k > 1:
        y = ops.reshape(y, (-1, *shape[1:]))
        z = y if tau is None else ops.reshape(z, (-1, *shape[1:]))
    return y, z
