"""The dtypes the layers compute in: their statistics' and their policy's."""

from keras import backend


def statistics_dtype(input_dtype):
    """`"float64"` for float64 inputs, else `"float32"` (float16 and
    bfloat16 inputs are upcast).

    Not `keras.backend.result_type(input_dtype, "float32")`: it gives
    float32 for float64 under the JAX and PyTorch backends.
    """
    if backend.standardize_dtype(input_dtype) == "float64":
        return "float64"
    return "float32"


def check_float_policy(layer):
    """Raises `ValueError` unless `layer`'s dtype policy computes and stores
    its weights in floating point: an integer policy would truncate the
    normalized values (FRN's output to a few integers around 0) and make
    the weights untrainable."""
    policy = layer.dtype_policy
    for dtype in (policy.compute_dtype, policy.variable_dtype):
        if not backend.is_float_dtype(dtype):
            raise ValueError(
                f"Layer '{layer.name}' computes in floating point only; "
                "pass a float dtype or policy (e.g. 'float32', "
                f"'mixed_float16'). Received: dtype={policy.name!r}"
            )
