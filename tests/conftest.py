"""Test set-up: TensorFlow backend, quiet logs, a clean dtype policy."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests may set a global mixed-precision policy; undo it afterwards."""
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)
