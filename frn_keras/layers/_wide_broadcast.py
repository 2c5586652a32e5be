"""Per-channel broadcasts over a wide last axis, for TensorFlow's kernels.

Outside XLA, TensorFlow's CPU kernels broadcast a per-channel vector against
a channels-last tensor slowly when the channels are few, the broadcast's
inner dimension: at 32x32x32x16, `x + beta[c]` takes about 4x the time of
a same-shape op, `max(x, tau[c])` 7-10x (`benchmarks/graph_ops.py`). The
same arithmetic on `x` viewed as `(batch, positions / k, k * channels)`,
with the vector tiled `k` times, has an inner dimension of `k * channels`
and runs about 1.6 to 2.5 times as fast there. The view is a reshape of
contiguous axes (no copy) and the tiled vectors are small. XLA fuses the
broadcasts into its loops either way, so a `jit_compile` trace keeps the
plain form, as do other backends.
"""

import math

from keras import backend
from keras import ops

from frn_keras.layers._xla_context import compiled_by_xla

# Only inputs this narrow are widened: in a served ResNetV2-50 (64 to 1024
# channels) the view saved nothing at batch 32 and its extra ops cost at
# batch 1 (benchmarks/README.md, "Serving latency": `wide_view.py`).
MAX_CHANNELS = 32
# The inner width to reach, chosen by timing widths of 128 to 2048 at the
# ResNet-20 and ResNet-50 shapes (exploratory timings; `graph_ops.py` and
# `wide_view.py` in benchmarks/ measure the view this gives).
MIN_WIDTH = 1024
# The per-sample scale of FRN is tiled too, at the cost of k / positions of
# a pass over x: k stays at most 1/16 of the positions.
MAX_TILE_FRACTION = 16


def widening_factor(shape):
    """The `k` to widen a channels-last tensor of `shape` by: the smallest
    divisor of its positions (the product of `shape[1:-1]`) with
    `k * channels >= MIN_WIDTH` and `k <= positions / MAX_TILE_FRACTION`.
    1 (no widening) when there is none, when there are more than
    `MAX_CHANNELS` channels or none (an empty tensor), when a position
    axis is unknown, when the trace is compiled by XLA, or when the
    backend is not TensorFlow."""
    channels = shape[-1]
    if len(shape) < 3 or None in shape[1:] or not 0 < channels <= MAX_CHANNELS:
        return 1
    if backend.backend() != "tensorflow" or compiled_by_xla():
        return 1
    positions = math.prod(shape[1:-1])
    for k in range(-(-MIN_WIDTH // channels),
                   positions // MAX_TILE_FRACTION + 1):
        if positions % k == 0:
            return k
    return 1


def widen(x, k):
    """A channels-last `x` viewed as `(batch, positions / k, k * channels)`.
    """
    positions = math.prod(x.shape[1:-1])
    return ops.reshape(x, (-1, positions // k, k * x.shape[-1]))


def tile_channels(v, k):
    """A per-channel (or per-sample, per-channel) tensor, shaped to
    broadcast against a channels-last `x`, tiled to broadcast against
    `widen(x, k)`: `(b, 1, k * channels)`."""
    if len(v.shape) != 3:  # one op fewer where it is (b, 1, channels)
        v = ops.reshape(v, (-1, 1, v.shape[-1]))
    return ops.tile(v, (1, 1, k))
