"""get_config / from_config, `.keras` files loaded in a fresh process, and
SavedModels reloaded to be fine-tuned."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras

import frn_keras
from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras.layers import ProxyNormalization
from tests import harness

LAYERS = [
    FilterResponseNormalization(),
    FilterResponseNormalization(
        axis=1, epsilon=1e-3, learned_epsilon=True,
        learned_epsilon_initializer=0.01, center=False,
        gamma_regularizer="l2", beta_constraint="non_neg",
        learned_epsilon_constraint="non_neg",
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.1, seed=3),
    ),
    TLU(),
    TLU(axis=1, affine=True, tau_initializer="ones", alpha_regularizer="l1",
        tau_constraint="non_neg"),
    FilterResponseNormalizationTLU(),
    FilterResponseNormalizationTLU(
        axis=1, epsilon=1e-3, learned_epsilon=True, scale=False,
        tau_initializer="ones", tau_regularizer="l1", tau_constraint="non_neg",
    ),
    ProxyNormalization(),
    ProxyNormalization(axis=1, activation="gelu", epsilon=0.1,
                       num_quantiles=50, proxy_affine=False, center=False,
                       gamma_regularizer="l2"),
    FilterResponseNormalization(learned_epsilon="auto"),
]


def _assert_plain_python(value, path="config"):
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), path
            _assert_plain_python(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _assert_plain_python(v, f"{path}[{i}]")
    else:
        assert value is None or type(value) in (bool, int, float, str), (
            f"{path} is a {type(value)}, not a plain Python value"
        )


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_config_is_plain_python_and_round_trips(layer):
    config = layer.get_config()
    _assert_plain_python(config)
    assert json.loads(json.dumps(config)) == config
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_build_does_not_change_config_and_rebuilt_layer_is_equal(layer):
    built = type(layer).from_config(layer.get_config())
    fresh = type(layer).from_config(layer.get_config())
    shape = (2, 6, 5, 4) if layer.axis == 1 else (2, 5, 4, 6)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    y = built(x)
    assert built.get_config() == fresh.get_config()
    fresh.build(shape)
    fresh.set_weights(built.get_weights())
    np.testing.assert_array_equal(fresh(x).numpy(), y.numpy())


def test_config_holds_every_constructor_argument():
    frn = LAYERS[1].get_config()
    assert {k: frn[k] for k in [
        "axis", "epsilon", "learned_epsilon", "center", "scale"]} == {
        "axis": 1, "epsilon": 1e-3, "learned_epsilon": True,
        "center": False, "scale": True}
    assert frn["learned_epsilon_initializer"]["config"] == {"value": 0.01}
    assert frn["gamma_regularizer"]["class_name"] == "L2"
    assert frn["beta_constraint"]["class_name"] == "NonNeg"
    assert frn["learned_epsilon_constraint"]["class_name"] == "NonNeg"
    assert frn["gamma_initializer"]["config"]["mean"] == 1.0
    for key in ["beta_initializer", "beta_regularizer", "gamma_constraint"]:
        assert key in frn
    tlu = LAYERS[3].get_config()
    assert (tlu["axis"], tlu["affine"]) == (1, True)
    assert tlu["tau_initializer"]["class_name"] == "Ones"
    assert tlu["alpha_regularizer"]["class_name"] == "L1"
    assert tlu["tau_constraint"]["class_name"] == "NonNeg"
    for key in ["tau_regularizer", "alpha_initializer", "alpha_constraint"]:
        assert key in tlu
    fused = LAYERS[5].get_config()
    assert {k: fused[k] for k in [
        "axis", "epsilon", "learned_epsilon", "center", "scale"]} == {
        "axis": 1, "epsilon": 1e-3, "learned_epsilon": True,
        "center": True, "scale": False}
    assert fused["tau_initializer"]["class_name"] == "Ones"
    assert fused["tau_regularizer"]["class_name"] == "L1"
    assert fused["tau_constraint"]["class_name"] == "NonNeg"
    pn = LAYERS[7].get_config()
    assert {k: pn[k] for k in [
        "axis", "activation", "epsilon", "num_quantiles", "proxy_affine",
        "center", "scale"]} == {
        "axis": 1, "activation": "gelu", "epsilon": 0.1,
        "num_quantiles": 50, "proxy_affine": False, "center": False,
        "scale": True}
    assert pn["gamma_regularizer"]["class_name"] == "L2"


def test_registered_names_and_generic_deserialization():
    assert (
        keras.saving.get_registered_name(FilterResponseNormalization)
        == "frn_keras>FilterResponseNormalization"
    )
    assert keras.saving.get_registered_name(TLU) == "frn_keras>TLU"
    assert (keras.saving.get_registered_name(FilterResponseNormalizationTLU)
            == "frn_keras>FilterResponseNormalizationTLU")
    assert (keras.saving.get_registered_name(ProxyNormalization)
            == "frn_keras>ProxyNormalization")
    for layer in LAYERS:
        restored = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(restored) is type(layer)
        assert restored.get_config() == layer.get_config()


def _functional_model():
    inputs = keras.Input((8, 8, 3), name="images")
    h = keras.layers.Conv2D(6, 3, padding="same")(inputs)
    h = FilterResponseNormalization(learned_epsilon=True)(h)
    h = TLU(affine=True)(h)
    h = keras.layers.Conv2D(5, 3, data_format="channels_first")(h)
    h = FilterResponseNormalization(axis=1)(h)
    h = TLU(axis=1)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(4)(h)
    h = FilterResponseNormalization(learned_epsilon=True)(h)
    h = TLU()(h)
    h = FilterResponseNormalizationTLU(learned_epsilon=True)(h)
    h = keras.layers.LayerNormalization(center=False, scale=False)(h)
    outputs = ProxyNormalization(activation="silu")(h)
    return keras.Model(inputs, outputs)


def _perturbed_functional_model_and_input(rng):
    """`_functional_model()` with every weight moved off its initial value
    (so that a load that lost them would show, and no two weights are
    equal), and an input for it, both drawn from `rng`."""
    model = _functional_model()
    model.set_weights(
        [w + rng.normal(size=w.shape) * 0.1 for w in model.get_weights()]
    )
    return model, rng.normal(size=(3, 8, 8, 3)).astype("float32")


def test_keras_file_loads_in_fresh_process_with_plain_import(tmp_path):
    model, x = _perturbed_functional_model_and_input(np.random.default_rng(1))
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)

    script = textwrap.dedent(
        f"""
        import numpy as np
        import keras
        import frn_keras  # the only thing needed to load the layers
        model = keras.saving.load_model({str(path)!r})
        layers = [type(l).__name__ for l in model.layers]
        assert layers.count("FilterResponseNormalization") == 3, layers
        assert layers.count("FilterResponseNormalizationTLU") == 1, layers
        assert layers.count("ProxyNormalization") == 1, layers
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, model.predict(x, verbose=0))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), model.predict(x, verbose=0),
        rtol=1e-6, atol=1e-6,
    )


def test_keras_file_fails_to_load_without_the_import(tmp_path):
    # The registration is what makes loading work: without it the class is
    # unknown. This guards the test above against passing for another reason.
    path = tmp_path / "model.keras"
    _functional_model().save(path)
    script = f"import keras; keras.saving.load_model({str(path)!r})"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "frn_keras>FilterResponseNormalization" in result.stderr


def test_saved_model_reloaded_as_a_trainable_layer_has_the_models_gradients(
        tmp_path):
    # Fine-tuning a SavedModel (`TFSMLayer(trainable=True)`) differentiates
    # the functions TensorFlow saved, custom gradients included.
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    # Distinct weights, so that each reloaded variable names its original.
    model, x = _perturbed_functional_model_and_input(rng)
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = keras.layers.TFSMLayer(path, call_endpoint="serve",
                                      trainable=True)
    # The name of each reloaded variable -> the path of its original.
    original_path = {}
    for variable in reloaded.trainable_weights:
        same = [w.path for w in model.trainable_weights
                if w.shape == variable.shape
                and np.array_equal(w.numpy(), variable.numpy())]
        assert len(same) == 1, variable.name
        original_path[variable.name] = same[0]
    assert len(original_path) == len(model.trainable_weights)
    upstream = rng.normal(size=(3, 4))

    y, grads = harness.outputs_and_gradients(model, x, upstream, key="path")
    y_reloaded, by_name = harness.outputs_and_gradients(reloaded, x, upstream)
    grads_reloaded = {original_path.get(name, name): g
                      for name, g in by_name.items()}
    harness.assert_allclose(y_reloaded, y, rtol=1e-5, atol=1e-5)
    # float32 sums of terms up to ~10: absolute differences of ~1e-5.
    harness.assert_same_gradients(grads_reloaded, grads, rtol=1e-4,
                                  atol=1e-4, where="reloaded SavedModel")


def test_package_exports():
    assert frn_keras.layers.FilterResponseNormalization is (
        FilterResponseNormalization
    )
    assert frn_keras.layers.TLU is TLU
    assert frn_keras.layers.FilterResponseNormalizationTLU is (
        FilterResponseNormalizationTLU
    )
    assert frn_keras.layers.ProxyNormalization is ProxyNormalization
    assert isinstance(frn_keras.__version__, str)


def test_models_subpackage_is_reachable_from_the_package():
    assert frn_keras.models.resnet_cifar is not None
    assert "frn" in frn_keras.models.available_norms()
