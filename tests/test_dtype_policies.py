"""Every layer computes under floating-point dtype policies, its output in
the compute dtype and its weights in the variable dtype, and refuses an
integer policy, which would truncate its output and freeze its weights."""

import numpy as np
import pytest

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras import ProxyNormalization

LAYERS = [FilterResponseNormalization, TLU, FilterResponseNormalizationTLU,
          ProxyNormalization]


@pytest.mark.all_backends
@pytest.mark.parametrize("cls", LAYERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("policy", ["float32", "float64", "float16",
                                    "mixed_float16", "mixed_bfloat16"])
def test_float_policies_set_output_and_weight_dtypes(cls, policy):
    layer = cls(dtype=policy)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    y = layer(x)
    policy = keras.DTypePolicy(policy)
    assert keras.backend.standardize_dtype(y.dtype) == policy.compute_dtype
    assert layer.weights
    assert {w.dtype for w in layer.weights} == {policy.variable_dtype}
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(y)))


@pytest.mark.all_backends
@pytest.mark.parametrize("cls", LAYERS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("policy", ["int32", "uint8", "int64"])
def test_integer_policies_raise(cls, policy):
    with pytest.raises(ValueError, match=rf"floating point.*Received: "
                                         rf"dtype='{policy}'"):
        cls(dtype=policy)
