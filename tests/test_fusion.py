"""frn_keras.fuse_frn_tlu: which pairs fuse, and that the fused model is
the same function with the same weights and gradients."""

import numpy as np
import pytest
import tensorflow as tf

import keras

import frn_keras
from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras import fuse_frn_tlu
from frn_keras._graph import producer


def _count(model, cls):
    return sum(type(layer) is cls for layer in model.layers)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0, 0.1, w.shape))


def _gradients_by_weight_path(model, x, y):
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    # The fused layer holds the FRN's weights and the TLU's tau.
    return {f"{_owner(model, w)}/{w.name}": g.numpy()
            for w, g in zip(model.trainable_weights, grads)}, loss.numpy()


def _owner(model, weight):
    for layer in model.layers:
        if any(w is weight for w in layer.weights):
            return layer.name
    raise AssertionError(weight.name)


def test_resnet20_pairs_fuse_to_the_same_function_and_gradients():
    model = frn_keras.models.resnet_cifar(20, norm="frn",
                                          input_shape=(16, 16, 3))
    _randomize(model)
    fused = fuse_frn_tlu(model)

    # Post-activation ResNet: the stem and the first conv of each of the 9
    # blocks are FRN -> TLU; the FRN before each addition is not followed
    # by a TLU (the TLU comes after the addition), so it stays.
    assert _count(fused, FilterResponseNormalizationTLU) == 10
    assert _count(fused, FilterResponseNormalization) == 11
    assert _count(fused, TLU) == 9
    assert _count(model, TLU) == 19  # the input model is not changed
    assert fused.count_params() == model.count_params()

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 4)
    np.testing.assert_allclose(fused.predict(x, verbose=0),
                               model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    grads, loss = _gradients_by_weight_path(model, x, y)
    fused_grads, fused_loss = _gradients_by_weight_path(fused, x, y)
    np.testing.assert_allclose(fused_loss, loss, rtol=1e-6)
    # Every TLU's tau moved into the fused layer named after its FRN.
    tlu_of = {}
    for layer in model.layers:
        if type(layer) is TLU:
            tlu_of[layer.name] = producer(layer).name
    for path, want in grads.items():
        layer, name = path.split("/")
        if layer in tlu_of and type(fused.get_layer(tlu_of[layer])) is (
                FilterResponseNormalizationTLU):
            path = f"{tlu_of[layer]}/{name}"
        np.testing.assert_allclose(fused_grads[path], want, rtol=1e-4,
                                   atol=1e-6, err_msg=path)
    assert len(fused_grads) == len(grads)


def test_resnet_v2_50_fuses_every_pre_activation_pair():
    model = frn_keras.models.resnet_v2_50(norm="frn", input_shape=(64, 64, 3))
    fused = fuse_frn_tlu(model)
    pairs = _count(model, FilterResponseNormalization)
    assert pairs == _count(model, TLU)
    assert _count(fused, FilterResponseNormalizationTLU) == pairs
    assert _count(fused, FilterResponseNormalization) == 0
    assert _count(fused, TLU) == 0
    assert fused.count_params() == model.count_params()


def test_pairs_that_must_stay_apart_are_kept():
    inputs = keras.Input((6, 6, 4))
    a = FilterResponseNormalization(name="used_twice")(inputs)
    branch = TLU(name="tlu_a")(a)
    merged = keras.layers.Add()([branch, a])
    b = FilterResponseNormalization(name="affine_next")(merged)
    b = TLU(affine=True, name="affine_tlu")(b)
    c = FilterResponseNormalization(name="other_axis")(b)
    c = TLU(axis=1, name="tlu_axis1")(c)
    f = FilterResponseNormalization(dtype="mixed_float16",
                                    name="mixed_frn")(c)
    f = TLU(name="float32_tlu")(f)
    g = FilterResponseNormalization(trainable=False, name="frozen_frn")(f)
    g = TLU(name="trainable_tlu")(g)
    d = FilterResponseNormalization(name="fusable")(g)
    d = TLU(tau_initializer="ones", tau_constraint="non_neg",
            tau_regularizer="l2", name="tlu_d")(d)
    e = FilterResponseNormalization(name="is_an_output")(d)
    outputs = [TLU(name="tlu_e")(e), e]
    model = keras.Model(inputs, outputs)
    _randomize(model)

    fused = fuse_frn_tlu(model)

    assert [layer.name for layer in fused.layers
            if type(layer) is FilterResponseNormalizationTLU] == ["fusable"]
    assert "tlu_d" not in [layer.name for layer in fused.layers]
    config = fused.get_layer("fusable").get_config()
    assert config["tau_constraint"]["class_name"] == "NonNeg"
    assert config["tau_regularizer"]["class_name"] == "L2"
    assert not fused.get_layer("frozen_frn").trainable
    x = np.random.default_rng(2).normal(size=(3, 6, 6, 4)).astype("float32")
    for got, want in zip(fused.predict(x, verbose=0),
                         model.predict(x, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sequential_pairs_that_must_stay_apart_are_kept():
    # Adjacent layers of a Sequential model: only the pair checks apply.
    model = keras.Sequential([
        keras.Input((6, 6, 4)),
        FilterResponseNormalization(dtype="mixed_float16", name="mixed_frn"),
        TLU(name="float32_tlu"),
        FilterResponseNormalization(trainable=False, name="frozen_frn"),
        TLU(name="trainable_tlu"),
        FilterResponseNormalization(name="fusable"),
        TLU(name="tlu"),
    ])
    _randomize(model)

    fused = fuse_frn_tlu(model)

    assert [type(layer).__name__ for layer in fused.layers] == [
        "FilterResponseNormalization", "TLU", "FilterResponseNormalization",
        "TLU", "FilterResponseNormalizationTLU"]
    # The declared float32 input, not one in the first layer's float16.
    assert fused.inputs[0].dtype == "float32"
    assert fused.layers[1].compute_dtype == "float32"
    assert not fused.layers[2].trainable and fused.layers[3].trainable
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(fused.predict(x, verbose=0),
                               model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)

    model.trainable = False
    assert not fuse_frn_tlu(model).trainable


def test_sequential_and_nested_models():
    inner = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3),
        FilterResponseNormalization(learned_epsilon=True),
        TLU(),
        keras.layers.Conv2D(5, 3),
        FilterResponseNormalization(),
        TLU(affine=True),
    ], name="inner")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inner(inputs)))
    model = keras.Model(inputs, outputs)
    _randomize(model)

    fused = fuse_frn_tlu(model)

    fused_inner = fused.get_layer("inner")
    assert isinstance(fused_inner, keras.Sequential)
    assert [type(layer).__name__ for layer in fused_inner.layers] == [
        "Conv2D", "FilterResponseNormalizationTLU", "Conv2D",
        "FilterResponseNormalization", "TLU"]
    assert fused_inner.layers[1].learned_epsilon
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(fused.predict(x, verbose=0),
                               model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_fused_model_trains_with_xla_and_saves(tmp_path):
    model = fuse_frn_tlu(frn_keras.models.resnet_cifar(
        20, norm="frn", input_shape=(8, 8, 3)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=True)
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    fused_layer = next(layer for layer in model.layers
                       if type(layer) is FilterResponseNormalizationTLU)
    tau = fused_layer.tau.numpy().copy()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert not np.allclose(fused_layer.tau.numpy(), tau)
    path = tmp_path / "fused.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)


def test_subclassed_model_is_refused():
    class Custom(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="model of type Custom"):
        fuse_frn_tlu(Custom())


def test_sequential_without_input_built_or_not():
    def model():
        return keras.Sequential([keras.layers.Conv2D(4, 3),
                                 FilterResponseNormalization(), TLU()])

    unbuilt = fuse_frn_tlu(model())
    assert [type(layer) for layer in unbuilt.layers] == [
        keras.layers.Conv2D, FilterResponseNormalizationTLU]
    assert not unbuilt.built

    x = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype("float32")
    built = model()
    built(x)  # built by a call, with no keras.Input
    _randomize(built)
    fused = fuse_frn_tlu(built)
    assert [type(layer) for layer in fused.layers] == [
        keras.layers.Conv2D, FilterResponseNormalizationTLU]
    np.testing.assert_allclose(fused.predict(x, verbose=0),
                               built.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
