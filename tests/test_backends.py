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
FILES = ["tests/test_filter_response_normalization.py", "tests/test_tlu.py",
         "tests/test_proxy_normalization.py", "tests/test_backend_features.py",
         "tests/test_weight_arguments.py", "tests/test_dtype_policies.py",
         "tests/test_masking.py"]


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
