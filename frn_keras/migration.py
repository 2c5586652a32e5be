"""Migration from TensorFlow Addons' `FilterResponseNormalization` and `TLU`.

TF Addons (end-of-life) registered its layers as
`"Addons>FilterResponseNormalization"` and `"Addons>TLU"`. Its FRN `axis` was
the list of *spatial* axes to average over and had to be `[1, 2]` (4-D NHWC
input only); here `axis` is the *channel* axis, so a TF Addons FRN becomes
`FilterResponseNormalization(axis=-1)`. The math is the same:
`gamma * x * rsqrt(mean(x^2) + |epsilon| [+ |eps_learned|]) + beta`.

Configs: pass `TFA_CUSTOM_OBJECTS` to any Keras deserializer, e.g.

```python
model = keras.Sequential.from_config(  # or keras.Model.from_config
    keras2_model_config, custom_objects=frn_keras.migration.TFA_CUSTOM_OBJECTS
)
layer = keras.layers.deserialize(
    {"class_name": "Addons>TLU", "config": tfa_config},
    custom_objects=frn_keras.migration.TFA_CUSTOM_OBJECTS,
)
```

or convert one config dict with `frn_config_from_tfa` / `tlu_config_from_tfa`.

Weights: TF Addons stored FRN weights as `[learned_epsilon, gamma, beta]`
with `gamma`/`beta` of shape `(1, 1, 1, C)`, and TLU's `tau`/`alpha` with
one value per position (shape `input_shape[1:]`), not per channel.
`frn_weights_from_tfa` and `tlu_weights_from_tfa` turn such lists into the
weights of the frn_keras layers (`layer.set_weights(...)`).
"""

import numpy as np

from frn_keras.layers.filter_response_normalization import (
    FilterResponseNormalization,
)
from frn_keras.layers.tlu import TLU

TFA_FRN_NAME = "Addons>FilterResponseNormalization"
TFA_TLU_NAME = "Addons>TLU"


def frn_config_from_tfa(config):
    """Converts a TF Addons `FilterResponseNormalization` config.

    Args:
        config: Dict from TF Addons' `get_config()`, with `axis=[1, 2]`
            (the spatial axes), `epsilon`, `learned_epsilon`, ...

    Returns:
        A config dict for `frn_keras.FilterResponseNormalization.from_config`.

    Raises:
        ValueError: if `axis` is not TF Addons' only supported `[1, 2]`.
    """
    config = _base_config_from_tfa(config)
    spatial_axes = config.pop("axis", [1, 2])
    if list(spatial_axes) != [1, 2]:
        raise ValueError(
            "A TF Addons FilterResponseNormalization config must have the "
            "spatial axes `axis=[1, 2]` (4-D NHWC input), which becomes the "
            f"channel axis -1 here. Received: axis={spatial_axes!r}"
        )
    config["axis"] = -1
    # TF Addons used |epsilon|.
    config["epsilon"] = abs(float(config.get("epsilon", 1e-6)))
    return config


def tlu_config_from_tfa(config):
    """Converts a TF Addons `TLU` config (channels-last) to a `TLU` config."""
    config = _base_config_from_tfa(config)
    config["axis"] = -1
    return config


def frn_weights_from_tfa(weights):
    """Converts TF Addons FRN weights to `FilterResponseNormalization` ones.

    Args:
        weights: TF Addons' `layer.get_weights()`: `[gamma, beta]` or
            `[learned_epsilon, gamma, beta]`, `gamma`/`beta` of shape
            `(1, 1, 1, C)`.

    Returns:
        `[gamma, beta]` or `[gamma, beta, learned_epsilon]`, of shapes
        `(C,)` and `(1,)`, for `set_weights` on the converted layer.
    """
    weights = [np.asarray(w) for w in weights]
    if len(weights) not in (2, 3):
        raise ValueError(
            "TF Addons FRN weights are [gamma, beta] or "
            "[learned_epsilon, gamma, beta]. "
            f"Received: {len(weights)} arrays of shapes "
            f"{[w.shape for w in weights]}"
        )
    learned = weights[:-2]
    gamma, beta = (w.reshape(-1) for w in weights[-2:])
    return [gamma, beta] + [w.reshape(1) for w in learned]


def tlu_weights_from_tfa(weights):
    """Converts TF Addons TLU weights (one value per position) to per-channel.

    TF Addons' `tau` (and `alpha`) had shape `input_shape[1:]`, one value per
    position and channel; the paper and `frn_keras.TLU` use one per channel.
    The conversion is exact only if the values are the same at every
    position, which holds for untrained layers but rarely after training.

    Args:
        weights: `[tau]` or `[tau, alpha]` from TF Addons' `get_weights()`.

    Returns:
        The same list with each array reduced to shape `(C,)`.

    Raises:
        ValueError: if `weights` holds neither one nor two arrays, or if a
            weight varies across positions, so that no per-channel layer
            computes the same function.
    """
    if len(weights) not in (1, 2):
        raise ValueError(
            "TF Addons TLU weights are [tau] or [tau, alpha]. Received: "
            f"{len(weights)} arrays of shapes "
            f"{[np.shape(w) for w in weights]}"
        )
    converted = []
    for name, w in zip(("tau", "alpha"), weights):
        w = np.asarray(w)
        per_channel = w.reshape(-1, w.shape[-1])
        if not np.all(per_channel == per_channel[:1]):
            raise ValueError(
                f"TF Addons TLU `{name}` of shape {w.shape} has different "
                "values at different positions; frn_keras.TLU learns one "
                "value per channel (as in the paper), so these weights cannot "
                "be converted exactly. Retrain or fine-tune the converted "
                "model instead."
            )
        converted.append(per_channel[0].copy())
    return converted


def _base_config_from_tfa(config):
    config = dict(config)
    dtype = config.get("dtype")
    # Keras 2 wrote a mixed-precision policy as {"class_name": "Policy", ...}.
    if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
        config["dtype"] = dtype["config"]["name"]
    return config


class _TfaLayerAdapter:
    """Deserializes a TF Addons config into an frn_keras layer."""

    def __init__(self, layer_class, convert_config):
        self._layer_class = layer_class
        self._convert_config = convert_config

    def from_config(self, config):
        return self._layer_class.from_config(self._convert_config(config))


TFA_CUSTOM_OBJECTS = {
    TFA_FRN_NAME: _TfaLayerAdapter(
        FilterResponseNormalization, frn_config_from_tfa
    ),
    TFA_TLU_NAME: _TfaLayerAdapter(TLU, tlu_config_from_tfa),
}
"""`custom_objects` that load TF Addons' FRN and TLU configs as frn_keras
layers."""
