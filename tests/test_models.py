"""The model zoo: published sizes, the norm registry, data formats, and the
batch independence that FRN gives a whole network."""

import numpy as np
import pytest

import keras

import frn_keras
from frn_keras import models


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("depth,published", [(20, 0.27e6), (32, 0.46e6),
                                             (56, 0.85e6)])
def test_cifar_resnet_sizes_match_he_et_al(depth, published):
    # He et al. 2016, Table 6: 0.27M, 0.46M, 0.85M parameters.
    model = models.resnet_cifar(depth, norm="bn")
    assert abs(_trainable(model) - published) / published < 0.02


def test_resnet_v2_50_size_matches_keras_applications():
    model = models.resnet_v2_50(norm="bn")
    reference = keras.applications.ResNet50V2(weights=None)
    # Keras's version also has conv biases; both are ~25.6M.
    assert abs(model.count_params() - 25.6e6) / 25.6e6 < 0.005
    assert abs(model.count_params() - reference.count_params()) < 0.001 * (
        reference.count_params())
    assert model.output_shape == (None, 1000)


@pytest.mark.parametrize("build", [
    lambda norm: models.resnet_cifar(20, norm=norm),
    lambda norm: models.resnet_v2_50(norm=norm, input_shape=(64, 64, 3)),
], ids=["resnet20", "resnet_v2_50"])
def test_frn_replaces_every_bn_relu_pair(build):
    bn, frn = _layer_types(build("bn")), _layer_types(build("frn"))
    assert "BatchNormalization" not in frn and "ReLU" not in frn
    assert frn.count("FilterResponseNormalization") == bn.count(
        "BatchNormalization")
    assert frn.count("TLU") == bn.count("ReLU")
    assert len(frn) == len(bn)


@pytest.mark.parametrize("norm", ["frn", "bn", "gn", "ln", "gn_pn"])
def test_channels_first_computes_the_same_function(norm):
    rng = np.random.default_rng(0)
    last = models.resnet_cifar(8, norm=norm)
    first = models.resnet_cifar(8, norm=norm, data_format="channels_first")
    first.set_weights(last.get_weights())
    x = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(first(x), last(x), rtol=1e-4, atol=1e-4)


def test_frn_network_output_is_independent_of_the_batch():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    other = x.copy()
    other[1:] = rng.uniform(0, 255, size=(3, 32, 32, 3))
    frn = models.resnet_cifar(8, norm="frn")
    np.testing.assert_allclose(frn(other, training=True)[0],
                               frn(x, training=True)[0], rtol=1e-5, atol=1e-5)
    # The BatchNorm network in training mode is not: the property is real.
    bn = models.resnet_cifar(8, norm="bn")
    assert not np.allclose(bn(other, training=True)[0],
                           bn(x, training=True)[0], atol=1e-3)


def test_registry_adds_a_norm_by_name_and_refuses_unknown_or_duplicates():
    models.register_norm_act(
        "frn_relu_test",
        norm=lambda axis: frn_keras.FilterResponseNormalization(axis=axis),
        act=lambda axis: keras.layers.ReLU(),
    )
    types = _layer_types(models.resnet_cifar(8, norm="frn_relu_test"))
    assert "FilterResponseNormalization" in types and "TLU" not in types
    assert "frn_relu_test" in models.available_norms()
    with pytest.raises(ValueError, match="already registered"):
        models.register_norm_act("frn", norm=None, act=None)
    with pytest.raises(ValueError, match=r"Received: norm='nope'"):
        models.resnet_cifar(20, norm="nope")


@pytest.mark.parametrize("depth", [19, 6, 20.0, True])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match=r"Received: depth="):
        models.resnet_cifar(depth)


def test_bad_data_format_raises():
    with pytest.raises(ValueError, match=r"Received: data_format='NCHW'"):
        models.resnet_v2_50(data_format="NCHW")


def test_group_norm_caps_groups_and_round_trips(tmp_path):
    model = models.resnet_cifar(8, norm="gn")
    groups = {layer.groups for layer in model.layers
              if isinstance(layer, models.CappedGroupNormalization)}
    assert groups == {16, 32}  # 16-channel stage: 16 groups; others 32
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("f4")
    model.save(tmp_path / "gn.keras")
    restored = keras.saving.load_model(tmp_path / "gn.keras")
    np.testing.assert_allclose(restored(x), model(x), rtol=1e-6, atol=1e-6)


def test_mixed_precision_model_gives_float32_logits():
    keras.config.set_dtype_policy("mixed_float16")
    model = models.resnet_cifar(8, norm="frn")
    out = model(np.full((1, 32, 32, 3), 128.0, "float32"))
    assert out.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("norm, groups", [("ln_pn", {1}), ("gn_pn", {4})])
def test_proxy_norm_entries_pair_an_affine_free_group_norm_with_pn_act(
        norm, groups, tmp_path):
    model = models.resnet_cifar(8, norm=norm)
    bn = _layer_types(models.resnet_cifar(8, norm="bn"))
    types = _layer_types(model)
    assert types.count("ProxyNormalization") == bn.count("ReLU")
    assert "ReLU" not in types
    norms = [layer for layer in model.layers
             if isinstance(layer, models.CappedGroupNormalization)]
    assert len(norms) == bn.count("BatchNormalization")
    assert {layer.groups for layer in norms} == groups
    assert not any(layer.center or layer.scale for layer in norms)
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("f4")
    model.save(tmp_path / "pn.keras")
    restored = keras.saving.load_model(tmp_path / "pn.keras")
    np.testing.assert_allclose(restored(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("norm", ["frn", "bn", "gn", "ln"])
def test_no_model_uses_proxy_normalization_unless_asked(norm):
    # PN is patented (see ProxyNormalization); only the *_pn names use it.
    assert "ProxyNormalization" not in _layer_types(
        models.resnet_cifar(8, norm=norm))
    assert "ProxyNormalization" not in _layer_types(
        frn_keras.convert_to_frn(models.resnet_cifar(8, norm="bn")))
