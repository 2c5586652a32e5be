"""A small public-API harness for the layer tests (keras.src.testing is
private): shapes to test, random inputs, outputs and gradients via TF."""

import tensorflow as tf

# (input shape, channel axis): every supported rank, both data formats. The
# channel count (6) differs from every other dimension so that a wrong axis
# cannot pass by accident.
SHAPES_AND_AXES = [
    ((4, 6), -1),  # after Dense: N = 1
    ((4, 6), 1),
    ((3, 5, 6), -1),  # Conv1D, channels-last
    ((3, 6, 5), 1),  # Conv1D, channels-first
    ((2, 5, 4, 6), -1),  # Conv2D NHWC
    ((2, 6, 5, 4), 1),  # Conv2D NCHW
    ((2, 3, 4, 5, 6), -1),  # Conv3D NDHWC
    ((2, 6, 3, 4, 5), 1),  # Conv3D NCDHW
]


def ids(shapes_and_axes):
    return [f"{shape}-axis{axis}" for shape, axis in shapes_and_axes]


def outputs_and_gradients(layer, x, upstream):
    """Returns the layer's output and the gradients of
    `sum(upstream * layer(x))` w.r.t. `x` and each trainable weight (by
    weight name)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float64) * upstream)
    weights = layer.trainable_weights
    grads = tape.gradient(loss, [x] + [w.value for w in weights])
    by_name = {"x": grads[0].numpy()}
    for w, g in zip(weights, grads[1:]):
        by_name[w.name] = g.numpy()
    return y.numpy(), by_name
