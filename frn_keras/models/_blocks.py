"""Pieces shared by the model builders."""

import numbers

import keras

DATA_FORMATS = ("channels_last", "channels_first")


def check_data_format(data_format):
    """The channel axis of `data_format` (-1 or 1); `ValueError` naming
    any other value."""
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"Argument `data_format` must be one of {DATA_FORMATS}. "
            f"Received: data_format={data_format!r}"
        )
    return -1 if data_format == "channels_last" else 1


def check_num_classes(num_classes):
    """`num_classes` as an `int`; `ValueError` unless it is an integer
    >= 1."""
    if not _is_size(num_classes):
        raise ValueError(
            "Argument `num_classes` must be an integer >= 1. "
            f"Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def check_input_shape(input_shape):
    """An NHWC shape of RGB pixels, `(height, width, 3)`; the spatial sizes
    may be `None` (any size)."""
    try:
        height, width, channels = input_shape
    except (TypeError, ValueError):
        height = width = channels = None
    if channels != 3 or not all(size is None or _is_size(size)
                                for size in (height, width)):
        raise ValueError(
            "Argument `input_shape` must be `(height, width, 3)`: RGB pixels "
            "(the model standardizes each of the 3 channels), sizes >= 1 or "
            f"None. Received: input_shape={input_shape!r}"
        )
    return tuple(None if size is None else int(size)
                 for size in (height, width)) + (3,)


def _is_size(value):
    return (isinstance(value, numbers.Integral)
            and not isinstance(value, bool) and value >= 1)


def preprocessed_images(inputs, mean, std, data_format):
    """Raw pixels (0..255, NHWC) to standardized images in `data_format`.

    The preprocessing lives in the model so that a served model takes raw
    pixels (see `frn_keras.export`).
    """
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = keras.layers.Normalization(
        mean=list(mean), variance=[s * s for s in std], name="standardize"
    )(x)
    if data_format == "channels_first":
        x = keras.layers.Permute((3, 1, 2), name="to_channels_first")(x)
    return x


def conv(filters, kernel_size, strides=1, data_format="channels_last",
         name=None):
    """Bias-free 'same' convolution with He-normal initialization."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same",
        use_bias=False, kernel_initializer="he_normal",
        data_format=data_format, name=name,
    )


def classifier(x, num_classes, data_format):
    """Global average pooling, then a `Dense` layer of `num_classes`
    logits (float32 under a mixed policy)."""
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format,
                                            name="pool")(x)
    # Logits in float32 under mixed precision, for a stable softmax / loss.
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    return keras.layers.Dense(
        num_classes, dtype="float32" if mixed else None, name="logits"
    )(x)
