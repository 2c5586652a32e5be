"""The frn_keras layers."""

from frn_keras.layers.filter_response_normalization import (
    FilterResponseNormalization,
)
from frn_keras.layers.filter_response_normalization_tlu import (
    FilterResponseNormalizationTLU,
)
from frn_keras.layers.proxy_normalization import ProxyNormalization
from frn_keras.layers.tlu import TLU

__all__ = [
    "FilterResponseNormalization",
    "FilterResponseNormalizationTLU",
    "ProxyNormalization",
    "TLU",
]
