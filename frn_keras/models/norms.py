"""The registry of normalization + activation pairs that the models use.

A model asks for `norm_act(name)` and gets a `NormAct` whose `norm(axis)` and
`act(axis)` make the two layers; it never names a layer class. A new
normalization is one `register_norm_act` call, not a copy of a model:

```python
frn_keras.models.register_norm_act(
    "frn_relu",
    norm=lambda axis: frn_keras.FilterResponseNormalization(axis=axis),
    act=lambda axis: keras.layers.ReLU(),
)
model = frn_keras.models.resnet_cifar(20, norm="frn_relu")
```

Built in:

| name | norm | act |
| --- | --- | --- |
| `"frn"` | `FilterResponseNormalization` (`learned_epsilon="auto"`: learned where N = 1) | `TLU` (the paper's FRN layer) |
| `"bn"` | `BatchNormalization` (momentum 0.9, eps 1e-5) | ReLU |
| `"gn"` | `GroupNormalization`, 32 groups (fewer when C < 32: C groups) | ReLU |
| `"ln"` | `GroupNormalization`, 1 group: LayerNorm over (H, W, C) with per-channel affine | ReLU |
| `"in"` | `GroupNormalization`, one group per channel: InstanceNorm (per sample and channel, over H, W) with per-channel affine | ReLU |
| `"ln_pn"` | the same LayerNorm without its affine | `ProxyNormalization` (relu) |
| `"gn_pn"` | `GroupNormalization`, 4 groups (the authors' choice), without its affine | `ProxyNormalization` (relu) |

The `*_pn` entries use Proxy Normalization, on which Graphcore holds a patent
(US 12,430,552; WO2023052547A1); nothing uses them unless asked for by name.
In a post-activation ResNet the norm before each residual addition is not
followed by the activation, so under `*_pn` that branch has no per-channel
affine of its own.
"""

import dataclasses
from typing import Callable

import keras

from frn_keras.layers import TLU
from frn_keras.layers import FilterResponseNormalization
from frn_keras.layers import ProxyNormalization


# Weight names that decoupled weight decay should leave alone when training
# these models: the normalizations' and activations' own parameters (of
# every registered norm) and biases. For `optimizer.exclude_from_weight_decay`.
NO_WEIGHT_DECAY = ("gamma", "beta", "tau", "alpha", "learned_epsilon",
                   "proxy_scale", "proxy_shift", "bias")


@dataclasses.dataclass(frozen=True)
class NormAct:
    """Factories of a normalization layer and the activation paired with it.

    Attributes:
        norm: `norm(axis) -> Layer`, `axis` being the channel axis.
        act: `act(axis) -> Layer`.
    """

    norm: Callable[[int], keras.layers.Layer]
    act: Callable[[int], keras.layers.Layer]


_REGISTRY = {}


def register_norm_act(name, norm, act, overwrite=False):
    """Adds a normalization + activation pair under `name`.

    Args:
        name: A non-empty string, the `norm=` argument of the model
            builders.
        norm: `norm(axis) -> Layer`, `axis` being the channel axis.
        act: `act(axis) -> Layer`.
        overwrite: Whether to replace a pair already registered under
            `name`. Defaults to `False`.

    Raises:
        ValueError: If `name` is not a non-empty string, `norm` or `act` is
            not callable, or `name` is taken and `overwrite` is `False`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            "Argument `name` must be a non-empty string. "
            f"Received: name={name!r}"
        )
    for argument, factory in (("norm", norm), ("act", act)):
        if not callable(factory):
            raise ValueError(
                f"Argument `{argument}` must be callable, `{argument}(axis)` "
                f"returning a layer. Received: {argument}={factory!r}"
            )
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A normalization named '{name}' is already registered; pass "
            f"overwrite=True to replace it. Received: name={name!r}"
        )
    _REGISTRY[name] = NormAct(norm=norm, act=act)


def norm_act(name):
    """Returns the registered `NormAct` called `name`.

    Raises:
        ValueError: If no pair is registered under `name`.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown normalization. Expected one of {available_norms()}. "
            f"Received: norm={name!r}"
        )
    return _REGISTRY[name]


def available_norms():
    """The registered names, sorted: the values `norm=` accepts."""
    return sorted(_REGISTRY)


def _relu(axis):
    return keras.layers.ReLU()


@keras.saving.register_keras_serializable(package="frn_keras")
class CappedGroupNormalization(keras.layers.GroupNormalization):
    """`GroupNormalization` with `min(max_groups, channels)` groups.

    ResNets for CIFAR have 16-channel stages, where GroupNorm's usual 32
    groups do not divide the channels; the group count is fixed at build.
    """

    def __init__(self, max_groups=32, **kwargs):
        kwargs.setdefault("groups", max_groups)
        super().__init__(**kwargs)
        self.max_groups = max_groups

    def build(self, input_shape):
        self.groups = min(self.max_groups, input_shape[self.axis])
        super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "max_groups": self.max_groups}


register_norm_act(
    "frn",
    # At N = 1 (ResNetV2-50's last stage at 32x32) the paper learns eps.
    norm=lambda axis: FilterResponseNormalization(axis=axis,
                                                  learned_epsilon="auto"),
    act=lambda axis: TLU(axis=axis),
)
register_norm_act(
    "bn",
    norm=lambda axis: keras.layers.BatchNormalization(
        axis=axis, momentum=0.9, epsilon=1e-5
    ),
    act=_relu,
)
register_norm_act(
    "gn",
    norm=lambda axis: CappedGroupNormalization(max_groups=32, axis=axis),
    act=_relu,
)
register_norm_act(
    "ln",
    norm=lambda axis: CappedGroupNormalization(max_groups=1, axis=axis),
    act=_relu,
)
register_norm_act(
    "in",
    # groups=-1: one group per channel (Keras' spelling of InstanceNorm).
    norm=lambda axis: keras.layers.GroupNormalization(groups=-1, axis=axis),
    act=_relu,
)


def _proxy_normalized(max_groups):
    """A GroupNorm without affine + PN-Act pair (Labatie et al. 2021)."""
    return dict(
        norm=lambda axis: CappedGroupNormalization(
            max_groups=max_groups, axis=axis, center=False, scale=False
        ),
        act=lambda axis: ProxyNormalization(axis=axis, activation="relu"),
    )


register_norm_act("ln_pn", **_proxy_normalized(max_groups=1))
register_norm_act("gn_pn", **_proxy_normalized(max_groups=4))
