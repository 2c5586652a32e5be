"""The models the benchmarks compare, by name (shared by the scripts)."""

import keras

from frn_keras import TLU
from frn_keras import fuse_frn_tlu
from frn_keras import models

BUILDERS = {
    "resnet20": lambda norm, size: models.resnet_cifar(
        20, norm=norm, input_shape=(size, size, 3)),
    "resnet_v2_50": lambda norm, size: models.resnet_v2_50(
        norm=norm, input_shape=(size, size, 3)),
}


def build_model(model_name, norm, image_size):
    """`norm` is a name of the `frn_keras.models` registry, `"frn_fused"`:
    the `"frn"` model with its FRN -> TLU pairs fused into
    `FilterResponseNormalizationTLU` (`frn_keras.fuse_frn_tlu`), or
    `"frn_fused_relu"`: an ablation, not a model to train, with the TLUs that
    `"frn_fused"` leaves standalone (after residual additions) swapped for
    ReLU, to measure what those TLUs cost."""
    if norm == "frn_fused":
        return fuse_frn_tlu(BUILDERS[model_name]("frn", image_size))
    if norm == "frn_fused_relu":
        return keras.models.clone_model(
            build_model(model_name, "frn_fused", image_size),
            clone_function=_tlu_to_relu)
    return BUILDERS[model_name](norm, image_size)


def _tlu_to_relu(layer):
    if isinstance(layer, TLU):
        return keras.layers.ReLU(name=layer.name)
    return layer.__class__.from_config(layer.get_config())
