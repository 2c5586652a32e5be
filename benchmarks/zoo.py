"""The models the benchmarks compare, by name (shared by the scripts)."""

from frn_keras import fuse_frn_tlu
from frn_keras import models

BUILDERS = {
    "resnet20": lambda norm, size: models.resnet_cifar(
        20, norm=norm, input_shape=(size, size, 3)),
    "resnet_v2_50": lambda norm, size: models.resnet_v2_50(
        norm=norm, input_shape=(size, size, 3)),
}


def build_model(model_name, norm, image_size):
    """`norm` is a name of the `frn_keras.models` registry, or `"frn_fused"`:
    the `"frn"` model with its FRN -> TLU pairs fused into
    `FilterResponseNormalizationTLU` (`frn_keras.fuse_frn_tlu`)."""
    if norm == "frn_fused":
        return fuse_frn_tlu(BUILDERS[model_name]("frn", image_size))
    return BUILDERS[model_name](norm, image_size)
