"""TLU's `max(x, tau)` with a hand-written gradient.

Autodiff of `maximum` writes two masked copies of the incoming gradient,
`where(x >= tau, dz, 0)` for `x` and `where(x < tau, dz, 0)` to be summed
into `dtau`, and XLA:CPU materializes the second before reducing it. This
gradient writes `dtau` as `sum(dz) - sum(dx)` instead. In a residual network
the layer before a TLU that follows an addition is FRN, whose `dbeta` is the
same `sum(dx)`, so XLA computes that sum once, and `dz` is reduced as it is
(benchmarks/README.md, "Traffic in the optimized HLO").

Ties `x == tau` send the gradient to `x`, as TensorFlow's gradient of
`maximum` does. The sums are taken in float32 for float16 / bfloat16 inputs.
Outside XLA, float32 channels-last inputs with few channels are computed on
a wide view (`_wide_broadcast`), where TensorFlow broadcasts `tau` faster.
"""

from keras import backend
from keras import ops

from frn_keras.layers._activation_boundary import computed_once
from frn_keras.layers._custom_gradient import custom_gradient
from frn_keras.layers._dtypes import statistics_dtype
from frn_keras.layers._wide_broadcast import tile_channels
from frn_keras.layers._wide_broadcast import widen
from frn_keras.layers._wide_broadcast import widening_factor


def thresholded_linear(x, tau, channel_axis):
    """`max(x, tau)` with the gradient above.

    Args:
        x: Input tensor.
        tau: Per-channel threshold in `x`'s dtype, shaped to broadcast
            against `x`.
        channel_axis: Non-negative index of the channel axis of `x`.
    """
    # float16 / bfloat16 stay narrow: the tile's gradient would add tau's
    # k partial gradients in that dtype.
    k = 1
    if channel_axis == len(x.shape) - 1 and statistics_dtype(
            x.dtype) == backend.standardize_dtype(x.dtype):
        k = widening_factor(x.shape)
    if k == 1:
        return _thresholded_linear(x, tau, channel_axis)
    # On the wide view (see _wide_broadcast). The gradients of the reshape
    # and the tile sum the widened tau's k copies back into tau's shape.
    z = _thresholded_linear(widen(x, k), tile_channels(tau, k), 2)
    return ops.reshape(z, (-1, *x.shape[1:]))


def _thresholded_linear(x, tau, channel_axis):
    reduce_axes = tuple(i for i in range(len(x.shape)) if i != channel_axis)
    sum_dtype = statistics_dtype(x.dtype)

    def channel_sum(t):
        return ops.sum(ops.cast(t, sum_dtype), axis=reduce_axes, keepdims=True)

    def forward(inputs, constants):
        x, tau = inputs
        return computed_once(ops.maximum(x, tau), tau), ()

    def backward(dz, inputs, constants, residuals):
        x, tau = inputs
        dx = ops.where(x >= tau, dz, ops.zeros_like(dz))
        dtau = channel_sum(dz) - channel_sum(dx)
        return dx, ops.reshape(ops.cast(dtau, tau.dtype), ops.shape(tau))

    return custom_gradient(forward, backward)((x, tau), ())
