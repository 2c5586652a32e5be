"""FilterResponseNormalizationTLU (FRN and TLU fused) against the float64
NumPy reference of FRN followed by TLU, against the two separate layers, and
its properties (batch independence, training == inference, XLA == eager,
mixed precision)."""

import numpy as np
import pytest
import tensorflow as tf

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from tests import harness
from tests import numpy_reference as ref

EPSILON = 1e-4


def _random_params(channels, learned_epsilon, seed):
    rng = np.random.default_rng(seed)
    return {
        # Both signs of gamma: the TLU mask must follow the sign of y.
        "gamma": rng.uniform(0.5, 1.5, channels) * rng.choice([-1, 1],
                                                              channels),
        "beta": rng.normal(size=channels),
        "eps_learned": -3e-3 if learned_epsilon else None,
        # Thresholds inside the range of y, so both branches of max are hit.
        "tau": rng.normal(size=channels) * 0.5,
    }


def _fused(shape, axis, params, dtype="float64"):
    layer = FilterResponseNormalizationTLU(
        axis=axis, epsilon=EPSILON,
        learned_epsilon=params["eps_learned"] is not None, dtype=dtype,
    )
    layer.build(shape)
    layer.gamma.assign(params["gamma"])
    layer.beta.assign(params["beta"])
    layer.tau.assign(params["tau"])
    if params["eps_learned"] is not None:
        layer.eps_learned.assign([params["eps_learned"]])
    return layer


def _weights(params):
    return (params["gamma"], params["beta"], EPSILON, params["eps_learned"],
            params["tau"])


def _reference(x, axis, params):
    return ref.frn_tlu_forward(x, axis, *_weights(params))


def _reference_gradients(x, axis, params, upstream):
    """The chain rule through the two independent references."""
    return ref.frn_tlu_backward(x, axis, *_weights(params), upstream)


@pytest.mark.all_backends
# The N = 1 cases without a learned epsilon warn (as they should).
@pytest.mark.filterwarnings("ignore:.*single value per sample:UserWarning")
@pytest.mark.parametrize("learned_epsilon", [False, True])
@pytest.mark.parametrize(
    "shape,axis",
    harness.SHAPES_AND_AXES,
    ids=harness.ids(harness.SHAPES_AND_AXES),
)
def test_forward_and_gradients_match_float64_reference(
    shape, axis, learned_epsilon
):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) * 0.05  # small, so that eps matters
    upstream = rng.normal(size=shape)
    params = _random_params(shape[axis], learned_epsilon, seed=2)
    layer = _fused(shape, axis, params)

    y, grads = harness.outputs_and_gradients(layer, x, upstream)

    want = _reference(x, axis, params)
    harness.assert_allclose(y, want, rtol=1e-10)
    # The test is only meaningful if the threshold really clips somewhere.
    channel_shape = [c if i == axis % len(shape) else 1
                     for i, c in enumerate(shape)]
    clipped = want == np.reshape(params["tau"], channel_shape)
    assert 0.05 < clipped.mean() < 0.95
    expected = _reference_gradients(x, axis, params, upstream)
    for name in ["x", "gamma", "beta", "tau"]:
        harness.assert_allclose(grads[name], expected[name], rtol=1e-8,
                                atol=1e-10, err_msg=name)
    if learned_epsilon:
        harness.assert_allclose(grads["learned_epsilon"],
                                [expected["eps_learned"]], rtol=1e-8)


@pytest.mark.all_backends
@pytest.mark.parametrize("center,scale", [(False, True), (True, False)])
def test_without_beta_or_gamma(center, scale):
    shape, axis = (2, 5, 4, 6), -1
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape)
    upstream = rng.normal(size=shape)
    params = _random_params(6, False, seed=4)
    layer = FilterResponseNormalizationTLU(
        epsilon=EPSILON, center=center, scale=scale, dtype="float64")
    layer.build(shape)
    layer.tau.assign(params["tau"])
    if not center:
        params["beta"] = np.zeros(6)
    if not scale:
        params["gamma"] = np.ones(6)
    for name in ("gamma", "beta"):
        if getattr(layer, name) is not None:
            getattr(layer, name).assign(params[name])

    y, grads = harness.outputs_and_gradients(layer, x, upstream)

    harness.assert_allclose(y, _reference(x, axis, params), rtol=1e-10)
    expected = _reference_gradients(x, axis, params, upstream)
    assert sorted(grads) == sorted(
        ["x", "tau"] + (["beta"] if center else []) + (
            ["gamma"] if scale else []))
    for name in grads:
        harness.assert_allclose(grads[name], expected[name], rtol=1e-8,
                                atol=1e-10, err_msg=name)


def _pair(shape, axis, params, dtype):
    """FRN then TLU, as one model (its weights: FRN's, then tau)."""
    frn = FilterResponseNormalization(
        axis=axis, epsilon=EPSILON,
        learned_epsilon=params["eps_learned"] is not None, dtype=dtype)
    tlu = TLU(axis=axis, dtype=dtype)
    frn.build(shape)
    tlu.build(shape)
    frn.gamma.assign(params["gamma"])
    frn.beta.assign(params["beta"])
    tlu.tau.assign(params["tau"])
    if params["eps_learned"] is not None:
        frn.eps_learned.assign([params["eps_learned"]])
    return keras.Sequential([frn, tlu])


PENALTY_SHAPES_AND_AXES = [((4, 6), -1), ((2, 5, 4, 6), -1), ((2, 6, 5, 4), 1)]


@pytest.mark.all_backends
@pytest.mark.parametrize("shape,axis", PENALTY_SHAPES_AND_AXES,
                         ids=harness.ids(PENALTY_SHAPES_AND_AXES))
def test_gradient_penalty_gradients_match_reference(shape, axis):
    # A gradient penalty, P = sum(v * d/dx sum(w * layer(x))), trains the
    # weights through the derivative of the fused backward: its gradients
    # w.r.t. x and the weights, against central differences of P computed
    # with the reference's chain rule through FRN and TLU.
    params = _random_params(shape[axis], learned_epsilon=True, seed=16)

    def reference_grad_x(x, p, w):
        return _reference_gradients(x, axis, p, w)["x"]

    harness.assert_penalty_gradients_match(
        _fused(shape, axis, params), shape, 15, reference_grad_x, params,
        {"gamma": "gamma", "beta": "beta", "tau": "tau",
         "learned_epsilon": "eps_learned"})


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("learned_epsilon", [False, True])
def test_equals_the_separate_layers_in_float32(jit_compile, learned_epsilon):
    shape, axis = (3, 8, 8, 6), -1
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    params = _random_params(6, learned_epsilon, seed=6)
    fused = _fused(shape, axis, params, dtype="float32")
    pair = _pair(shape, axis, params, dtype="float32")

    mode = "xla" if jit_compile else "function"
    y, grads = harness.traced_outputs_and_gradients(fused, x, upstream, mode)
    y_pair, grads_pair = harness.traced_outputs_and_gradients(
        pair, x, upstream, mode)

    np.testing.assert_allclose(y, y_pair, rtol=1e-6, atol=1e-6)
    # The same weight names in both: gamma, beta, [eps_learned], tau.
    harness.assert_same_gradients(grads, grads_pair, rtol=1e-4, atol=1e-5)


def test_ties_send_the_gradient_to_y_as_the_separate_layers_do():
    # gamma = 1, beta = 0, tau = 0: every zero input gives y == tau exactly.
    x = np.zeros((2, 4, 4, 3), "float32")
    x[:, ::2] = np.random.default_rng(7).normal(size=(2, 2, 4, 3))
    upstream = np.random.default_rng(8).normal(size=x.shape).astype("float32")
    params = {"gamma": np.ones(3), "beta": np.zeros(3), "tau": np.zeros(3),
              "eps_learned": None}
    fused = _fused(x.shape, -1, params, dtype="float32")
    pair = _pair(x.shape, -1, params, dtype="float32")

    _, grads = harness.traced_outputs_and_gradients(
        fused, x, upstream, "function")
    _, grads_pair = harness.traced_outputs_and_gradients(
        pair, x, upstream, "function")

    harness.assert_same_gradients(grads, grads_pair, rtol=1e-5, atol=1e-6)
    # At the ties the gradient reached x (through y: dx = r * upstream
    # there, as x = 0), and tau only collects the strictly clipped values.
    assert np.all(grads["x"][:, 1::2] != 0)
    np.testing.assert_allclose(
        grads["tau"], np.sum(np.where(x < 0, upstream, 0), axis=(0, 1, 2)),
        rtol=1e-5, atol=1e-6)


@pytest.mark.all_backends
def test_output_of_a_sample_is_independent_of_its_batch():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(5, 6, 7, 6))
    layer = _fused(x.shape, -1, _random_params(6, True, seed=10))
    batch = harness.to_numpy(layer(x))
    for i in range(len(x)):
        alone = harness.to_numpy(layer(x[i:i + 1]))
        harness.assert_allclose(batch[i:i + 1], alone, rtol=1e-12)
    other = x.copy()
    other[[0, 1, 3, 4]] = rng.normal(size=(4, 6, 7, 6)) * 50
    harness.assert_allclose(harness.to_numpy(layer(other))[2], batch[2],
                            rtol=1e-12)


@pytest.mark.all_backends
def test_training_and_inference_compute_the_same_function():
    x = np.random.default_rng(11).normal(size=(4, 8, 8, 6)).astype("float32")
    inputs = keras.Input((8, 8, 6))
    model = keras.Model(inputs, FilterResponseNormalizationTLU(
        tau_initializer="ones")(inputs))
    harness.assert_array_equal(harness.to_numpy(model(x, training=True)),
                               harness.to_numpy(model(x, training=False)))
    assert model.non_trainable_weights == []


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "policy,rtol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 1.6e-2)]
)
def test_mixed_precision_large_activations(policy, rtol):
    # |x| ~ 1e3: a float16 mean(x * x) would overflow.
    compute = policy.split("_")[1]
    rng = np.random.default_rng(12)
    x = (rng.normal(size=(2, 8, 8, 6)) * 1e3).astype(compute)
    params = _random_params(6, True, seed=13)
    layer = _fused(x.shape, -1, params, dtype=policy)
    upstream = rng.normal(size=x.shape)

    y, grads = harness.outputs_and_gradients(layer, x, upstream)

    assert y.dtype == np.dtype(compute)
    assert layer.tau.dtype == "float32"
    want = _reference(x.astype(np.float64), -1, params)
    harness.assert_allclose(y.astype(np.float64), want, rtol=rtol,
                            atol=rtol * 3)
    expected = _reference_gradients(x.astype(np.float64), -1, params,
                                     upstream)
    for name in ["gamma", "beta", "tau"]:
        assert np.all(np.isfinite(grads[name])), name
        harness.assert_allclose(grads[name], expected[name], rtol=rtol * 5,
                                atol=rtol * 5 * np.abs(expected[name]).max(),
                                err_msg=name)


def test_xla_compiled_equals_eager_and_really_compiles():
    shape = (2, 6, 5, 4)
    rng = np.random.default_rng(14)
    x = rng.normal(size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    layer = _fused(shape, 1, _random_params(6, True, seed=15),
                   dtype="float32")
    y, grads = harness.traced_outputs_and_gradients(layer, x, upstream,
                                                    "eager")
    y_xla, grads_xla = harness.traced_outputs_and_gradients(
        layer, x, upstream, "xla")
    np.testing.assert_allclose(y_xla, y, rtol=1e-5, atol=1e-6)
    harness.assert_same_gradients(grads_xla, grads, rtol=1e-4, atol=1e-5)
    hlo = tf.function(layer, jit_compile=True).experimental_get_compiler_ir(
        tf.constant(x))(stage="hlo")
    assert "rsqrt" in hlo and "maximum" in hlo


@pytest.mark.all_backends
def test_fit_trains_every_weight():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(32, 6, 6, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int32")
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3)(inputs)
    h = FilterResponseNormalizationTLU(learned_epsilon=True)(h)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    fused = model.layers[2]
    before = [w.numpy().copy() for w in fused.weights]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for w, old in zip(fused.weights, before):
        assert not np.allclose(harness.to_numpy(w), old), w.name


@pytest.mark.parametrize(
    "kwargs,match",
    [({"epsilon": 0.0}, "epsilon=0.0"), ({"axis": 0}, "axis=0"),
     ({"learned_epsilon": "yes"}, "learned_epsilon='yes'")],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FilterResponseNormalizationTLU(**kwargs)


def test_bad_input_rank_raises_value_error():
    with pytest.raises(ValueError, match="rank"):
        FilterResponseNormalizationTLU()(np.zeros((4,), "float32"))
