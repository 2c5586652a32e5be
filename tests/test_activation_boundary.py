"""The activation boundary (`frn_keras/layers/_activation_boundary.py`):
under XLA for the CPU, a TLU's output, standalone or fused after FRN, is
computed once instead of in each of its readers; the division that does it
is exact (outputs and gradients bit-equal to the same trace without it,
infinities and NaN included); and only XLA traces for the CPU take it."""

import numpy as np
import pytest
import tensorflow as tf

from frn_keras import TLU
from frn_keras import FilterResponseNormalizationTLU
from frn_keras.layers import _activation_boundary
from tests import harness


def _layer(kind, shape, dtype="float32", tau=None):
    layer = {"tlu": TLU, "frn_tlu": FilterResponseNormalizationTLU}[kind](
        dtype=dtype)
    layer.build(shape)
    rng = np.random.default_rng(0)
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape))
    if tau is not None:
        layer.tau.assign(tau)
    return layer


def _without_boundary(monkeypatch):
    monkeypatch.setattr(_activation_boundary, "compiled_by_xla_for_cpu",
                        lambda: False)


def _two_readers(layer):
    """The layer's output read twice, as a residual block's output is in a
    training step: by a transpose (as for a convolution's weight gradient)
    and by an elementwise op."""
    def f(x):
        z = layer(x + 1.0)
        return tf.transpose(z, (3, 1, 2, 0)), z * 2.0
    return f


def _optimized_hlo(fn, x):
    return tf.function(fn, jit_compile=True).experimental_get_compiler_ir(
        x)(stage="optimized_hlo")


@pytest.mark.parametrize("kind", ["tlu", "frn_tlu"])
def test_xla_computes_the_activation_once(kind, monkeypatch):
    shape = (4, 8, 8, 8)
    layer = _layer(kind, shape)
    x = tf.random.normal(shape)
    assert _optimized_hlo(_two_readers(layer), x).count(" maximum(") == 1
    # Without the boundary XLA computes max(., tau) in both readers.
    _without_boundary(monkeypatch)
    assert _optimized_hlo(_two_readers(layer), x).count(" maximum(") == 2


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
@pytest.mark.parametrize("kind", ["tlu", "frn_tlu"])
def test_outputs_and_gradients_equal_the_trace_without_it(kind, dtype,
                                                          monkeypatch):
    shape = (2, 6, 6, 4)
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    # Infinities and NaN in x (in FRN they spread over their sample and
    # channel) and as tau.
    x[0, 0, 0, 0], x[0, 1, 2, 1], x[1, 3, 3, 2] = np.inf, -np.inf, np.nan
    tau = np.array([np.inf, -np.inf, 0.5, -0.3])
    upstream = rng.normal(size=shape)

    layer = _layer(kind, shape, dtype, tau)
    z, grads = harness.traced_outputs_and_gradients(layer, x, upstream,
                                                    "xla")
    _without_boundary(monkeypatch)
    z_plain, grads_plain = harness.traced_outputs_and_gradients(
        _layer(kind, shape, dtype, tau), x, upstream, "xla")

    assert np.isinf(z).any() and np.isnan(z).any()
    np.testing.assert_array_equal(z, z_plain)
    assert sorted(grads) == sorted(grads_plain)
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads_plain[name],
                                      err_msg=name)


def _divisions(layer, shape, jit_compile):
    fn = tf.function(layer, jit_compile=jit_compile)
    graph = fn.get_concrete_function(
        tf.TensorSpec(shape, layer.compute_dtype)).graph
    return sum(op.type == "RealDiv" for op in graph.get_operations())


@pytest.mark.parametrize("kind", ["tlu", "frn_tlu"])
def test_only_xla_traces_for_the_cpu_take_it(kind, monkeypatch):
    shape = (2, 8, 8, 4)
    layer = _layer(kind, shape)
    # FRN divides its sum of squares by the positions in every trace.
    plain = _divisions(layer, shape, jit_compile=False)
    assert _divisions(layer, shape, jit_compile=True) == plain + 1
    # With a GPU visible, Keras' XLA trace is for the GPU.
    devices = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config, "list_logical_devices",
        lambda kind=None: ["/GPU:0"] if kind == "GPU" else devices(kind))
    assert _divisions(layer, shape, jit_compile=True) == plain
