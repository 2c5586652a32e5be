"""The benchmark scripts run and write well-formed results (smoke runs: no
timing is asserted here; numbers live in benchmarks/results and README)."""

import csv
import math
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, args, tmp_path):
    out = tmp_path / "result"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args,
         "--out", str(out)],
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with open(f"{out}.csv") as f:
        return list(csv.DictReader(f)), result.stdout


def _positive(row, *keys):
    return all(math.isfinite(float(row[k])) and float(row[k]) > 0
               for k in keys)


def test_layers_benchmark_quick(tmp_path):
    rows, stdout = _run("layers.py", ["--quick"], tmp_path)
    assert {r["pair"] for r in rows} == {"frn_tlu", "bn_relu", "gn_relu",
                                         "ln_relu"}
    assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    assert all(_positive(r, "median_ms", "over_floor", "vs_bn") for r in rows)
    assert all(float(r["vs_bn"]) == 1.0 for r in rows if r["pair"] == "bn_relu")
    assert (tmp_path / "result.png").stat().st_size > 0
    assert "| frn_tlu |" in stdout


def test_train_step_benchmark_quick(tmp_path):
    rows, _ = _run("train_step.py", ["--quick", "--xla", "on", "--batch", "8"],
                   tmp_path)
    assert {r["norm"] for r in rows} == {"frn", "bn", "gn"}
    assert all(_positive(r, "images_per_s", "step_ms", "peak_memory_mib")
               for r in rows)


def test_inference_benchmark_folds_batch_norm_exactly(tmp_path):
    # The script itself asserts the folded model equals the BN model.
    rows, stdout = _run("inference.py", ["--repeats", "3", "--batches", "2"],
                        tmp_path)
    assert "folded BN model: 0 BatchNormalization layers left" in stdout
    assert {r["variant"] for r in rows} == {"frn", "bn", "bn_folded"}
    assert all(_positive(r, "median_ms", "vs_bn_folded") for r in rows)
