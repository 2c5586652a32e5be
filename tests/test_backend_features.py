"""What a user does with the layers, on whichever Keras backend is active:
train with `fit` and round-trip a `.keras` file. `tests/test_backends.py`
runs these (and the other `all_backends` tests) under JAX and PyTorch."""

import numpy as np
import pytest

import keras

import frn_keras
from tests import harness

pytestmark = pytest.mark.all_backends


def _model():
    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = frn_keras.FilterResponseNormalization(learned_epsilon=True)(h)
    h = frn_keras.TLU(affine=True)(h)
    h = keras.layers.Conv2D(8, 3, padding="same")(h)
    h = keras.layers.GroupNormalization(2, center=False, scale=False)(h)
    h = frn_keras.ProxyNormalization(activation="gelu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def test_fit_reduces_the_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 8, 2)).astype("float32")
    y = (np.mean(x[..., 0], axis=(1, 2)) > 0).astype("int32")
    model = _model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [harness.to_numpy(w) for w in model.trainable_weights]
    losses = model.fit(x, y, batch_size=16, epochs=8, verbose=0).history[
        "loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    # Every weight of every layer was trained (the custom gradient of FRN
    # reaches gamma, beta and eps; the proxy moments reach PN's weights).
    after = [harness.to_numpy(w) for w in model.trainable_weights]
    for w, b, a in zip(model.trainable_weights, before, after):
        assert not np.array_equal(b, a), w.path


def perturbed_model_and_input(seed):
    """`_model()` with every weight moved off its initial value, and an
    input for it (also used by tests/test_backends.py across backends)."""
    model = _model()
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(size=w.shape) * 0.1
                       for w in model.get_weights()])
    return model, rng.normal(size=(3, 8, 8, 2)).astype("float32")


def test_keras_file_round_trip(tmp_path):
    model, x = perturbed_model_and_input(seed=1)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert [type(layer) for layer in restored.layers] == [
        type(layer) for layer in model.layers]
    harness.assert_allclose(harness.to_numpy(restored(x)),
                            harness.to_numpy(model(x)), rtol=1e-6, atol=1e-6)


def test_saved_model_export_from_tensorflow_and_jax_not_torch(tmp_path):
    model = _model()
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 2)).astype("float32")
    path = str(tmp_path / "saved_model")
    if keras.backend.backend() == "torch":
        # Keras cannot write a TF SavedModel from PyTorch (README says so):
        # its torch.export step fails on this model.
        with pytest.raises(Exception, match=r"torch\.export"):
            model.export(path, format="tf_saved_model", verbose=False)
        return
    model.export(path, format="tf_saved_model", verbose=False)
    import tensorflow as tf

    served = tf.saved_model.load(path)
    harness.assert_allclose(served.serve(tf.constant(x)).numpy(),
                            harness.to_numpy(model(x)), rtol=1e-5, atol=1e-5)
