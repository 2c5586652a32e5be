"""The dtype the layers compute their statistics in."""

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
