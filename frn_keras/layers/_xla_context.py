"""Whether a TensorFlow trace will be compiled by XLA: the layers take
TensorFlow-kernel-specific forms (`_sum_of_squares`, `_wide_broadcast`)
only where it will not."""


def compiled_by_xla():
    """Whether the TensorFlow graph being traced will be compiled by XLA
    (a `jit_compile=True` function, as Keras' `jit_compile=True` builds, or
    a TPU computation). Read through TensorFlow's internal marker, as its
    own ops do; if that is ever missing, assume XLA (the plain forms are
    correct everywhere)."""
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util
        return control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph())
    except (ImportError, AttributeError):
        return True
