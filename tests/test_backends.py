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
# Every test file with an `all_backends` test, found rather than listed, so
# that a new one cannot be left out.
FILES = sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
    if re.search(r"^@pytest\.mark\.all_backends$", path.read_text(), re.M))


def test_the_backend_files_are_found():
    for name in ["test_filter_response_normalization.py",
                 "test_filter_response_normalization_tlu.py", "test_tlu.py",
                 "test_proxy_normalization.py", "test_empty_inputs.py"]:
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
