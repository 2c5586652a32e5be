"""ResNet-20/32/56/110 for CIFAR (He et al. 2016), normalization by name."""

import keras

from frn_keras.models._blocks import check_data_format
from frn_keras.models._blocks import check_input_shape
from frn_keras.models._blocks import check_num_classes
from frn_keras.models._blocks import classifier
from frn_keras.models._blocks import conv
from frn_keras.models._blocks import preprocessed_images
from frn_keras.models.norms import norm_act

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def resnet_cifar(
    depth=20,
    num_classes=10,
    norm="frn",
    data_format="channels_last",
    input_shape=(32, 32, 3),
    name=None,
):
    """The original (post-activation) CIFAR ResNet of He et al. (2016).

    A 3x3 convolution with 16 filters, three stages of `(depth - 2) / 6`
    basic blocks with 16, 32 and 64 filters (stride 2 at the start of the
    second and third), global average pooling and a linear classifier. Each
    block is `conv-norm-act-conv-norm`, added to the shortcut, then `act`;
    where the shape changes the shortcut is a 1x1 convolution + norm (He et
    al.'s option B). With `norm="frn"` every BatchNorm + ReLU pair becomes
    FRN + TLU, as in the FRN paper.

    Args:
        depth: 6n + 2: 20, 32, 44, 56 or 110. Defaults to `20`.
        num_classes: Number of logits, >= 1. Defaults to `10`.
        norm: A name from `frn_keras.models.available_norms()`
            (`"frn"`, `"bn"`, `"gn"`, `"ln"`, ...). Defaults to `"frn"`.
        data_format: `"channels_last"` or `"channels_first"`: the layout of
            the activations inside the model (the input is always NHWC
            pixels). Defaults to `"channels_last"`.
        input_shape: NHWC shape of the raw-pixel input (values 0..255);
            height and width may be `None` (any size).
            Defaults to `(32, 32, 3)`.
        name: Model name. Defaults to `f"resnet{depth}_{norm}"`.

    Returns:
        A Functional `keras.Model` from raw pixels to logits.

    Raises:
        ValueError: For an unknown `norm` or `data_format`, a `depth` that
            is not 6n + 2, `num_classes` < 1, or an `input_shape` other
            than `(height, width, 3)`.

    Reference:

    - [He et al., 2016](https://arxiv.org/abs/1512.03385), "Deep Residual
      Learning for Image Recognition", section 4.2.
    """
    blocks_per_stage = cifar_blocks_per_stage(depth)
    axis = check_data_format(data_format)
    num_classes = check_num_classes(num_classes)
    input_shape = check_input_shape(input_shape)
    layers = norm_act(norm)

    inputs = keras.Input(input_shape, name="images")
    x = preprocessed_images(inputs, CIFAR_MEAN, CIFAR_STD, data_format)
    x = conv(16, 3, data_format=data_format, name="stem_conv")(x)
    x = layers.norm(axis)(x)
    x = layers.act(axis)(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, layers, axis, data_format,
                             f"stage{stage + 1}_block{block + 1}")
    outputs = classifier(x, num_classes, data_format)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}_{norm}")


def cifar_blocks_per_stage(depth):
    """Returns `n` for a CIFAR ResNet of `depth = 6n + 2` (n >= 1).

    Raises:
        ValueError: if `depth` is not such an integer.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or (
        depth < 8 or (depth - 2) % 6
    ):
        raise ValueError(
            "Argument `depth` must be 6n + 2 with n >= 1 (20, 32, 44, 56, "
            f"110). Received: depth={depth!r}"
        )
    return (depth - 2) // 6


def _basic_block(x, filters, strides, layers, axis, data_format, name):
    shortcut = x
    if strides != 1 or x.shape[axis] != filters:
        shortcut = conv(filters, 1, strides, data_format,
                        name=f"{name}_shortcut_conv")(x)
        shortcut = layers.norm(axis)(shortcut)
    x = conv(filters, 3, strides, data_format, name=f"{name}_conv1")(x)
    x = layers.norm(axis)(x)
    x = layers.act(axis)(x)
    x = conv(filters, 3, 1, data_format, name=f"{name}_conv2")(x)
    x = layers.norm(axis)(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.act(axis)(x)
