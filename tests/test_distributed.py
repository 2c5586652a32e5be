"""FRN needs no cross-replica communication: data-parallel training of an
FRN model gives the same weights as single-replica training with the same
global batch, under MirroredStrategy (2 logical CPU devices) and
MultiWorkerMirroredStrategy (2 worker processes on loopback), with XLA; a
BatchNorm model does not (each replica normalizes its own half-batch).

Each run is a fresh process (`tests/distributed_run.py`): logical devices and
TF_CONFIG must be set before TensorFlow starts.
"""

import functools
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.loopback_cluster import worker_tf_configs

ROOT = pathlib.Path(__file__).resolve().parents[1]
MIRRORED = ["--distribute", "mirrored", "--logical-cpus", "2"]


def _start(out, norm, *flags, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.distributed_run", "--norm", norm,
         *flags, str(out)],
        cwd=ROOT, env=dict(os.environ if env is None else env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process):
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _run(tmp_path, name, norm, *flags):
    out = tmp_path / f"{name}.npz"
    code, output = _finish(_start(out, norm, *flags))
    assert code == 0, output[-3000:]
    return np.load(out)


def _max_weight_difference(a, b):
    keys = [k for k in a.files if k.startswith("w")]
    assert keys and keys == [k for k in b.files if k.startswith("w")]
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in keys)


@functools.cache
def _single_replica(norm, tmp_dir):
    return _run(pathlib.Path(tmp_dir), f"single_{norm}", norm,
                "--jit-compile")


@pytest.fixture(scope="module")
def single_replica(tmp_path_factory):
    tmp_dir = str(tmp_path_factory.mktemp("single"))
    return lambda norm: _single_replica(norm, tmp_dir)


@pytest.mark.parametrize("norm", ["frn", "bn"])
def test_mirrored_strategy_with_xla(norm, single_replica, tmp_path):
    mirrored = _run(tmp_path, "mirrored", norm, "--jit-compile", *MIRRORED)
    assert int(mirrored["replicas"]) == 2
    difference = _max_weight_difference(mirrored, single_replica(norm))
    if norm == "frn":
        np.testing.assert_allclose(mirrored["losses"],
                                   single_replica(norm)["losses"], rtol=1e-6)
        assert difference < 1e-6
    else:
        assert difference > 1e-3


@pytest.mark.parametrize("norm", ["frn", "bn"])
def test_multi_worker_strategy_with_two_processes(norm, single_replica,
                                                  tmp_path):
    workers = []
    for index, tf_config in enumerate(worker_tf_configs(2)):
        env = dict(os.environ, TF_CONFIG=tf_config)
        workers.append(_start(tmp_path / f"worker{index}.npz", norm,
                              "--jit-compile", "--distribute", "multi_worker",
                              env=env))
    for worker in workers:
        code, output = _finish(worker)
        assert code == 0, output[-3000:]
    chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert int(chief["replicas"]) == 2
    # Synchronous training: both workers hold the same weights.
    assert _max_weight_difference(chief, other) < 1e-7
    difference = _max_weight_difference(chief, single_replica(norm))
    if norm == "frn":
        assert difference < 1e-6
    else:
        assert difference > 1e-3


def test_fit_with_mirrored_strategy_without_xla_matches_single_replica(
        single_replica, tmp_path):
    mirrored = _run(tmp_path, "fit_mirrored", "frn", "--fit", *MIRRORED)
    assert int(mirrored["replicas"]) == 2
    # model.fit and the custom loop take the same steps.
    assert _max_weight_difference(mirrored, single_replica("frn")) < 1e-6


def test_fit_with_xla_on_logical_cpus_still_fails_upstream(tmp_path):
    # keras-team/keras#19005: README and examples/data_parallel.py say to use
    # the custom loop for this case. If this starts passing, update them.
    code, output = _finish(_start(tmp_path / "x.npz", "frn", "--fit",
                                  "--jit-compile", *MIRRORED))
    assert code != 0
    assert "Trying to access resource" in output
