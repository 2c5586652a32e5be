"""Models with the layers train under `model.fit` with XLA, and the README's
main job runs."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras.layers import ProxyNormalization
from tests.example_modules import load_example

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _fit_sign_task_with_xla(make_layers):
    """Trains `Sequential(make_layers())` (seeded first) with XLA, 8 epochs, on 256
    random 8x8x2 images labelled by the sign of the mean of their first
    channel. Returns the model and the per-epoch losses."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 8, 8, 2)).astype("f4")
    y = (np.mean(x[..., 0], axis=(1, 2)) > 0).astype("int32")
    model = keras.Sequential([keras.Input((8, 8, 2)), *make_layers()])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert model.jit_compile is True  # Keras kept XLA on for this model
    return model, history.history["loss"]


def test_sequential_model_loss_goes_down_with_xla():
    _, losses = _fit_sign_task_with_xla(lambda: [
        keras.layers.Conv2D(8, 3, padding="same"),
        FilterResponseNormalization(),
        TLU(),
        keras.layers.Conv2D(8, 3, padding="same", data_format="channels_first"),
        FilterResponseNormalization(axis=1, learned_epsilon=True),
        TLU(axis=1, affine=True),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    assert losses[-1] < 0.5 * losses[0], losses


def test_proxy_normalized_model_loss_goes_down_with_xla():
    model, losses = _fit_sign_task_with_xla(lambda: [
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.GroupNormalization(2, center=False, scale=False),
        ProxyNormalization(activation="gelu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    pn = model.layers[2]
    assert losses[-1] < 0.5 * losses[0], losses
    # The proxy weights are trained through the proxy moments (from 0).
    assert np.any(pn.proxy_shift.numpy() != 0)


def test_digits_convnet_learns_with_xla():
    example = load_example("train_digits")
    model, history, accuracy = example.train(epochs=4, verbose=0)
    assert model.jit_compile is True
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert accuracy > 0.85  # chance is 0.10


def test_digits_training_refuses_a_batch_larger_than_the_training_set():
    example = load_example("train_digits")
    x = np.zeros((10, 8, 8, 3), "uint8")
    y = np.arange(10, dtype="int32")
    # Refused before any training, naming the argument and the value.
    with pytest.raises(ValueError, match="batch_size .* 10 .* got 11"):
        example.train(epochs=1, batch_size=11, verbose=0,
                      data=((x, y), (x, y)))
    model, _, _ = example.train(epochs=1, batch_size=10, verbose=0,
                                data=((x, y), (x, y)))
    assert model.optimizer.iterations.numpy() == 1  # one full-set step


def test_digits_are_served_as_raw_rgb_pixels_and_split_per_class():
    from sklearn.datasets import load_digits

    example = load_example("train_digits")
    x, y = example.load_digits_images()
    digits = load_digits()
    grey = digits.images  # 0..16 grey levels
    assert x.dtype == np.uint8 and x.shape == (1797, 8, 8, 3)
    # 16 maps to 255 and every level to the nearest pixel value, in all
    # three channels (what a client sends; the model rescales it).
    np.testing.assert_array_equal(
        x, np.repeat(np.round(grey * 255 / 16)[..., None], 3, -1))
    assert x.max() == 255
    np.testing.assert_array_equal(y, digits.target)

    (x_train, y_train), (x_test, y_test) = example.load_digits_split()
    assert len(x_train) + len(x_test) == 1797
    # Held out: 20% of each class (stratified), no image in both.
    for c in range(10):
        assert abs(np.sum(y_test == c) - 0.2 * np.sum(y == c)) <= 1
    train_rows = {row.tobytes() for row in x_train}
    overlap = sum(row.tobytes() in train_rows for row in x_test)
    duplicates = len(x) - len({row.tobytes() for row in x})
    assert overlap <= duplicates  # only images that occur twice in the set


def test_main_job_command_runs(tmp_path):
    saved = tmp_path / "digits.keras"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"),
         "--epochs", "2", "--save", str(saved)],
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "XLA jit_compile: True" in result.stdout
    assert "test accuracy" in result.stdout
    assert saved.exists()


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--epochs", "-2"], "--epochs must be >= 1, got -2"),
    (["--batch-size", "5000"], "--batch-size must be between 1 and 1437 "
     "(the training images), got 5000"),
    (["--save", "model.h5"], "--save must name a .keras file, got model.h5"),
])
def test_main_job_rejects_bad_flags(args, message):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"), *args],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert message in result.stderr
