"""Each weight's `*_initializer`, `*_regularizer` and `*_constraint`
arguments reach that weight and no other, in the layer as constructed and
in the layer rebuilt from its config."""

import numpy as np
import pytest

import keras
from keras import ops

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras.layers import ProxyNormalization
from tests import harness

INITIAL = 0.375
L2_FACTOR = 0.25
CONSTRAINED = 0.625
CHANNELS = 3


@keras.saving.register_keras_serializable(package="frn_keras_tests")
class SetTo(keras.constraints.Constraint):
    """Sets every entry to `value`, so that a constrained weight shows that
    the optimizer applied this constraint to it."""

    def __init__(self, value):
        self.value = value

    def __call__(self, w):
        return ops.full(w.shape, self.value, dtype=w.dtype)

    def get_config(self):
        return {"value": self.value}


# (layer class, arguments that create the weight, argument prefix, attribute)
WEIGHTS = [
    (FilterResponseNormalization, {}, "gamma", "gamma"),
    (FilterResponseNormalization, {}, "beta", "beta"),
    (FilterResponseNormalization, {"learned_epsilon": True},
     "learned_epsilon", "eps_learned"),
    (TLU, {"affine": True}, "tau", "tau"),
    (TLU, {"affine": True}, "alpha", "alpha"),
    (FilterResponseNormalizationTLU, {"learned_epsilon": True},
     "gamma", "gamma"),
    (FilterResponseNormalizationTLU, {"learned_epsilon": True},
     "beta", "beta"),
    (FilterResponseNormalizationTLU, {"learned_epsilon": True},
     "learned_epsilon", "eps_learned"),
    (FilterResponseNormalizationTLU, {"learned_epsilon": True},
     "tau", "tau"),
    (ProxyNormalization, {}, "gamma", "gamma"),
    (ProxyNormalization, {}, "beta", "beta"),
]


def _layer(cls, kwargs, prefix, from_config):
    """A built layer whose `prefix` weight alone has non-default arguments."""
    kwargs = {
        **kwargs,
        f"{prefix}_initializer": keras.initializers.Constant(INITIAL),
        f"{prefix}_constraint": SetTo(CONSTRAINED),
    }
    # FRN, like TF Addons', has no regularizer for its learned epsilon.
    if prefix != "learned_epsilon":
        kwargs[f"{prefix}_regularizer"] = keras.regularizers.L2(L2_FACTOR)
    layer = cls(**kwargs)
    if from_config:
        layer = cls.from_config(layer.get_config())
    layer.build((2, 4, 4, CHANNELS))
    return layer


@pytest.mark.all_backends
@pytest.mark.parametrize("from_config", [False, True],
                         ids=["constructed", "from_config"])
@pytest.mark.parametrize(
    "cls,kwargs,prefix,attribute", WEIGHTS,
    ids=[f"{cls.__name__}-{prefix}" for cls, _, prefix, _ in WEIGHTS])
def test_arguments_reach_their_weight_only(cls, kwargs, prefix, attribute,
                                           from_config):
    layer = _layer(cls, kwargs, prefix, from_config)
    target = getattr(layer, attribute)
    others = [w for w in layer.trainable_weights if w is not target]
    assert len(others) == len(layer.trainable_weights) - 1 and others

    # The initializer.
    np.testing.assert_array_equal(harness.to_numpy(target),
                                  np.full(target.shape, INITIAL))
    for w in others:
        assert not np.any(harness.to_numpy(w) == INITIAL), w.name

    # The regularizer: one loss, of this weight.
    losses = [float(harness.to_numpy(loss)) for loss in layer.losses]
    if prefix == "learned_epsilon":
        assert losses == []
    else:
        np.testing.assert_allclose(
            losses, [L2_FACTOR * CHANNELS * INITIAL**2], rtol=1e-6)

    # The constraint, applied by the optimizer after its update.
    before = {id(w): harness.to_numpy(w) for w in others}
    step = 0.125
    keras.optimizers.SGD(step).apply(
        [ops.ones(w.shape) for w in layer.trainable_weights],
        layer.trainable_weights)
    np.testing.assert_array_equal(harness.to_numpy(target),
                                  np.full(target.shape, CONSTRAINED))
    for w in others:
        np.testing.assert_allclose(harness.to_numpy(w),
                                   before[id(w)] - step, err_msg=w.name)
