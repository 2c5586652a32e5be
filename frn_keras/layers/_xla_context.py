"""Whether a TensorFlow trace will be compiled by XLA, and for which
device: the layers take TensorFlow-kernel-specific forms
(`_sum_of_squares`, `_wide_broadcast`) only where it will not, and
XLA:CPU-specific ones (`_activation_boundary`, `_staged_sum`) only where it
will."""

from keras import backend


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


def compiled_by_xla_for_cpu():
    """Whether the graph being traced will be compiled by XLA for the CPU:
    a TensorFlow-backend XLA trace on a machine with no GPU or TPU visible
    to TensorFlow (on one that has them, Keras places the computation
    there)."""
    if backend.backend() != "tensorflow" or not compiled_by_xla():
        return False
    import tensorflow as tf

    return not (tf.config.list_logical_devices("GPU")
                or tf.config.list_logical_devices("TPU"))
