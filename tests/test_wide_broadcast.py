"""The wide view that the layers compute on outside XLA, for channels-last
inputs with few channels (`frn_keras/layers/_wide_broadcast.py`): when it
applies, that it is really taken, and that FRN, the fused FRN-TLU and TLU
computed on it match the float64 NumPy reference, eager, in a
`tf.function` and compiled by XLA (which keeps the plain form)."""

import numpy as np
import pytest
import tensorflow as tf

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras.layers import _wide_broadcast
from frn_keras.layers._wide_broadcast import widening_factor
from tests import harness
from tests import numpy_reference as ref

EPSILON = 1e-4


@pytest.mark.parametrize(
    "shape,expected",
    [
        # (shape, k): positions P, channels C <= 32; the smallest divisor k
        # of P with k * C >= 1024 and k <= P / 16.
        ((2, 32, 32, 16), 64),  # ResNet-20 stage 1: P = 1024
        ((2, 32, 32, 32), 32),
        ((2, 128, 128, 8), 128),
        ((2, 30, 30, 24), 45),  # k >= 43; 43 and 44 do not divide 900
        ((2, 1024, 16), 64),  # rank 3
        ((2, 4, 16, 16, 16), 64),  # rank 5: P = 1024
        ((None, 32, 32, 16), 64),  # the batch may be unknown
        ((2, 16, 16, 32), 1),  # needs k >= 32, allows k <= 16
        ((2, 32, 32, 1), 1),  # needs k >= 1024, allows k <= 64
        ((2, 37, 37, 16), 1),  # P = 37^2: no divisor in 64 .. 85
        ((2, 56, 56, 64), 1),  # more than 32 channels
        ((2, None, None, 16), 1),  # positions unknown
        ((2, 16), 1),  # no positions
    ],
)
def test_widening_factor(shape, expected):
    assert widening_factor(shape) == expected


def test_traces_compiled_by_xla_keep_the_plain_broadcasts():
    factors = []

    def trace(x):
        factors.append(widening_factor(x.shape))
        return x

    x = tf.zeros((2, 32, 32, 16))
    tf.function(trace)(x)
    tf.function(trace, jit_compile=True)(x)
    assert factors == [64, 1]


def _params(channels, seed):
    rng = np.random.default_rng(seed)
    return {
        "gamma": rng.uniform(0.5, 1.5, channels) * rng.choice([-1, 1],
                                                              channels),
        "beta": rng.normal(size=channels),
        "tau": rng.normal(size=channels) * 0.5,
    }


def _layer(kind, shape, params, dtype, axis=-1):
    layer = {
        "frn": lambda: FilterResponseNormalization(
            axis=axis, epsilon=EPSILON, dtype=dtype),
        "frn_tlu": lambda: FilterResponseNormalizationTLU(
            axis=axis, epsilon=EPSILON, dtype=dtype),
        "tlu": lambda: TLU(axis=axis, dtype=dtype),
    }[kind]()
    layer.build(shape)
    for weight in layer.weights:
        weight.assign(params[weight.name])
    return layer


def _reference(kind, x, params, upstream, axis=-1):
    """Output and gradients of `sum(upstream * layer(x))`, float64."""
    if kind == "tlu":
        y = ref.tlu_forward(x, axis, params["tau"])
        return y, ref.tlu_backward(x, axis, params["tau"], None, upstream)
    frn_args = (x, axis, params["gamma"], params["beta"], EPSILON, None)
    if kind == "frn":
        return (ref.frn_forward(*frn_args),
                ref.frn_backward(*frn_args, upstream))
    return (ref.frn_tlu_forward(*frn_args, params["tau"]),
            ref.frn_tlu_backward(*frn_args, params["tau"], upstream))


def _assert_matches_reference(kind, layer, x, upstream, params, mode,
                              tolerance, axis=-1):
    y, grads = harness.traced_outputs_and_gradients(layer, x, upstream, mode)
    # The layers see x rounded to their dtype: so does the reference.
    x = x.astype(layer.compute_dtype)
    y_ref, grads_ref = _reference(kind, x, params, upstream, axis)
    np.testing.assert_allclose(y, y_ref, rtol=tolerance, atol=tolerance)
    for name, grad in grads.items():
        # Gradients sum over up to 2 * 1024 positions.
        scale = max(1.0, np.abs(grads_ref[name]).max())
        np.testing.assert_allclose(grad, grads_ref[name], rtol=tolerance,
                                   atol=tolerance * scale, err_msg=name)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize("kind", ["frn", "frn_tlu", "tlu"])
@pytest.mark.parametrize(
    "shape", [(2, 32, 32, 16), (2, 1024, 16), (2, 4, 16, 16, 16)],
    ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-10),
                                             ("float32", 2e-4)])
def test_matches_float64_reference(dtype, tolerance, shape, kind, mode):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    upstream = rng.normal(size=shape)
    params = _params(shape[-1], seed=2)
    layer = _layer(kind, shape, params, dtype)
    _assert_matches_reference(kind, layer, x, upstream, params, mode,
                              tolerance)


def _maximum_shapes(layer, shape, jit_compile=False):
    """The output shapes of the `Maximum` ops in the traced graph of
    `layer` (what TensorFlow runs without XLA, or hands to XLA)."""
    fn = tf.function(layer, jit_compile=jit_compile)
    graph = fn.get_concrete_function(
        tf.TensorSpec((None, *shape[1:]), layer.compute_dtype)).graph
    return [tuple(op.outputs[0].shape) for op in graph.get_operations()
            if op.type == "Maximum"]


@pytest.mark.parametrize(
    "kind,plain",
    # FRN folds the positions into one axis; TLU keeps the input's shape.
    [("frn_tlu", (None, 1024, 16)), ("tlu", (None, 32, 32, 16))])
def test_the_wide_view_is_taken_outside_xla(kind, plain):
    shape = (2, 32, 32, 16)
    layer = _layer(kind, shape, _params(16, seed=0), "float32")
    assert _maximum_shapes(layer, shape) == [(None, 16, 1024)]
    assert _maximum_shapes(layer, shape, jit_compile=True) == [plain]


@pytest.mark.parametrize("policy,rtol", [("mixed_float16", 2e-3),
                                         ("mixed_bfloat16", 1.6e-2)])
def test_mixed_precision_frn_tlu_on_the_wide_view(policy, rtol, monkeypatch):
    # FRN computes in float32 (float16 would overflow in x^2 here), so its
    # wide view is float32 too. |x| ~ 1e3.
    shape = (2, 32, 32, 16)
    compute = policy.split("_")[1]
    rng = np.random.default_rng(12)
    x = (rng.normal(size=shape) * 1e3).astype(compute)
    upstream = rng.normal(size=shape)
    params = _params(16, seed=13)
    wide = _layer("frn_tlu", shape, params, policy)
    assert _maximum_shapes(wide, shape) == [(None, 16, 1024)]
    y, grads = harness.traced_outputs_and_gradients(wide, x, upstream, "function")

    assert y.dtype == np.dtype(compute)
    y_ref, _ = _reference("frn_tlu", x.astype(np.float64), params, upstream)
    np.testing.assert_allclose(y.astype(np.float64), y_ref, rtol=rtol,
                               atol=rtol * 3)
    # The gradients against the same layer traced without the view (their
    # float16 rounding near tau differs from the float64 reference's).
    monkeypatch.setattr(_wide_broadcast, "MAX_CHANNELS", 0)
    narrow = _layer("frn_tlu", shape, params, policy)
    assert _maximum_shapes(narrow, shape) == [(None, 1024, 16)]
    y_narrow, grads_narrow = harness.traced_outputs_and_gradients(narrow, x, upstream,
                                                    "function")
    np.testing.assert_array_equal(y, y_narrow)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, grads_narrow[name], rtol=1e-5,
                                   atol=1e-5 * np.abs(grad).max(),
                                   err_msg=name)


def test_float16_tlu_stays_narrow():
    # The tile's gradient would add tau's partial gradients in float16.
    shape = (2, 32, 32, 16)
    layer = _layer("tlu", shape, _params(16, seed=0), "float16")
    assert _maximum_shapes(layer, shape) == [(None, 32, 32, 16)]


@pytest.mark.parametrize("kind", ["frn_tlu", "tlu"])
def test_channels_first_is_not_widened(kind):
    # Its per-channel broadcasts already run over the positions. Widening
    # its last axis (W = 32 here) would tile tau along W: wrong results.
    shape = (2, 16, 32, 32)
    rng = np.random.default_rng(1)
    x, upstream = rng.normal(size=shape), rng.normal(size=shape)
    params = _params(16, seed=2)
    layer = _layer(kind, shape, params, "float64", axis=1)
    _assert_matches_reference(kind, layer, x, upstream, params, "function",
                              1e-10, axis=1)
    plain = (None, 16, 1024) if kind == "frn_tlu" else (None, 16, 32, 32)
    assert _maximum_shapes(layer, shape) == [plain]
