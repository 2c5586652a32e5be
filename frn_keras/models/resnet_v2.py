"""ResNetV2-50 (pre-activation) for ImageNet, normalization by name."""

import keras

from frn_keras.models._blocks import check_data_format
from frn_keras.models._blocks import check_input_shape
from frn_keras.models._blocks import check_num_classes
from frn_keras.models._blocks import classifier
from frn_keras.models._blocks import conv
from frn_keras.models._blocks import preprocessed_images
from frn_keras.models.norms import norm_act

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet_v2_50(
    num_classes=1000,
    norm="frn",
    data_format="channels_last",
    input_shape=(224, 224, 3),
    name=None,
):
    """ResNetV2-50, the FRN paper's main architecture.

    The pre-activation ResNet of He et al. (2016b): a 7x7/2 convolution and
    3x3/2 max pooling, then [3, 4, 6, 3] bottleneck blocks with 64, 128, 256
    and 512 filters (x4 at the output; stride 2 in the 3x3 convolution of
    the first block of stages 2-4). Each block computes
    `norm-act` of its input once, feeds it to both the residual branch
    `conv1x1-norm-act-conv3x3-norm-act-conv1x1` and, where the shape changes,
    a 1x1 projection shortcut. A final `norm-act`, global average pooling and
    a linear classifier end the network. With `norm="frn"` every norm + act
    pair is FRN + TLU.

    Args:
        num_classes: Number of logits, >= 1. Defaults to `1000`.
        norm: A name from `frn_keras.models.available_norms()`.
            Defaults to `"frn"`.
        data_format: `"channels_last"` or `"channels_first"` for the
            activations (the input is always NHWC pixels).
            Defaults to `"channels_last"`.
        input_shape: NHWC shape of the raw-pixel input (0..255); height
            and width may be `None` (any size). Defaults to `(224, 224, 3)`.
        name: Model name. Defaults to `f"resnet_v2_50_{norm}"`.

    Returns:
        A Functional `keras.Model` from raw pixels to logits.

    Raises:
        ValueError: For an unknown `norm` or `data_format`, `num_classes`
            < 1, or an `input_shape` other than `(height, width, 3)`.

    Reference:

    - [He et al., 2016](https://arxiv.org/abs/1603.05027), "Identity
      Mappings in Deep Residual Networks".
    """
    axis = check_data_format(data_format)
    num_classes = check_num_classes(num_classes)
    input_shape = check_input_shape(input_shape)
    layers = norm_act(norm)

    inputs = keras.Input(input_shape, name="images")
    x = preprocessed_images(inputs, IMAGENET_MEAN, IMAGENET_STD, data_format)
    x = conv(64, 7, 2, data_format, name="stem_conv")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="same",
                                  data_format=data_format, name="stem_pool")(x)
    for stage, (filters, blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3))
    ):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck_block(x, filters, strides, layers, axis,
                                  data_format,
                                  f"stage{stage + 1}_block{block + 1}")
    x = layers.norm(axis)(x)
    x = layers.act(axis)(x)
    outputs = classifier(x, num_classes, data_format)
    return keras.Model(inputs, outputs, name=name or f"resnet_v2_50_{norm}")


def _bottleneck_block(x, filters, strides, layers, axis, data_format, name):
    preact = layers.act(axis)(layers.norm(axis)(x))
    shortcut = x
    if strides != 1 or x.shape[axis] != 4 * filters:
        shortcut = conv(4 * filters, 1, strides, data_format,
                        name=f"{name}_shortcut_conv")(preact)
    x = conv(filters, 1, 1, data_format, name=f"{name}_conv1")(preact)
    x = layers.act(axis)(layers.norm(axis)(x))
    x = conv(filters, 3, strides, data_format, name=f"{name}_conv2")(x)
    x = layers.act(axis)(layers.norm(axis)(x))
    x = conv(4 * filters, 1, 1, data_format, name=f"{name}_conv3")(x)
    return keras.layers.Add(name=f"{name}_add")([shortcut, x])
