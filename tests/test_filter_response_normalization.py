"""FilterResponseNormalization against the float64 NumPy reference, its
properties (batch independence, training == inference, XLA == eager), mixed
precision and argument checking."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras

from frn_keras import FilterResponseNormalization
from tests import harness
from tests import numpy_reference as ref

# The N = 1 cases without a learned epsilon warn (as they should).
N1_WARNING = "ignore:.*single value per sample:UserWarning"


def _random_frn(shape, axis, learned_epsilon, dtype="float64", seed=0):
    """A built layer with random gamma, beta (and eps_learned)."""
    rng = np.random.default_rng(seed)
    layer = FilterResponseNormalization(
        axis=axis, epsilon=1e-4, learned_epsilon=learned_epsilon, dtype=dtype
    )
    layer.build(shape)
    c = shape[axis]
    params = {
        "gamma": rng.uniform(0.5, 1.5, size=c),
        "beta": rng.normal(size=c),
        "eps_learned": -3e-3 if learned_epsilon else None,
    }
    layer.gamma.assign(params["gamma"])
    layer.beta.assign(params["beta"])
    if learned_epsilon:
        layer.eps_learned.assign([params["eps_learned"]])
    return layer, params


def _reference(x, axis, params):
    return ref.frn_forward(
        x, axis, params["gamma"], params["beta"], 1e-4, params["eps_learned"]
    )


@pytest.mark.all_backends
@pytest.mark.filterwarnings(N1_WARNING)
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
    # Small activations so that eps matters and its gradient is tested.
    x = rng.normal(size=shape) * 0.05
    upstream = rng.normal(size=shape)
    layer, params = _random_frn(shape, axis, learned_epsilon)

    y, grads = harness.outputs_and_gradients(layer, x, upstream)

    harness.assert_allclose(y, _reference(x, axis, params), rtol=1e-10)
    expected = ref.frn_backward(
        x, axis, params["gamma"], params["beta"], 1e-4,
        params["eps_learned"], upstream,
    )
    for name in ["x", "gamma", "beta"]:
        harness.assert_allclose(
            grads[name], expected[name], rtol=1e-8, atol=1e-10, err_msg=name
        )
    if learned_epsilon:
        harness.assert_allclose(
            grads["learned_epsilon"], [expected["eps_learned"]], rtol=1e-8
        )


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "shape,axis",
    harness.SHAPES_AND_AXES,
    ids=harness.ids(harness.SHAPES_AND_AXES),
)
def test_float32_forward_matches_reference(shape, axis):
    x = np.random.default_rng(2).normal(size=shape).astype("float32") * 3
    layer, params = _random_frn(shape, axis, True, dtype="float32")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    harness.assert_allclose(
        harness.to_numpy(y), _reference(x, axis, params), rtol=1e-5, atol=1e-5
    )


@pytest.mark.all_backends
def test_statistics_are_per_sample_and_per_channel():
    # Scaling one channel of one sample leaves every other output untouched
    # and that channel's output unchanged up to the effect of eps.
    x = np.random.default_rng(3).normal(size=(3, 4, 5, 6))
    layer = FilterResponseNormalization(dtype="float64")
    scaled = x.copy()
    scaled[1, :, :, 2] *= 1000.0
    y, y_scaled = harness.to_numpy(layer(x)), harness.to_numpy(layer(scaled))
    harness.assert_allclose(y_scaled[1, :, :, 2], y[1, :, :, 2], rtol=1e-5)
    y[1, :, :, 2] = y_scaled[1, :, :, 2] = 0
    harness.assert_array_equal(y_scaled, y)


@pytest.mark.all_backends
def test_output_of_a_sample_is_independent_of_its_batch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6, 7, 6))
    layer, _ = _random_frn(x.shape, -1, True)
    batch = harness.to_numpy(layer(x))
    for i in range(len(x)):
        alone = harness.to_numpy(layer(x[i : i + 1]))
        # Equal up to float64 summation order (vectorized reductions).
        harness.assert_allclose(batch[i : i + 1], alone, rtol=1e-12)
    other = x.copy()
    other[[0, 1, 3, 4]] = rng.normal(size=(4, 6, 7, 6)) * 50
    harness.assert_allclose(harness.to_numpy(layer(other))[2], batch[2], rtol=1e-12)


@pytest.mark.all_backends
def test_training_and_inference_compute_the_same_function():
    x = np.random.default_rng(5).normal(size=(4, 8, 8, 6)).astype("float32")
    inputs = keras.Input((8, 8, 6))
    model = keras.Model(inputs, FilterResponseNormalization()(inputs))
    harness.assert_array_equal(
        harness.to_numpy(model(x, training=True)), harness.to_numpy(model(x, training=False))
    )
    # No state is updated by a training call (no moving averages).
    assert model.non_trainable_weights == []


@pytest.mark.parametrize(
    "shape,axis", [((4, 6), -1), ((2, 5, 4, 6), -1), ((2, 6, 5, 4), 1)]
)
def test_xla_compiled_equals_eager(shape, axis):
    rng = np.random.default_rng(6)
    x = rng.normal(size=shape).astype("float32")
    upstream = rng.normal(size=shape)
    layer, _ = _random_frn(shape, axis, True, dtype="float32")

    y, grads = harness.traced_outputs_and_gradients(layer, x, upstream,
                                                    "eager")
    y_xla, grads_xla = harness.traced_outputs_and_gradients(
        layer, x, upstream, "xla")
    # XLA really compiles the layer.
    hlo = tf.function(layer, jit_compile=True).experimental_get_compiler_ir(
        tf.constant(x))(stage="hlo")
    assert "rsqrt" in hlo
    np.testing.assert_allclose(y_xla, y, rtol=1e-5, atol=1e-6)
    harness.assert_same_gradients(grads_xla, grads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
@pytest.mark.parametrize("learned_epsilon", [False, True])
def test_all_zero_input_gives_finite_output_and_gradients(
    dtype, learned_epsilon
):
    layer = FilterResponseNormalization(
        learned_epsilon=learned_epsilon, dtype=dtype,
        beta_initializer="ones",
    )
    x = tf.zeros((2, 4, 4, 3), dtype=layer.compute_dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    np.testing.assert_array_equal(harness.to_numpy(y), np.ones((2, 4, 4, 3)))
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "policy,rtol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 1.6e-2)]
)
def test_mixed_precision_large_activations(policy, rtol):
    # |x| ~ 1e3: a float16 mean(x * x) overflows (x * x > 65504).
    compute = policy.split("_")[1]
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(2, 8, 8, 6)) * 1e3).astype(compute)
    layer, params = _random_frn(x.shape, -1, True, dtype=policy)
    upstream = rng.normal(size=x.shape)

    y, grads = harness.outputs_and_gradients(layer, x, upstream)

    assert y.dtype == np.dtype(compute)
    assert layer.gamma.dtype == "float32"
    assert layer.eps_learned.dtype == "float32"
    # Reference on the same (rounded) inputs; the output tolerance is the
    # output dtype's resolution.
    x64 = x.astype(np.float64)
    want = _reference(x64, -1, params)
    harness.assert_allclose(
        y.astype(np.float64), want, rtol=rtol, atol=rtol * 3
    )
    expected = ref.frn_backward(
        x64, -1, params["gamma"], params["beta"], 1e-4,
        params["eps_learned"], upstream,
    )
    scale = np.abs(expected["gamma"]).max()
    harness.assert_allclose(grads["gamma"], expected["gamma"],
                               atol=rtol * scale)
    assert np.all(np.isfinite(grads["x"].astype(np.float32)))


@pytest.mark.all_backends
def test_mixed_precision_float32_inputs_are_used_as_given():
    # float32 inputs beyond float16's range (65504) are normalized from their
    # float32 values, not first cast to float16 (inf).
    rng = np.random.default_rng(11)
    x = (rng.normal(size=(2, 8, 8, 6)) * 1e5).astype("float32")
    layer, params = _random_frn(x.shape, -1, False, dtype="mixed_float16")
    y = harness.to_numpy(layer(x))
    assert y.dtype == np.float16
    want = _reference(x.astype(np.float64), -1, params)
    harness.assert_allclose(y.astype(np.float64), want, rtol=2e-3, atol=6e-3)


def test_mixed_precision_policy_in_a_model():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3)(inputs)
    h = FilterResponseNormalization()(h)
    model = keras.Model(inputs, h)
    y = model(np.full((2, 8, 8, 3), 300.0, "float32"))
    assert y.dtype == tf.float16
    assert np.all(np.isfinite(harness.to_numpy(y)))


def test_compute_output_shape_and_symbolic_call():
    layer = FilterResponseNormalization(axis=1)
    assert layer.compute_output_shape((None, 6, 5, 4)) == (None, 6, 5, 4)
    with pytest.raises(ValueError, match=r"rank >= 2"):
        layer.compute_output_shape((6,))
    out = layer(keras.Input((6, None, None)))
    assert tuple(out.shape) == (None, 6, None, None)
    assert layer.gamma.shape == (6,)


@pytest.mark.all_backends
@pytest.mark.parametrize("epsilon", [0, -1e-6, float("nan"), float("inf"),
                                     "1e-6", True, None])
def test_bad_epsilon_raises(epsilon):
    with pytest.raises(ValueError, match=r"`epsilon`.*Received: epsilon="):
        FilterResponseNormalization(epsilon=epsilon)


@pytest.mark.parametrize("axis", [0, 1.5, "channels", None, True])
def test_bad_axis_argument_raises(axis):
    with pytest.raises(ValueError, match=r"`axis`.*Received: axis="):
        FilterResponseNormalization(axis=axis)


def test_tfa_style_axis_list_points_to_migration():
    with pytest.raises(ValueError, match=r"frn_keras.migration.*axis=\[1, 2\]"):
        FilterResponseNormalization(axis=[1, 2])


@pytest.mark.all_backends
@pytest.mark.parametrize("axis,shape,problem", [
    (4, (2, 3, 3, 4), "is out of range"),
    (-5, (2, 3, 3, 4), "is out of range"),
    (-4, (2, 3, 3, 4), "resolves to the batch axis"),
    (2, (2, 3), "is out of range")])
def test_axis_out_of_range_or_batch_for_input_raises(axis, shape, problem):
    layer = FilterResponseNormalization(axis=axis)
    with pytest.raises(ValueError,
                       match=rf"`axis` {problem}.*Received: axis={axis}"):
        layer(np.ones(shape, "float32"))


def test_rank_1_input_raises():
    with pytest.raises(ValueError, match=r"rank >= 2.*input_shape=\(5,\)"):
        FilterResponseNormalization().build((5,))


def test_unknown_channel_dimension_raises():
    with pytest.raises(ValueError, match=r"channel dimension.*None"):
        FilterResponseNormalization()(keras.Input((8, 8, None)))


@pytest.mark.parametrize("value", [-1e-4, float("nan"), True])
def test_bad_learned_epsilon_initializer_raises(value):
    with pytest.raises(
        ValueError, match=r"Received: learned_epsilon_initializer="
    ):
        FilterResponseNormalization(learned_epsilon_initializer=value)


@pytest.mark.parametrize(
    "value", [0.0, 0, "zeros", keras.initializers.Constant(0.0)],
    ids=["0.0", "0", "zeros", "Constant(0)"])
def test_learned_epsilon_starting_at_zero_raises(value):
    # |eps_learned| has no gradient at 0: such a weight would never train.
    with pytest.raises(ValueError, match=r"never train.*Received: "
                       r"learned_epsilon_initializer="):
        FilterResponseNormalization(learned_epsilon=True,
                                    learned_epsilon_initializer=value)
    # Unused without a learned epsilon, where 0 is harmless.
    layer = FilterResponseNormalization(learned_epsilon_initializer=value)
    layer.build((None, 3, 4))
    assert layer.eps_learned is None and len(layer.weights) == 2


@pytest.mark.parametrize("shape,axis", [((None, 4), -1), ((None, 4), 1),
                                        ((None, 1, 1, 4), -1),
                                        ((None, 4, 1, 1), 1),
                                        ((None, 1, 4), -1)])
def test_a_single_position_without_learned_epsilon_warns(shape, axis):
    # N = 1: x / sqrt(x^2 + eps) is about sign(x), with almost no gradient.
    with pytest.warns(UserWarning, match=r"single value per sample.*"
                      r"learned_epsilon=True"):
        FilterResponseNormalization(axis=axis).build(shape)


@pytest.mark.parametrize("shape,learned_epsilon", [
    ((None, 4), True), ((None, 1, 1, 4), True), ((None, 2, 1, 4), False),
    ((None, None, None, 4), False), ((None, None, 4), False)])
def test_several_or_unknown_positions_or_a_learned_epsilon_do_not_warn(
        shape, learned_epsilon):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FilterResponseNormalization(learned_epsilon=learned_epsilon).build(
            shape)


@pytest.mark.all_backends
@pytest.mark.parametrize("shape,axis,learned", [
    ((4, 6), -1, True), ((2, 6, 1, 1), 1, True), ((2, 1, 1, 6), -1, True),
    ((2, 5, 4, 6), -1, False), ((3, 5, 6), -1, False)])
def test_auto_learns_epsilon_exactly_at_a_single_position(shape, axis,
                                                         learned):
    layer = FilterResponseNormalization(axis=axis, epsilon=1e-4,
                                        learned_epsilon="auto",
                                        dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no N = 1 warning either way
        layer.build(shape)
    assert (layer.eps_learned is not None) == learned
    assert layer.get_config()["learned_epsilon"] == "auto"
    # The same function as the explicit setting, against the reference.
    x = np.random.default_rng(18).normal(size=shape) * 0.05
    eps_learned = 1e-4 if learned else None  # the initializer's default
    gamma, beta = np.ones(shape[axis]), np.zeros(shape[axis])
    harness.assert_allclose(
        harness.to_numpy(layer(x)),
        ref.frn_forward(x, axis, gamma, beta, 1e-4, eps_learned), rtol=1e-6)


def test_auto_without_known_sizes_does_not_learn_epsilon():
    layer = FilterResponseNormalization(learned_epsilon="auto")
    layer.build((None, None, None, 6))
    assert layer.eps_learned is None


@pytest.mark.parametrize("value", ["yes", "Auto", 1, None])
def test_learned_epsilon_must_be_bool_or_auto(value):
    with pytest.raises(ValueError, match=r"a bool or \"auto\". "
                       rf"Received: learned_epsilon={value!r}"):
        FilterResponseNormalization(learned_epsilon=value)


@pytest.mark.parametrize("name", ["center", "scale"])
def test_center_and_scale_must_be_bool(name):
    with pytest.raises(ValueError, match=rf"`{name}`.*Received: {name}=1"):
        FilterResponseNormalization(**{name: 1})


def test_input_with_other_channel_count_after_build_raises():
    layer = FilterResponseNormalization()
    layer(np.ones((1, 4, 4, 6), "float32"))
    with pytest.raises(ValueError, match="expected axis"):
        layer(np.ones((1, 4, 4, 5), "float32"))


def test_learned_epsilon_initial_value_and_weights():
    layer = FilterResponseNormalization(learned_epsilon=True)
    layer.build((None, 4, 4, 3))
    assert [w.name for w in layer.weights] == [
        "gamma", "beta", "learned_epsilon"
    ]
    np.testing.assert_allclose(layer.eps_learned.numpy(), [1e-4])
    layer = FilterResponseNormalization(
        learned_epsilon=True, learned_epsilon_initializer=0.5,
        center=False, scale=False,
    )
    layer.build((None, 3))
    assert [w.name for w in layer.weights] == ["learned_epsilon"]
    np.testing.assert_allclose(layer.eps_learned.numpy(), [0.5])


@pytest.mark.all_backends
@pytest.mark.parametrize("center,scale", [(False, True), (True, False),
                                          (False, False)])
def test_gradients_without_center_or_scale_match_reference(center, scale):
    rng = np.random.default_rng(8)
    shape = (2, 5, 4, 6)
    x, upstream = rng.normal(size=shape) * 0.05, rng.normal(size=shape)
    layer = FilterResponseNormalization(
        epsilon=1e-4, center=center, scale=scale, learned_epsilon=True,
        dtype="float64",
    )
    layer.build(shape)
    layer.eps_learned.assign([1e-4])  # exactly (the initializer is float32)
    y, grads = harness.outputs_and_gradients(layer, x, upstream)
    ones, zeros = np.ones(6), np.zeros(6)
    harness.assert_allclose(
        y, ref.frn_forward(x, -1, ones, zeros, 1e-4, 1e-4), rtol=1e-10)
    expected = ref.frn_backward(x, -1, ones, zeros, 1e-4, 1e-4, upstream)
    harness.assert_allclose(grads["x"], expected["x"], rtol=1e-8,
                               atol=1e-10)
    harness.assert_allclose(grads["learned_epsilon"],
                               [expected["eps_learned"]], rtol=1e-8)
    assert ("gamma" in grads) == scale and ("beta" in grads) == center


def _plain_frn(params):
    """The formula as a plain TF composition (autodiff gives its
    gradients), channels-last and rank 4."""
    gamma = tf.constant(params["gamma"])
    beta = tf.constant(params["beta"])

    def plain(x):
        nu2 = tf.reduce_mean(x * x, axis=[1, 2], keepdims=True)
        eps = 1e-4 + abs(params["eps_learned"])
        return gamma * x * tf.math.rsqrt(nu2 + eps) + beta

    return plain


def test_second_order_gradients_match_autodiff_of_the_formula():
    # The analytic backward must itself be differentiable (e.g. for
    # gradient penalties): compare a Hessian-vector product with autodiff
    # of a plain TF composition of the same formula.
    rng = np.random.default_rng(9)
    shape = (2, 3, 4, 5)
    x, v, w = (tf.constant(rng.normal(size=shape)) for _ in range(3))
    layer, params = _random_frn(shape, -1, True)
    np.testing.assert_allclose(
        harness.hessian_vector_product(layer, x, v, w).numpy(),
        harness.hessian_vector_product(_plain_frn(params), x, v, w).numpy(),
        rtol=1e-8, atol=1e-10)


PENALTY_SHAPES_AND_AXES = [((4, 6), -1), ((3, 5, 6), -1), ((2, 5, 4, 6), -1),
                           ((2, 6, 5, 4), 1)]


@pytest.mark.all_backends
@pytest.mark.parametrize("shape,axis", PENALTY_SHAPES_AND_AXES,
                         ids=harness.ids(PENALTY_SHAPES_AND_AXES))
def test_gradient_penalty_gradients_match_reference(shape, axis):
    # A gradient penalty, P = sum(v * d/dx sum(w * frn(x))), trains the
    # weights through the derivative of the analytic backward: its
    # gradients w.r.t. x and the weights, against central differences of P
    # computed with the float64 NumPy reference's backward.
    layer, params = _random_frn(shape, axis, learned_epsilon=True)

    def reference_grad_x(x, p, w):
        return ref.frn_backward(x, axis, p["gamma"], p["beta"], 1e-4,
                                p["eps_learned"], w)["x"]

    harness.assert_penalty_gradients_match(
        layer, shape, 14, reference_grad_x, params,
        {"gamma": "gamma", "beta": "beta", "learned_epsilon": "eps_learned"})


@pytest.mark.parametrize("in_function", [False, True])
def test_second_order_gradients_at_an_all_zero_channel(in_function):
    # A dead channel (all zeros, as after a ReLU) has nu2 = 0. The
    # Hessian-vector product must stay finite and match the formula's:
    # TF's own gradient of the Euclidean norm that computes the sum of
    # squares, x / norm, is NaN there.
    rng = np.random.default_rng(12)
    shape = (2, 3, 4, 5)
    x = rng.normal(size=shape)
    x[0, :, :, 2] = 0.0
    x = tf.constant(x)
    v, w = (tf.constant(rng.normal(size=shape)) for _ in range(2))
    layer, params = _random_frn(shape, -1, True)
    hvp = (tf.function(harness.hessian_vector_product) if in_function
           else harness.hessian_vector_product)
    result = hvp(layer, x, v, w).numpy()
    assert np.isfinite(result).all()
    want = harness.hessian_vector_product(_plain_frn(params), x, v, w)
    np.testing.assert_allclose(result, want.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("axis,spec", [(-1, (None, None, None, 6)),
                                       (1, (None, 6, None, None)),
                                       (-1, (None, None, 6))])
def test_unknown_batch_and_spatial_sizes_at_trace_time(axis, spec):
    # Fully convolutional use: sizes are only known when the graph runs.
    layer, params = _random_frn((None,) + spec[1:], axis, True)
    fn = tf.function(layer, input_signature=[tf.TensorSpec(spec, tf.float64)])
    rng = np.random.default_rng(10)
    for size in (3, 5):
        shape = tuple(6 if d == 6 else (2 if i == 0 else size)
                      for i, d in enumerate(spec))
        x = rng.normal(size=shape) * 0.05
        np.testing.assert_allclose(harness.to_numpy(fn(tf.constant(x))),
                                   _reference(x, axis, params), rtol=1e-10)


@pytest.mark.all_backends
@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_built_at_one_size_is_right_at_another(axis):
    # The folded shape is taken from each input, not from the build shape.
    built = (2, 8, 8, 6) if axis == -1 else (2, 6, 8, 8)
    layer, params = _random_frn(built, axis, False)
    rng = np.random.default_rng(11)
    for size in [(3, 5), (16, 2)]:
        shape = (4, *size, 6) if axis == -1 else (4, 6, *size)
        x = rng.normal(size=shape)
        harness.assert_allclose(harness.to_numpy(layer(x)),
                                _reference(x, axis, params), rtol=1e-10)


def _frn_graph(jit_compile=False):
    """The GraphDef of a channels-last FRN model traced by `tf.function`."""
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, FilterResponseNormalization()(inputs))
    fn = tf.function(lambda x: model(x), jit_compile=jit_compile)
    return fn.get_concrete_function(
        tf.TensorSpec((None, 8, 8, 4))).graph.as_graph_def()


def _graph_ops_of_frn(jit_compile=False):
    return [node.op for node in _frn_graph(jit_compile).node]


def test_static_shapes_need_no_run_time_shape_ops():
    # Without XLA (e.g. a served SavedModel) each op is a kernel launch:
    # with known spatial sizes the fold is one constant-shape Reshape each
    # way and channels-last weights broadcast without a Reshape.
    ops = _graph_ops_of_frn()
    assert not {"Shape", "StridedSlice", "Pack"} & set(ops), ops
    assert ops.count("Reshape") == 2, ops


def test_graph_sums_squares_in_one_reduction():
    # Without XLA, `sum(square(x))` writes x^2 to memory and reads it back;
    # TF's Euclidean-norm reduction reads x once. The only Square left is
    # that of the per-channel norm.
    graph = _frn_graph()
    producers = {node.name: node.op for node in graph.node}
    ops = [node.op for node in graph.node]
    assert ops.count("EuclideanNorm") == 1 and "Sum" not in ops, ops
    squares = [node for node in graph.node if node.op == "Square"]
    assert squares and all(
        producers[node.input[0].split(":")[0]] in ("EuclideanNorm",
                                                   "IdentityN")
        for node in squares), ops


def test_xla_graph_sums_squares_without_euclidean_norm():
    # XLA has no EuclideanNorm kernel: a jit_compile function gets the sum.
    ops = _graph_ops_of_frn(jit_compile=True)
    assert "EuclideanNorm" not in ops and "Sum" in ops, ops


def test_without_tensorflows_xla_marker_the_sum_is_plain(monkeypatch):
    # If TF's internal marker of XLA tracing is ever gone, the layer must
    # fall back to the sum that compiles everywhere.
    from tensorflow.python.ops import control_flow_util
    monkeypatch.delattr(control_flow_util, "GraphOrParentsInXlaContext")
    ops = _graph_ops_of_frn()
    assert "EuclideanNorm" not in ops and "Sum" in ops, ops
