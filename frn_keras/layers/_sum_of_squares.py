"""`sum(x^2)` over some axes, in one pass over memory where the backend
allows it.

TensorFlow's CPU kernels compute `sum(square(x))` in two passes (the square
is written to memory, then reduced); its Euclidean-norm reduction reads `x`
once, so outside XLA the sum is taken as the squared norm (about one ulp of
rounding more). In a served graph, which runs each op as its own kernel,
FRN's reduction then takes about 0.6x the time (46 against 78 us at
32x32x32x16; benchmarks/README.md, "Serving latency": `graph_ops.py`). XLA
has no Euclidean-norm kernel, and fuses `sum(square(x))` into its loops
(`_staged_sum` makes sure of that on the CPU).
"""

from keras import backend
from keras import ops

from frn_keras.layers._staged_sum import staged_sum
from frn_keras.layers._xla_context import compiled_by_xla


def sum_of_squares(x, axes):
    """`sum(x^2)` over `axes`, kept as size-1 axes; `x^2` if `axes` is
    empty."""
    if not axes:
        return ops.square(x)
    if backend.backend() != "tensorflow" or compiled_by_xla():
        return staged_sum(ops.square(x), axes)
    import tensorflow as tf

    @ops.custom_gradient
    def squared_norm(x):
        norm = tf.math.reduce_euclidean_norm(x, axis=axes, keepdims=True)

        def grad(*args, upstream=None):
            # The gradient of sum(x^2). TensorFlow's for the norm, x / norm,
            # is NaN where a channel is all zeros, and a second-order
            # gradient (a gradient penalty) would reach it.
            d = args[-1] if upstream is None else upstream
            return 2 * x * d

        return ops.square(norm), grad

    return squared_norm(x)
