"""ProxyNormalization against float64 references: the layer's output, its
proxy moments (closed form for relu, Monte Carlo for other activations) and
its gradients (finite differences of the reference)."""

import numpy as np
import pytest
import tensorflow as tf

import keras

from frn_keras.layers import ProxyNormalization
from tests import harness
from tests import numpy_reference as ref


def _random_pn(shape, axis, activation="relu", dtype="float64", seed=0,
               **kwargs):
    """A built layer with non-default weights, and those weights."""
    rng = np.random.default_rng(seed)
    layer = ProxyNormalization(axis=axis, activation=activation, dtype=dtype,
                               **kwargs)
    layer.build(shape)
    c = shape[axis]
    weights = dict(
        gamma=1.0 + 0.3 * rng.normal(size=c),
        beta=0.5 * rng.normal(size=c),
        proxy_scale=0.2 * rng.normal(size=c),
        proxy_shift=0.3 * rng.normal(size=c),
    )
    weights = {k: v for k, v in weights.items()
               if getattr(layer, k) is not None}
    for name, value in weights.items():
        getattr(layer, name).assign(value)
    return layer, weights


@pytest.mark.all_backends
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
@pytest.mark.parametrize(
    "shape,axis",
    harness.SHAPES_AND_AXES,
    ids=harness.ids(harness.SHAPES_AND_AXES),
)
def test_forward_matches_float64_reference(shape, axis, activation):
    x = np.random.default_rng(1).normal(size=shape)
    layer, w = _random_pn(shape, axis, activation)
    want = ref.proxy_norm_forward(x, axis, activation, epsilon=0.03, n=200,
                                  **w)
    # TF's float64 erf (in gelu) is accurate to ~1e-8, not to 1e-15.
    tol = 1e-7 if activation == "gelu" else 1e-10
    harness.assert_allclose(harness.to_numpy(layer(x)), want, rtol=tol, atol=tol)


@pytest.mark.all_backends
def test_default_proxy_moments_match_the_authors_implementation():
    # anchors.md: the official 200-point proxy gives 0.39845 / 0.33803 for
    # relu at gamma=1, beta=0 (the exact values are 0.39894 / 0.34085).
    layer = ProxyNormalization()
    layer.build((None, 3))
    mean, var = (harness.to_numpy(t) for t in layer.proxy_moments())
    harness.assert_allclose(mean, 0.39845, atol=1e-5)
    harness.assert_allclose(var, 0.33803, atol=1e-5)


@pytest.mark.all_backends
# The midpoint grid cuts off the tails: its error shrinks about as 1/n.
@pytest.mark.parametrize("n, mean_tol, var_rtol", [
    (200, 1e-3, 2e-2), (2000, 1e-4, 2e-3)])
def test_relu_proxy_moments_converge_to_the_closed_form(n, mean_tol, var_rtol):
    layer, w = _random_pn((2, 5), -1, num_quantiles=n, seed=2)
    mean, var = (harness.to_numpy(t) for t in layer.proxy_moments("float64"))
    mu = w["gamma"] * w["proxy_shift"] + w["beta"]
    sigma = np.abs(w["gamma"] * (1 + w["proxy_scale"]))
    exact_mean, exact_var = ref.relu_normal_moments(mu, sigma)
    harness.assert_allclose(mean, exact_mean, atol=mean_tol)
    harness.assert_allclose(var, exact_var, rtol=var_rtol)


@pytest.mark.all_backends
@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh"])
def test_proxy_moments_match_monte_carlo(activation):
    layer, w = _random_pn((2, 4), -1, activation, seed=3)
    mean, var = (harness.to_numpy(t) for t in layer.proxy_moments("float64"))
    samples = np.random.default_rng(4).normal(size=(400_000, 1))
    z = ref.ACTIVATIONS[activation](
        w["gamma"] * ((1 + w["proxy_scale"]) * samples + w["proxy_shift"])
        + w["beta"])
    stderr_mean = z.std(axis=0) / np.sqrt(len(z))
    stderr_var = ((z - z.mean(axis=0)) ** 2).std(axis=0) / np.sqrt(len(z))
    # 5 standard errors of the sample plus the 200-point grid's own error.
    np.testing.assert_array_less(np.abs(mean - z.mean(axis=0)),
                                 5 * stderr_mean + 1e-3)
    np.testing.assert_array_less(np.abs(var - z.var(axis=0)),
                                 5 * stderr_var + 5e-3)


@pytest.mark.all_backends
@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu"])
@pytest.mark.parametrize("shape,axis", [((3, 4), -1), ((2, 4, 3, 2), 1)])
def test_gradients_match_finite_differences_of_the_reference(
        shape, axis, activation):
    # Smooth activations: a finite difference across relu's kink is wrong.
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape)
    upstream = rng.normal(size=shape)
    layer, w = _random_pn(shape, axis, activation, num_quantiles=50)
    _, grads = harness.outputs_and_gradients(layer, x, upstream)

    def loss(**changed):
        args = {**w, "x": x, **changed}
        return np.sum(upstream * ref.proxy_norm_forward(
            args.pop("x"), axis, activation, epsilon=0.03, n=50, **args))

    harness.assert_allclose(
        grads["x"], harness.numerical_gradient(lambda v: loss(x=v), x),
        rtol=1e-6, atol=1e-7)
    for name in w:
        # The proxy moments make every weight's gradient nonzero.
        assert np.all(np.abs(grads[name]) > 0), name
        harness.assert_allclose(
            grads[name],
            harness.numerical_gradient(lambda v: loss(**{name: v}), w[name]),
            rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.all_backends
def test_output_is_normalized_for_normal_input():
    # The point of the method: for N(0, 1) input in a channel, the output
    # has about zero mean and unit variance, whatever gamma and beta.
    layer, _ = _random_pn((1, 200_000, 3), -1, "relu", seed=6,
                          num_quantiles=2000, proxy_affine=False,
                          epsilon=1e-6)
    x = np.random.default_rng(7).normal(size=(1, 200_000, 3))
    y = harness.to_numpy(layer(x))
    harness.assert_allclose(y.mean(axis=(0, 1)), 0.0, atol=0.01)
    harness.assert_allclose(y.var(axis=(0, 1)), 1.0, atol=0.02)


def test_batch_independence_and_training_equals_inference():
    x = np.random.default_rng(8).normal(size=(4, 5, 5, 6)).astype("float32")
    layer, _ = _random_pn(x.shape, -1, "relu", dtype="float32")
    full = harness.to_numpy(layer(x, training=True))
    np.testing.assert_array_equal(harness.to_numpy(layer(x, training=False)), full)
    for i in range(len(x)):
        np.testing.assert_allclose(harness.to_numpy(layer(x[i:i + 1])), full[i:i + 1],
                                   rtol=1e-6, atol=1e-6)
    compiled = tf.function(layer, jit_compile=True)(tf.constant(x)).numpy()
    np.testing.assert_allclose(compiled, full, rtol=1e-5, atol=1e-5)


@pytest.mark.all_backends
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_moments(policy):
    compute = policy.split("_")[1]
    x = np.random.default_rng(9).normal(size=(2, 4, 4, 6)) * 3
    layer, w = _random_pn(x.shape, -1, "gelu", dtype=policy)
    y = layer(x.astype(compute))
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert layer.gamma.dtype == "float32"
    w32 = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}
    want = ref.proxy_norm_forward(x.astype(compute).astype(np.float64), -1,
                                  "gelu", epsilon=0.03, n=200, **w32)
    tol = 2e-3 if compute == "float16" else 2e-2
    harness.assert_allclose(harness.to_numpy(y).astype(np.float64), want, rtol=tol,
                               atol=tol)


@pytest.mark.all_backends
def test_mixed_precision_float32_inputs_are_used_as_given():
    # x = 1000 + u with beta = -1000 (and a proxy shifted to match): a
    # float16 copy of x would be rounded to a multiple of 0.5 before the
    # cancellation; the layer computes the affine from the float32 x.
    rng = np.random.default_rng(12)
    x = (1000 + rng.uniform(-1, 1, size=(2, 4, 4, 3))).astype("float32")
    layer, w = _random_pn(x.shape, -1, dtype="mixed_float16")
    w.update(gamma=np.ones(3), beta=np.full(3, -1000.0),
             proxy_scale=np.zeros(3), proxy_shift=np.full(3, 1000.0))
    for name, value in w.items():
        getattr(layer, name).assign(value)
    y = harness.to_numpy(layer(x))
    assert y.dtype == np.float16
    want = ref.proxy_norm_forward(x.astype(np.float64), -1, "relu",
                                  epsilon=0.03, n=200, **w)
    harness.assert_allclose(y.astype(np.float64), want, rtol=2e-3, atol=2e-3)


@pytest.mark.all_backends
def test_a_mask_passes_through():
    # PN-Act is elementwise once its moments are known, so it keeps the
    # mask: the masked average below leaves out the masked steps, whose
    # outputs are not zero.
    x = np.random.default_rng(6).normal(size=(2, 4, 3))
    x[:, 2:] = 0.0
    inputs = keras.Input((4, 3), dtype="float64")
    layer = ProxyNormalization(dtype="float64")
    h = layer(keras.layers.Masking(0.0, dtype="float64")(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D(
        dtype="float64")(h))
    ones, zeros = np.ones(3), np.zeros(3)
    want = ref.proxy_norm_forward(x[:, :2], -1, "relu", ones, zeros, zeros,
                                  zeros, epsilon=0.03, n=200)
    harness.assert_allclose(harness.to_numpy(model(x)), want.mean(axis=1),
                            rtol=1e-10, atol=1e-12)


@pytest.mark.all_backends
def test_without_affine_weights():
    layer = ProxyNormalization(center=False, scale=False, proxy_affine=False)
    layer.build((None, 4))
    assert layer.trainable_weights == []
    x = np.random.default_rng(10).normal(size=(3, 4))
    r = ref.midpoint_normal_quantiles(200)
    m, v = np.maximum(r, 0).mean(), np.maximum(r, 0).var()
    harness.assert_allclose(harness.to_numpy(layer(x.astype("float32"))),
                               (np.maximum(x, 0) - m) / np.sqrt(v + 0.03),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.all_backends
@pytest.mark.parametrize("kwargs, match", [
    (dict(epsilon=0.0), r"Received: epsilon=0.0"),
    (dict(epsilon=float("nan")), r"Received: epsilon=nan"),
    (dict(num_quantiles=1), r"Received: num_quantiles=1"),
    (dict(num_quantiles=200.0), r"Received: num_quantiles=200.0"),
    (dict(activation="softmax"), r"elementwise.*activation='softmax'"),
    (dict(activation="no_such_activation"),
     r"activation='no_such_activation'"),
    (dict(proxy_affine=1), r"Received: proxy_affine=1"),
    (dict(axis=0), r"Received: axis=0"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProxyNormalization(**kwargs)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"rank >= 2"):
        ProxyNormalization().build((4,))
    with pytest.raises(ValueError, match=r"channel dimension"):
        ProxyNormalization()(keras.Input((4, None)))
