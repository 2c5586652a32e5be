"""Test set-up: TensorFlow backend (unless KERAS_BACKEND says otherwise),
quiet logs, a clean dtype policy."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The float64 reference tests need real float64 under JAX.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_dtype_policy():
    """Tests may set a global mixed-precision policy; undo it afterwards."""
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


def pytest_collection_modifyitems(config, items):
    """Under another backend only the `all_backends` tests apply."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow-only test ({backend} backend)")
    for item in items:
        if "all_backends" not in item.keywords:
            item.add_marker(skip)
