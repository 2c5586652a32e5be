"""convert_to_frn: BatchNorm (+ the ReLU after it) becomes FRN (+ TLU)."""

import numpy as np
import pytest

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras.conversion import convert_to_frn
from tests import numpy_reference as ref


def _count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


def test_resnet50v2_structure_weights_and_training_step():
    original = keras.applications.ResNet50V2(
        weights=None, input_shape=(32, 32, 3), classes=5)
    converted = convert_to_frn(original)
    assert _count(converted, keras.layers.BatchNormalization) == 0
    assert _count(converted, FilterResponseNormalization) == 49
    assert _count(converted, TLU) == 49
    assert _count(converted, keras.layers.Activation) == 0  # all after BN
    assert _count(original, keras.layers.BatchNormalization) == 49  # intact
    for layer in original.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            for a, b in zip(layer.get_weights(),
                            converted.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    bn = original.get_layer("conv2_block1_1_bn")
    frn = converted.get_layer("conv2_block1_1_bn")
    np.testing.assert_array_equal(frn.gamma.numpy(), bn.gamma.numpy())
    assert frn.axis == 3

    converted.compile(optimizer="sgd", loss=keras.losses.
                      SparseCategoricalCrossentropy(from_logits=False))
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("f4")
    loss = converted.train_on_batch(x, np.arange(4) % 5)
    assert np.isfinite(loss)


def test_converted_layer_computes_frn_of_the_kept_convolution():
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    shortcut = keras.layers.BatchNormalization(name="bn_only")(h)
    outputs = keras.layers.Add()([h, shortcut])
    original = keras.Model(inputs, outputs)
    converted = convert_to_frn(original)
    # The ReLU after a BN becomes TLU; a BN with no ReLU after it is FRN alone.
    assert isinstance(converted.get_layer("relu"), TLU)
    assert isinstance(converted.get_layer("bn_only"), FilterResponseNormalization)

    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype("float32")
    conv_out = keras.Model(original.input, original.get_layer("conv").output)(x)
    frn_out = keras.Model(converted.input, converted.get_layer("bn").output)(x)
    want = ref.frn_forward(np.asarray(conv_out, np.float64), -1, np.ones(3),
                           np.zeros(3), 1e-6)
    np.testing.assert_allclose(frn_out, want, rtol=1e-5, atol=1e-5)


def test_policy_trainable_regularizers_and_constraints_carry_over():
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, dtype="mixed_float16")(inputs)
    h = keras.layers.BatchNormalization(
        dtype="mixed_float16", trainable=False, gamma_regularizer="l2",
        beta_constraint="non_neg", name="bn")(h)
    h = keras.layers.Activation("relu", dtype="mixed_float16",
                                trainable=False, name="relu")(h)
    h = keras.layers.BatchNormalization(
        center=False, beta_regularizer="l1", name="bn_plain")(h)
    h = keras.layers.BatchNormalization(scale=False, name="bn_unscaled")(h)
    original = keras.Model(inputs, h)

    converted = convert_to_frn(original)

    frn, tlu = converted.get_layer("bn"), converted.get_layer("relu")
    assert frn.dtype_policy.name == "mixed_float16" and not frn.trainable
    assert isinstance(frn.gamma_regularizer, keras.regularizers.L2)
    assert isinstance(frn.beta_constraint, keras.constraints.NonNeg)
    assert tlu.dtype_policy.name == "mixed_float16" and not tlu.trainable
    plain = converted.get_layer("bn_plain")
    assert plain.dtype_policy.name == "float32" and plain.trainable
    assert not plain.center and plain.beta is None
    assert plain.gamma_regularizer is None
    unscaled = converted.get_layer("bn_unscaled")
    assert unscaled.center and not unscaled.scale and unscaled.gamma is None
    assert converted.trainable_weights == [
        converted.layers[1].kernel, converted.layers[1].bias, plain.gamma,
        unscaled.beta]
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 2)).astype("float32")
    assert keras.ops.convert_to_numpy(converted(x)).dtype == np.float32


@pytest.mark.parametrize("spatial, learned", [
    ((), True), ((1, 1), True), ((1, 3), False), ((None, None), False)],
    ids=["after_dense", "1x1_map", "1x3_map", "unknown_size"])
def test_one_position_per_channel_gets_a_learned_epsilon(spatial, learned):
    # The paper's N = 1 case: with a fixed epsilon, FRN of one value is
    # about sign(x), so the conversion learns epsilon there (and only there).
    inputs = keras.Input((*spatial, 5))
    h = keras.layers.Dense(4, name="dense")(inputs)
    h = keras.layers.BatchNormalization(
        gamma_initializer="random_uniform", beta_initializer="random_uniform",
        name="bn")(h)
    original = keras.Model(inputs, keras.layers.ReLU(name="relu")(h))

    converted = convert_to_frn(original)

    frn = converted.get_layer("bn")
    assert frn.learned_epsilon is learned
    assert len(frn.weights) == (3 if learned else 2)
    bn = original.get_layer("bn")
    np.testing.assert_array_equal(frn.gamma.numpy(), bn.gamma.numpy())
    np.testing.assert_array_equal(frn.beta.numpy(), bn.beta.numpy())
    x = np.random.default_rng(3).normal(
        size=(3, *(s or 2 for s in spatial), 5)).astype("float32")
    dense_out = keras.Model(original.input, original.get_layer("dense").output)(x)
    frn_out = keras.Model(converted.input, frn.output)(x)
    want = ref.frn_forward(np.asarray(dense_out, np.float64), -1,
                           bn.gamma.numpy(), bn.beta.numpy(), 1e-6,
                           eps_learned=1e-4 if learned else None)
    np.testing.assert_allclose(frn_out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relu", [
    keras.layers.ReLU(max_value=6.0), keras.layers.ReLU(negative_slope=0.1),
    keras.layers.ReLU(threshold=0.5), keras.layers.Activation("relu6"),
    keras.layers.Activation("gelu")],
    ids=["max_value", "negative_slope", "threshold", "relu6", "gelu"])
def test_only_a_plain_relu_after_batch_norm_becomes_tlu(relu):
    # TLU generalizes max(x, 0) only: a capped, leaky or thresholded ReLU,
    # or another activation, computes something else and is kept.
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(3, 1)(inputs))
    model = keras.Model(inputs, relu(h))

    converted = convert_to_frn(model)

    assert _count(converted, FilterResponseNormalization) == 1
    assert _count(converted, TLU) == 0
    kept = converted.layers[-1]
    assert type(kept) is type(relu)
    assert kept.get_config() == relu.get_config()


def test_nested_sequential_is_converted():
    block = keras.Sequential([
        keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
    ], name="block")
    inputs = keras.Input((8, 8, 4))
    outputs = keras.layers.GlobalAveragePooling2D()(block(inputs))
    converted = convert_to_frn(keras.Model(inputs, outputs))
    inner = converted.get_layer("block")
    assert _count(inner, FilterResponseNormalization) == 1
    assert _count(inner, TLU) == 1
    assert converted(np.ones((1, 8, 8, 4), "float32")).shape == (1, 4)


def test_subclassed_model_is_refused():
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def call(self, x):
            return self.bn(x) * 2

    with pytest.raises(ValueError, match="subclassed.*Received: model of type Custom"):
        convert_to_frn(Custom())


def test_exported_from_the_package():
    import frn_keras

    assert frn_keras.convert_to_frn is convert_to_frn
