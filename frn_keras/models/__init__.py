"""Model zoo: ResNets whose normalization is chosen by name."""

from frn_keras.models.norms import NO_WEIGHT_DECAY
from frn_keras.models.norms import CappedGroupNormalization
from frn_keras.models.norms import NormAct
from frn_keras.models.norms import available_norms
from frn_keras.models.norms import norm_act
from frn_keras.models.norms import register_norm_act
from frn_keras.models.resnet_cifar import resnet_cifar
from frn_keras.models.resnet_v2 import resnet_v2_50

__all__ = [
    "NO_WEIGHT_DECAY",
    "CappedGroupNormalization",
    "NormAct",
    "available_norms",
    "norm_act",
    "register_norm_act",
    "resnet_cifar",
    "resnet_v2_50",
]
