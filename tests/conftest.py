"""Test set-up: TensorFlow backend (unless KERAS_BACKEND says otherwise),
quiet logs, a clean dtype policy, and the CIFAR-10 JPEG copy extracted
once per session."""

import os
import tarfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The float64 reference tests need real float64 under JAX.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import keras  # noqa: E402
import pytest  # noqa: E402

from tests.shared_data import CIFAR_TAR  # noqa: E402


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


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory):
    """The CIFAR-10 JPEG copy (../shared/data), extracted: `train/<class>/`
    and `test/<class>/` (use with `shared_data.needs_cifar`)."""
    root = tmp_path_factory.mktemp("cifar10_jpeg")
    with tarfile.open(CIFAR_TAR) as tar:
        tar.extractall(root, filter="data")
    return root
