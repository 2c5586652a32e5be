"""TLU against the float64 NumPy reference, mixed precision and arguments."""

import numpy as np
import pytest
import tensorflow as tf

import keras

from frn_keras import TLU
from tests import harness
from tests import numpy_reference as ref


def _random_tlu(shape, axis, affine, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    layer = TLU(axis=axis, affine=affine, dtype=dtype)
    layer.build(shape)
    c = shape[axis]
    tau = rng.normal(size=c) * 0.5
    alpha = rng.normal(size=c) * 0.5 if affine else None
    layer.tau.assign(tau)
    if affine:
        layer.alpha.assign(alpha)
    return layer, tau, alpha


@pytest.mark.all_backends
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize(
    "shape,axis",
    harness.SHAPES_AND_AXES,
    ids=harness.ids(harness.SHAPES_AND_AXES),
)
def test_forward_and_gradients_match_float64_reference(shape, axis, affine):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    upstream = rng.normal(size=shape)
    layer, tau, alpha = _random_tlu(shape, axis, affine)

    y, grads = harness.outputs_and_gradients(layer, x, upstream)

    harness.assert_array_equal(y, ref.tlu_forward(x, axis, tau, alpha))
    expected = ref.tlu_backward(x, axis, tau, alpha, upstream)
    for name in expected:
        harness.assert_allclose(
            grads[name], expected[name], rtol=1e-12, atol=1e-12,
            err_msg=name,
        )


@pytest.mark.all_backends
def test_default_tlu_is_relu():
    x = np.random.default_rng(2).normal(size=(3, 4, 5)).astype("float32")
    harness.assert_array_equal(harness.to_numpy(TLU()(x)), np.maximum(x, 0))


def test_tau_and_alpha_are_per_channel():
    layer = TLU(affine=True)
    layer.build((None, 7, 9, 5))
    assert layer.tau.shape == (5,) and layer.alpha.shape == (5,)
    layer = TLU(axis=1)
    layer.build((None, 5, 7, 9))
    assert layer.tau.shape == (5,)


@pytest.mark.all_backends
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    compute = policy.split("_")[1]
    x = (np.random.default_rng(3).normal(size=(2, 4, 4, 6)) * 100).astype(
        compute
    )
    layer, tau, alpha = _random_tlu(x.shape, -1, True, dtype=policy)
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert layer.tau.dtype == "float32"
    # Same math on the inputs and weights rounded to the compute dtype.
    want = ref.tlu_forward(
        x.astype(np.float64), -1,
        tau.astype(compute).astype(np.float64),
        alpha.astype(compute).astype(np.float64),
    )
    rtol = 1e-3 if compute == "float16" else 1e-2
    harness.assert_allclose(
        harness.to_numpy(y).astype(np.float64), want, rtol=rtol, atol=rtol
    )


@pytest.mark.all_backends
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_gradients_sum_tau_in_float32(policy):
    compute = policy.split("_")[1]
    rng = np.random.default_rng(5)
    # float32 values exact in the compute dtype (the layer casts them to it).
    x = rng.normal(size=(16, 16, 16, 3)).astype(compute).astype("float32")
    upstream = rng.uniform(0.5, 1.5, size=x.shape).astype(compute).astype(
        "float32")
    layer, tau, _ = _random_tlu(x.shape, -1, False, dtype=policy)

    _, grads = harness.outputs_and_gradients(layer, x, upstream)

    # 4096 positions per channel: dtau is a sum of about 4000.
    expected = ref.tlu_backward(
        x.astype(np.float64), -1, tau.astype(compute).astype(np.float64),
        None, upstream.astype(np.float64))
    # dtau reaches the float32 variable through the cast of tau to the
    # compute dtype, so it is rounded once to that dtype: within half an
    # ulp of the exact sum. A sum accumulated in that dtype is not.
    half_ulp = {"float16": 2.0**-11, "bfloat16": 2.0**-8}[compute]
    harness.assert_allclose(grads["tau"].astype(np.float64), expected["tau"],
                            rtol=half_ulp, atol=0, err_msg="tau")
    harness.assert_allclose(grads["x"].astype(np.float64), expected["x"],
                            rtol=0, atol=0, err_msg="x")


@pytest.mark.all_backends
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_integer_inputs_compute_in_the_layer_dtype(policy, affine):
    # Keras casts only float inputs to the compute dtype; an int32 TLU
    # would truncate tau = 0.75 to 0.
    x = np.array([[-2, 0, 1], [3, -1, 0]], "int32")
    layer = TLU(affine=affine, dtype=policy)
    layer.build(x.shape)
    tau = np.array([0.75, -0.5, 1.25])
    alpha = np.array([0.5, -0.25, 0.0]) if affine else None
    layer.tau.assign(tau)
    if affine:
        layer.alpha.assign(alpha)

    y = layer(x)

    compute = layer.compute_dtype
    assert keras.backend.standardize_dtype(y.dtype) == compute
    # Every value above is exact in float16.
    harness.assert_array_equal(harness.to_numpy(y).astype(np.float64),
                               ref.tlu_forward(x, -1, tau, alpha))


@pytest.mark.all_backends
def test_ties_send_the_gradient_to_x():
    tau = np.array([0.5, -1.0])
    x = np.array([[0.5, -1.0], [0.5, 2.0], [0.0, -1.0]])  # ties at tau
    upstream = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    layer = TLU(dtype="float64")
    layer.build(x.shape)
    layer.tau.assign(tau)

    _, grads = harness.outputs_and_gradients(layer, x, upstream)

    np.testing.assert_array_equal(
        grads["x"], [[1.0, 2.0], [3.0, 4.0], [0.0, 6.0]])
    np.testing.assert_array_equal(grads["tau"], [5.0, 0.0])


def test_training_equals_inference_and_xla_equals_eager():
    x = np.random.default_rng(4).normal(size=(3, 4, 6)).astype("float32")
    layer, _, _ = _random_tlu(x.shape, -1, True, dtype="float32")
    eager = harness.to_numpy(layer(x, training=True))
    np.testing.assert_array_equal(harness.to_numpy(layer(x, training=False)), eager)
    compiled = tf.function(layer, jit_compile=True)(tf.constant(x)).numpy()
    np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=1e-6)


@pytest.mark.all_backends
def test_a_mask_passes_through():
    # TLU is elementwise, so it keeps the mask: the masked average below
    # still leaves out the masked (all-zero) steps.
    x = np.random.default_rng(5).normal(size=(2, 4, 3)).astype("float32")
    x[:, 2:] = 0.0
    inputs = keras.Input((4, 3))
    h = TLU()(keras.layers.Masking(0.0)(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(h))
    want = ref.tlu_forward(x[:, :2].astype(np.float64), -1, np.zeros(3))
    harness.assert_allclose(harness.to_numpy(model(x)), want.mean(axis=1),
                            rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("axis", [0, 2.0, [1, 2], True])
def test_bad_axis_argument_raises(axis):
    with pytest.raises(ValueError, match=r"`axis`.*Received: axis="):
        TLU(axis=axis)


@pytest.mark.all_backends
def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"Received: axis=3"):
        TLU(axis=3)(np.ones((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"rank >= 2"):
        TLU().build((4,))
    with pytest.raises(ValueError, match=r"channel dimension"):
        TLU()(keras.Input((4, None)))
    with pytest.raises(ValueError, match=r"Received: affine=1"):
        TLU(affine=1)
