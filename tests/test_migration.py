"""Loading TF Addons FRN / TLU configs and weights (in TF Addons' form)."""

import numpy as np
import pytest

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import migration
from tests import numpy_reference as ref


def _tfa_frn_config(**overrides):
    # What tfa.layers.FilterResponseNormalization.get_config() returned
    # (Keras 2 serialization, spatial axes, epsilon a float since tfa#2335).
    config = {
        "name": "frn_1",
        "trainable": True,
        "dtype": "float32",
        "axis": [1, 2],
        "epsilon": 1e-6,
        "learned_epsilon": True,
        "beta_initializer": {"class_name": "Zeros", "config": {}},
        "gamma_initializer": {"class_name": "Ones", "config": {}},
        "beta_regularizer": None,
        "gamma_regularizer": {"class_name": "L2", "config": {"l2": 0.01}},
        "beta_constraint": None,
        "gamma_constraint": None,
        "learned_epsilon_constraint": {"class_name": "NonNeg", "config": {}},
    }
    config.update(overrides)
    return config


def _tfa_tlu_config(affine):
    config = {
        "name": "tlu_1",
        "trainable": True,
        "dtype": "float32",
        "tau_initializer": {"class_name": "Zeros", "config": {}},
        "tau_regularizer": None,
        "tau_constraint": None,
        "affine": affine,
    }
    if affine:
        config.update(
            alpha_initializer={"class_name": "Zeros", "config": {}},
            alpha_regularizer=None,
            alpha_constraint=None,
        )
    return config


def test_frn_config_converts_spatial_axes_to_channel_axis():
    config = migration.frn_config_from_tfa(_tfa_frn_config(epsilon=-1e-5))
    layer = FilterResponseNormalization.from_config(config)
    assert layer.axis == -1
    assert layer.epsilon == 1e-5  # TF Addons used |epsilon|
    assert layer.learned_epsilon is True
    assert layer.name == "frn_1"
    assert isinstance(layer.gamma_regularizer, keras.regularizers.L2)
    assert isinstance(
        layer.learned_epsilon_constraint, keras.constraints.NonNeg
    )


def test_frn_config_with_other_axes_is_refused():
    with pytest.raises(ValueError, match=r"Received: axis=\[1, 3\]"):
        migration.frn_config_from_tfa(_tfa_frn_config(axis=[1, 3]))


def test_keras2_mixed_precision_policy_is_converted():
    policy = {"class_name": "Policy", "config": {"name": "mixed_float16"}}
    config = migration.frn_config_from_tfa(_tfa_frn_config(dtype=policy))
    layer = FilterResponseNormalization.from_config(config)
    assert layer.compute_dtype == "float16"
    assert layer.variable_dtype == "float32"


@pytest.mark.parametrize("affine", [False, True])
def test_custom_objects_deserialize_tfa_layers(affine):
    frn = keras.layers.deserialize(
        {
            "class_name": migration.TFA_FRN_NAME,
            "config": _tfa_frn_config(),
        },
        custom_objects=migration.TFA_CUSTOM_OBJECTS,
    )
    tlu = keras.layers.deserialize(
        {"class_name": migration.TFA_TLU_NAME,
         "config": _tfa_tlu_config(affine)},
        custom_objects=migration.TFA_CUSTOM_OBJECTS,
    )
    assert type(frn) is FilterResponseNormalization
    assert type(tlu) is TLU and tlu.affine is affine and tlu.axis == -1


def test_keras2_sequential_config_with_tfa_layers_loads():
    keras2_config = {
        "name": "sequential",
        "layers": [
            {"class_name": "InputLayer", "config": {
                "batch_input_shape": [None, 8, 8, 3], "dtype": "float32",
                "sparse": False, "ragged": False, "name": "input_1"}},
            {"class_name": "Conv2D", "config": {
                "name": "conv2d", "trainable": True, "dtype": "float32",
                "filters": 4, "kernel_size": [3, 3], "padding": "same"}},
            {"class_name": migration.TFA_FRN_NAME,
             "config": _tfa_frn_config()},
            {"class_name": migration.TFA_TLU_NAME,
             "config": _tfa_tlu_config(True)},
        ],
    }
    model = keras.Sequential.from_config(
        keras2_config, custom_objects=migration.TFA_CUSTOM_OBJECTS
    )
    assert [type(layer) for layer in model.layers[1:]] == [
        FilterResponseNormalization, TLU
    ]
    assert model.output_shape == (None, 8, 8, 4)


def test_frn_weights_from_tfa_give_tfa_math():
    rng = np.random.default_rng(0)
    c = 5
    eps_l = np.array([2e-3])
    gamma = rng.normal(size=(1, 1, 1, c))
    beta = rng.normal(size=(1, 1, 1, c))
    layer = FilterResponseNormalization.from_config(
        migration.frn_config_from_tfa(
            _tfa_frn_config(dtype="float64", epsilon=1e-3)
        )
    )
    layer.build((None, 4, 4, c))
    # TF Addons' saved order: [learned_epsilon, gamma, beta].
    layer.set_weights(migration.frn_weights_from_tfa([eps_l, gamma, beta]))
    x = rng.normal(size=(2, 4, 4, c)) * 0.05
    want = ref.frn_forward(
        x, -1, gamma.reshape(c), beta.reshape(c), 1e-3, eps_l[0]
    )
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-10)


def test_frn_weights_from_tfa_without_learned_epsilon():
    gamma, beta = np.ones((1, 1, 1, 3)), np.zeros((1, 1, 1, 3))
    converted = migration.frn_weights_from_tfa([gamma, beta])
    assert [w.shape for w in converted] == [(3,), (3,)]
    with pytest.raises(ValueError, match="Received: 1 arrays"):
        migration.frn_weights_from_tfa([gamma])


def test_tlu_weights_per_position_constant_convert_exactly():
    tau_c = np.array([0.1, -0.2, 0.3])
    tau = np.broadcast_to(tau_c, (4, 4, 3))
    alpha = np.broadcast_to(np.array([0.5, 0.0, -0.5]), (4, 4, 3))
    tau_out, alpha_out = migration.tlu_weights_from_tfa([tau, alpha])
    np.testing.assert_array_equal(tau_out, tau_c)
    layer = TLU(affine=True)
    layer.build((None, 4, 4, 3))
    layer.set_weights([tau_out, alpha_out])
    np.testing.assert_array_equal(layer.alpha.numpy(), [0.5, 0.0, -0.5])


def test_tlu_weights_of_neither_one_nor_two_arrays_are_refused():
    tau = np.zeros((4, 4, 3))
    for weights in ([], [tau, tau, tau]):
        with pytest.raises(ValueError, match=rf"Received: {len(weights)} "
                                             r"arrays"):
            migration.tlu_weights_from_tfa(weights)


def test_tlu_weights_varying_per_position_are_refused():
    tau = np.random.default_rng(1).normal(size=(4, 4, 3))
    with pytest.raises(ValueError, match=r"`tau` of shape \(4, 4, 3\)"):
        migration.tlu_weights_from_tfa([tau])
