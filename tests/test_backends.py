"""The `all_backends` tests (float64 references, properties, fit, `.keras`
round trips) under the JAX and PyTorch backends, each in a fresh process
(the Keras backend is fixed at import)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Every test file with an `all_backends` test (a decorated test, or the mark
# on the whole module), found rather than listed, so that a new one cannot be
# left out.
FILES = sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
    if re.search(r"^(@pytest\.mark\.all_backends"
                 r"|pytestmark = .*pytest\.mark\.all_backends\b.*)$",
                 path.read_text(), re.M))


def test_the_backend_files_are_found():
    for name in ["test_filter_response_normalization.py",
                 "test_filter_response_normalization_tlu.py", "test_tlu.py",
                 "test_proxy_normalization.py", "test_empty_inputs.py",
                 "test_backend_features.py"]:
        assert f"tests/{name}" in FILES
    assert "tests/test_backends.py" not in FILES


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_all_backends_tests_pass_under(backend):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "all_backends",
         "-p", "no:cacheprovider", *FILES],
        cwd=ROOT, env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True, text=True, timeout=900)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    # Nothing skipped or failed, and the backend was really the one asked.
    assert "skipped" not in summary and "failed" not in summary, summary
    assert passed >= 120, summary


# Written under another backend: a model of every layer with non-trivial
# weights, its `.keras` file, an input and that backend's output.
_SAVE_UNDER_BACKEND = """
import sys
import numpy as np
import keras
from tests.test_backend_features import perturbed_model_and_input
model, x = perturbed_model_and_input(seed=3)
model.save(sys.argv[1] + "/model.keras")
np.savez(sys.argv[1] + "/io.npz", x=x,
         y=keras.ops.convert_to_numpy(model(x)), backend=keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_keras_file_saved_under_another_backend_loads_here(backend,
                                                             tmp_path):
    # Train under JAX or PyTorch, then serve with `frn_keras.export`, which
    # needs TensorFlow: the file must carry the same function across.
    subprocess.run(
        [sys.executable, "-c", _SAVE_UNDER_BACKEND, str(tmp_path)],
        cwd=ROOT, env=dict(os.environ, KERAS_BACKEND=backend), check=True,
        capture_output=True, timeout=300)
    import keras
    import numpy as np

    import frn_keras  # noqa: F401  (registers the layers)

    saved = np.load(tmp_path / "io.npz")
    assert str(saved["backend"]) == backend
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(saved["x"])), saved["y"],
        rtol=1e-5, atol=1e-5)
