"""The channel `axis` shared by the frn_keras layers: its validation, and
per-channel weights shaped to broadcast along it."""

import numbers

from keras import ops


def check_axis_argument(axis):
    """Checks the `axis` constructor argument (before the input is known).

    Returns:
        `axis` as a Python `int`.

    Raises:
        ValueError: if `axis` is not an integer or is the batch axis `0`.
    """
    if isinstance(axis, (list, tuple)):
        raise ValueError(
            "Argument `axis` is the single channel axis (as in "
            "keras.layers.BatchNormalization), not a list of axes to average "
            "over. TF Addons' `axis=[1, 2]` (the spatial axes of NHWC input) "
            "is `axis=-1` here; see `frn_keras.migration`. "
            f"Received: axis={axis!r}"
        )
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(
            "Argument `axis` must be a single integer, the channel axis. "
            f"Received: axis={axis!r}"
        )
    if axis == 0:
        raise ValueError(
            "Argument `axis` is the channel axis and cannot be the batch "
            "axis 0. Use -1 for channels-last or 1 for channels-first. "
            f"Received: axis={axis}"
        )
    return int(axis)


def resolve_channel_axis(axis, input_shape, layer_name):
    """Returns `(axis, channels)` with `axis` made non-negative.

    Args:
        axis: Integer channel axis, possibly negative.
        input_shape: Input shape including the batch dimension.
        layer_name: Name of the layer, for the error messages.

    Raises:
        ValueError: if the input rank is below 2, `axis` is out of range or
            resolves to the batch axis, or the channel dimension is unknown.
    """
    rank = len(input_shape)
    if rank < 2:
        raise ValueError(
            f"Layer '{layer_name}' expects an input of rank >= 2 "
            "(batch, ..., channels). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    if not -rank <= axis < rank:
        raise ValueError(
            f"Layer '{layer_name}': argument `axis` is out of range for an "
            f"input of rank {rank}. Received: axis={axis}, "
            f"input_shape={tuple(input_shape)}"
        )
    resolved = axis % rank
    if resolved == 0:
        raise ValueError(
            f"Layer '{layer_name}': argument `axis` resolves to the batch "
            f"axis 0 for an input of rank {rank}. Received: axis={axis}, "
            f"input_shape={tuple(input_shape)}"
        )
    channels = input_shape[resolved]
    if channels is None:
        raise ValueError(
            f"Layer '{layer_name}': the channel dimension (axis {axis}) must "
            "be known when the layer is built. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return resolved, channels


def broadcast_shape(rank, axis, channels):
    """Shape that broadcasts a per-channel `(channels,)` weight to the input."""
    shape = [1] * rank
    shape[axis] = channels
    return shape


def per_channel(weight, dtype, shape):
    """`weight` of shape `(channels,)` cast to `dtype` and reshaped to the
    broadcast `shape`; `None` stays `None` (an absent gamma or beta). With
    the channels last, `(channels,)` already broadcasts: no reshape op."""
    if weight is None:
        return None
    weight = ops.cast(weight, dtype)
    if all(d == 1 for d in shape[:-1]):
        return weight
    return ops.reshape(weight, shape)
