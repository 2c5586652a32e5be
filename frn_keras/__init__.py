"""frn_keras: batch-independent normalization layers for Keras 3.

`FilterResponseNormalization` and `TLU` (Singh & Krishnan, 2020) as Keras 3
layers, `FilterResponseNormalizationTLU` (the two fused, and
`fuse_frn_tlu` to fuse a model's pairs), registered for serialization under
the package name `frn_keras`, `fold_frn_offsets` (FRN offsets folded into
the layers that read them, for serving), and `ProxyNormalization` (Labatie
et al., 2021; patented, opt-in only).
"""

__version__ = "0.1.0"

from frn_keras import layers
from frn_keras import migration
from frn_keras import models
from frn_keras.conversion import convert_to_frn
from frn_keras.fusion import fuse_frn_tlu
from frn_keras.offset_folding import fold_frn_offsets
from frn_keras.layers import TLU
from frn_keras.layers import FilterResponseNormalization
from frn_keras.layers import FilterResponseNormalizationTLU
from frn_keras.layers import ProxyNormalization

__all__ = [
    "convert_to_frn",
    "FilterResponseNormalization",
    "FilterResponseNormalizationTLU",
    "fold_frn_offsets",
    "fuse_frn_tlu",
    "ProxyNormalization",
    "TLU",
    "layers",
    "migration",
    "models",
    "__version__",
]
