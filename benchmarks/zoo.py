"""The models the benchmarks compare, by name (shared by the scripts)."""

from frn_keras import models

BUILDERS = {
    "resnet20": lambda norm, size: models.resnet_cifar(
        20, norm=norm, input_shape=(size, size, 3)),
    "resnet_v2_50": lambda norm, size: models.resnet_v2_50(
        norm=norm, input_shape=(size, size, 3)),
}
