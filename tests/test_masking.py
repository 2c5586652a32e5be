"""FilterResponseNormalization (and the fused FRN + TLU) with a mask: the
statistics leave the masked-out positions out, checked against the float64
NumPy reference with the same mask, against FRN of the unpadded input, and
through the masks Keras layers pass on (Embedding, Masking, conversion,
fusion)."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras import convert_to_frn
from frn_keras import fuse_frn_tlu
from tests import harness
from tests import numpy_reference as ref

EPSILON = 1e-4


def _random_layer(cls, shape, axis, dtype="float64", seed=0):
    """A built `cls` (FRN or the fused layer) with random weights; returns
    the layer and its weights as float64 arrays."""
    rng = np.random.default_rng(seed)
    layer = cls(axis=axis, epsilon=EPSILON, learned_epsilon=True,
                dtype=dtype)
    layer.build(shape)
    c = shape[axis]
    params = {
        "gamma": rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c),
        "beta": rng.normal(size=c),
        "eps_learned": -3e-3,
        "tau": rng.normal(size=c) * 0.5,
    }
    layer.gamma.assign(params["gamma"])
    layer.beta.assign(params["beta"])
    layer.eps_learned.assign([params["eps_learned"]])
    if cls is FilterResponseNormalizationTLU:
        layer.tau.assign(params["tau"])
    return layer, params


def _random_mask(shape, axis, rng):
    """A mask of `shape` without its channel `axis`: about 60% of positions
    kept, none of the first sample's (so the all-masked-out case runs)."""
    mask = rng.random(np.delete(shape, axis % len(shape))) < 0.6
    mask[0] = False
    return mask


def _reference(cls, x, axis, params, mask, upstream):
    """Float64 output and gradients by the chain rule through the
    independent references."""
    frn_args = (x, axis, params["gamma"], params["beta"], EPSILON,
                params["eps_learned"])
    if cls is FilterResponseNormalization:
        return (ref.frn_forward(*frn_args, mask=mask),
                ref.frn_backward(*frn_args, upstream, mask))
    return (ref.frn_tlu_forward(*frn_args, params["tau"], mask),
            ref.frn_tlu_backward(*frn_args, params["tau"], upstream, mask))


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "cls", [FilterResponseNormalization, FilterResponseNormalizationTLU])
@pytest.mark.parametrize(
    "shape,axis",
    harness.SHAPES_AND_AXES,
    ids=harness.ids(harness.SHAPES_AND_AXES),
)
def test_masked_forward_and_gradients_match_float64_reference(
        shape, axis, cls):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) * 0.05  # small, so that eps matters
    upstream = rng.normal(size=shape)
    mask = _random_mask(shape, axis, rng)
    layer, params = _random_layer(cls, shape, axis)

    y, grads = harness.outputs_and_gradients(layer, x, upstream, mask=mask)

    want, expected = _reference(cls, x, axis, params, mask, upstream)
    harness.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    for name in ["x", "gamma", "beta"] + (
            ["tau"] if cls is FilterResponseNormalizationTLU else []):
        harness.assert_allclose(grads[name], expected[name], rtol=1e-8,
                                atol=1e-10, err_msg=name)
    harness.assert_allclose(grads["learned_epsilon"],
                            [expected["eps_learned"]], rtol=1e-8)
    # The mask changed the result: the unmasked statistics differ.
    unmasked, _ = _reference(cls, x, axis, params, None, upstream)
    assert not np.allclose(want, unmasked)


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "cls", [FilterResponseNormalization, FilterResponseNormalizationTLU])
def test_padding_leaves_the_other_positions_unchanged(cls):
    # Two sequences of 4 and 7 steps, padded to 7: each one's valid outputs
    # and gradients are those of FRN over its own steps alone, whatever the
    # padding holds.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 6))
    lengths = [4, 7]
    mask = np.arange(7)[None, :] < np.array(lengths)[:, None]
    padded = x.copy()
    padded[0, 4:] = np.array([1e30, -7.0, 123.0])[:, None]
    upstream = rng.normal(size=x.shape) * mask[..., None]
    layer, _ = _random_layer(cls, x.shape, -1)

    y, grads = harness.outputs_and_gradients(layer, padded, upstream,
                                             mask=mask)

    assert np.all(grads["x"][0, 4:] == 0)
    for name in ["gamma", "beta", "learned_epsilon"]:
        assert np.all(np.isfinite(grads[name])), name
    for i, n in enumerate(lengths):
        alone, alone_grads = harness.outputs_and_gradients(
            layer, x[i:i + 1, :n], upstream[i:i + 1, :n])
        harness.assert_allclose(y[i:i + 1, :n], alone, rtol=1e-12)
        harness.assert_allclose(grads["x"][i:i + 1, :n], alone_grads["x"],
                                rtol=1e-10, atol=1e-14)
    # Not even an inf or a NaN in the padding reaches the statistics.
    padded[0, 4:] = np.array([np.inf, np.nan, -np.inf])[:, None]
    harness.assert_allclose(harness.to_numpy(layer(padded, mask=mask))[0, :4],
                            y[0, :4], rtol=1e-12)


@pytest.mark.all_backends
def test_masked_ties_send_the_gradient_to_y():
    # y == tau where x == 0 and beta == tau: the gradient goes to y (and on
    # to x), none to tau, as in the unmasked layer on every backend (JAX's
    # own `maximum` would split it in halves).
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 6, 6))
    x[:, ::2] = 0.0
    mask = _random_mask(x.shape, -1, rng)
    upstream = rng.normal(size=x.shape)
    layer, params = _random_layer(FilterResponseNormalizationTLU, x.shape,
                                  -1)
    params["tau"] = params["beta"]
    layer.tau.assign(params["tau"])

    _, grads = harness.outputs_and_gradients(layer, x, upstream, mask=mask)

    _, expected = _reference(FilterResponseNormalizationTLU, x, -1, params,
                             mask, upstream)
    for name in ["x", "tau", "beta"]:
        harness.assert_allclose(grads[name], expected[name], rtol=1e-8,
                                atol=1e-10, err_msg=name)


@pytest.mark.all_backends
def test_an_all_true_mask_computes_the_unmasked_function():
    x = np.random.default_rng(3).normal(size=(2, 5, 4, 6))
    layer, _ = _random_layer(FilterResponseNormalization, x.shape, -1)
    mask = np.ones((2, 5, 4), bool)
    harness.assert_allclose(harness.to_numpy(layer(x, mask=mask)),
                            harness.to_numpy(layer(x)), rtol=1e-12)


@pytest.mark.all_backends
def test_masked_output_of_a_sample_is_independent_of_its_batch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 9, 6))
    mask = _random_mask(x.shape, -1, rng)
    layer, _ = _random_layer(FilterResponseNormalizationTLU, x.shape, -1)
    batch = harness.to_numpy(layer(x, mask=mask))
    for i in range(len(x)):
        alone = harness.to_numpy(layer(x[i:i + 1], mask=mask[i:i + 1]))
        harness.assert_allclose(batch[i:i + 1], alone, rtol=1e-12)


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "cls", [FilterResponseNormalization, FilterResponseNormalizationTLU])
def test_the_mask_of_an_embedding_reaches_frn_and_passes_on(cls):
    # Embedding(mask_zero=True) -> FRN -> (TLU) -> masked average: padding
    # a sequence with zeros changes nothing, and Keras warns of no layer
    # dropping the mask.
    tokens = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 6, mask_zero=True)(tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = cls()(h)
        if cls is FilterResponseNormalization:
            h = TLU()(h)
    model = keras.Model(tokens, keras.layers.GlobalAveragePooling1D()(h))
    sequence = np.array([[3, 9, 14, 1, 7]])
    padded = np.concatenate([sequence, np.zeros((1, 4), int)], axis=1)
    harness.assert_allclose(harness.to_numpy(model(padded)),
                            harness.to_numpy(model(sequence)), rtol=1e-6,
                            atol=1e-7)


def test_masked_model_saves_and_loads(tmp_path):
    inputs = keras.Input((None, 4))
    h = keras.layers.Masking(0.0)(inputs)
    h = FilterResponseNormalizationTLU(beta_initializer="ones")(h)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(h))
    x = np.random.default_rng(5).normal(size=(2, 6, 4)).astype("float32")
    x[0, 3:] = 0.0
    path = tmp_path / "masked.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    # Sample 0 averages its 3 valid steps, normalized over those 3 alone.
    np.testing.assert_allclose(model(x).numpy()[0],
                               model(x[:1, :3]).numpy()[0], rtol=1e-6)


@pytest.mark.parametrize("axis", [-1, 1])
def test_masked_xla_compiled_equals_eager(axis):
    rng = np.random.default_rng(6)
    shape = (3, 5, 4, 6) if axis == -1 else (3, 6, 5, 4)
    x = rng.normal(size=shape).astype("float32")
    mask = _random_mask(shape, axis, rng)
    layer, _ = _random_layer(FilterResponseNormalizationTLU, shape, axis,
                             dtype="float32")
    upstream = rng.normal(size=shape).astype("float32")

    def forward_and_grads(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, mask=mask)
            loss = tf.reduce_sum(y * upstream)
        return y, tape.gradient(loss, [x] + layer.trainable_weights)

    eager = forward_and_grads(tf.constant(x), tf.constant(mask))
    compiled = tf.function(forward_and_grads, jit_compile=True)(
        tf.constant(x), tf.constant(mask))
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-5, atol=1e-6)
    for got, want in zip(compiled[1], eager[1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
@pytest.mark.parametrize(
    "cls", [FilterResponseNormalization, FilterResponseNormalizationTLU])
@pytest.mark.parametrize("shape,axis", [
    # Outside XLA: the wide view of few channels and the squared norm; under
    # XLA: the staged sums over 1024 positions (groups of 32).
    ((2, 1024, 16), -1),
    # Channels first, 40 x 70 positions: staged in groups of 28.
    ((2, 3, 40, 70), 1),
])
def test_masked_gradients_match_float64_reference_on_every_path(
        shape, axis, cls, mode):
    rng = np.random.default_rng(11)
    x = rng.normal(size=shape)
    upstream = rng.normal(size=shape)
    mask = _random_mask(shape, axis, rng)
    layer, params = _random_layer(cls, shape, axis)

    y, grads = harness.traced_outputs_and_gradients(
        layer, x, upstream, mode, mask=tf.constant(mask))

    want, expected = _reference(cls, x, axis, params, mask, upstream)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    assert len(grads) == len(expected)
    for weight_name, got in grads.items():
        name = {"learned_epsilon": "eps_learned"}.get(weight_name,
                                                      weight_name)
        # Weight gradients sum over up to 2 * 2800 positions.
        scale = max(1.0, np.abs(expected[name]).max())
        np.testing.assert_allclose(np.reshape(got, np.shape(expected[name])),
                                   expected[name], rtol=1e-9,
                                   atol=1e-11 * scale, err_msg=name)


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "cls", [FilterResponseNormalization, FilterResponseNormalizationTLU])
def test_masked_gradient_penalty_gradients_match_reference(cls):
    # P = sum(v * d/dx sum(w * layer(x, mask))): its gradients w.r.t. x and
    # the weights against central differences of P computed with the
    # reference's masked backward (a sample with no valid position too).
    shape, axis = (3, 7, 5), -1
    mask = _random_mask(shape, axis, np.random.default_rng(17))
    layer, params = _random_layer(cls, shape, axis)
    keys = {"gamma": "gamma", "beta": "beta", "learned_epsilon": "eps_learned"}
    if cls is FilterResponseNormalizationTLU:
        keys["tau"] = "tau"

    def reference_grad_x(x, p, w):
        return _reference(cls, x, axis, p, mask, w)[1]["x"]

    harness.assert_penalty_gradients_match(
        layer, shape, 18, reference_grad_x, params, keys, mask=mask)


@pytest.mark.parametrize("in_function", [False, True])
def test_masked_second_order_gradients_match_autodiff_of_the_formula(
        in_function):
    # The masked analytic backward must itself be differentiable (gradient
    # penalties): a Hessian-vector product against autodiff of a plain TF
    # composition of the masked formula.
    rng = np.random.default_rng(13)
    shape = (3, 7, 5)
    x, v, w = (tf.constant(rng.normal(size=shape)) for _ in range(3))
    mask = _random_mask(shape, -1, rng)
    layer, params = _random_layer(FilterResponseNormalizationTLU, shape, -1)
    valid = tf.constant(mask[..., None])

    def plain(x):
        counted = tf.where(valid, x, tf.zeros_like(x))
        count = tf.maximum(tf.reduce_sum(tf.cast(valid, x.dtype), axis=1,
                                         keepdims=True), 1)
        nu2 = tf.reduce_sum(counted * counted, axis=1, keepdims=True) / count
        eps = EPSILON + abs(params["eps_learned"])
        y = params["gamma"] * x * tf.math.rsqrt(nu2 + eps) + params["beta"]
        return tf.maximum(y, params["tau"])

    hvp = (tf.function(harness.hessian_vector_product) if in_function
           else harness.hessian_vector_product)
    got = hvp(lambda x: layer(x, mask=mask), x, v, w).numpy()
    want = harness.hessian_vector_product(plain, x, v, w).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_masked_layer_with_sizes_known_only_at_run_time():
    # A fully convolutional model: the height, width and batch are unknown
    # when the graph is traced, so the folded mask's shape is read at run
    # time.
    rng = np.random.default_rng(12)
    shape = (2, 5, 7, 6)
    x = rng.normal(size=shape)
    upstream = rng.normal(size=shape)
    mask = _random_mask(shape, -1, rng)
    layer, params = _random_layer(FilterResponseNormalizationTLU, shape, -1)

    @tf.function(input_signature=[
        tf.TensorSpec((None, None, None, 6), tf.float64),
        tf.TensorSpec((None, None, None), tf.bool)])
    def run(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, mask=mask)
            loss = tf.reduce_sum(y * upstream)
        return y, tape.gradient(loss, x)

    y, grad_x = run(tf.constant(x), tf.constant(mask))

    want, expected = _reference(FilterResponseNormalizationTLU, x, -1, params,
                                mask, upstream)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_x, expected["x"], rtol=1e-8, atol=1e-10)


def test_masked_mixed_precision_large_activations():
    # float16 inputs of ~1e3 (x * x overflows float16): the masked
    # statistics are taken in float32 too.
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(2, 8, 6)) * 1e3).astype("float16")
    mask = _random_mask(x.shape, -1, rng)
    layer, params = _random_layer(FilterResponseNormalization, x.shape, -1,
                                  dtype="mixed_float16")
    y = layer(x, mask=mask)
    assert y.dtype == tf.float16
    want = ref.frn_forward(x.astype(np.float64), -1, params["gamma"],
                           params["beta"], EPSILON, params["eps_learned"],
                           mask=mask)
    # Sample 0 has no valid step: x / sqrt(eps) is far beyond float16.
    np.testing.assert_allclose(y.numpy()[1:].astype(np.float64), want[1:],
                               rtol=2e-3, atol=6e-3)


@pytest.mark.all_backends
@pytest.mark.parametrize("shape,mask_shape", [
    ((2, 5, 6), (2, 5, 6)),   # the input's shape, channel axis included
    ((2, 5, 6), (2,)),
    ((2, 5, 6), (2, 4)),      # another number of steps
    ((2, 4, 5, 6), (2, 5, 4)),
])
def test_a_mask_of_the_wrong_shape_raises(shape, mask_shape):
    layer = FilterResponseNormalization()
    with pytest.raises(ValueError, match=(
            r"`mask` must have the input's shape without its channel axis"
            r".*Received: mask.shape=")):
        layer(np.ones(shape, "float32"), mask=np.ones(mask_shape, bool))


def test_converted_batch_norm_keeps_its_mask():
    # BatchNorm called with an explicit mask becomes FRN called with it.
    x = keras.Input((6, 4))
    mask = keras.Input((6,), dtype="bool")
    h = keras.layers.BatchNormalization()(x, mask=mask)
    model = keras.Model([x, mask], keras.layers.ReLU()(h))
    converted = convert_to_frn(model)
    values = np.random.default_rng(8).normal(size=(1, 6, 4)).astype("float32")
    valid = np.array([[True, True, True, False, False, False]])
    got = converted([values, valid]).numpy()
    # The new TLU's tau starts at 0, a ReLU.
    want = ref.frn_tlu_forward(values, -1, np.ones(4), np.zeros(4), 1e-6,
                               None, np.zeros(4), mask=valid)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fit_with_xla_trains_every_weight_of_a_masked_model():
    # Variable-length token sequences through Embedding(mask_zero=True) and
    # the fused layer, trained by Keras' compiled train step.
    rng = np.random.default_rng(10)
    tokens = rng.integers(1, 20, size=(64, 12))
    lengths = rng.integers(3, 13, size=64)
    tokens[np.arange(12)[None] >= lengths[:, None]] = 0
    labels = (tokens[:, 0] > 10).astype("int32")
    inputs = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
    h = FilterResponseNormalizationTLU(learned_epsilon=True)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(tokens, labels, epochs=3, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    for old, weight in zip(before, model.trainable_weights):
        assert np.any(old != weight.numpy()), weight.path


def test_converted_batch_norm_uses_the_mask_keras_passes_it():
    # Embedding(mask_zero=True) -> BatchNorm -> ReLU -> masked mean: after
    # conversion, padding a sequence changes nothing, as the FRN gets the
    # mask Keras passed to BatchNorm.
    tokens = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 4, mask_zero=True)(tokens)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    model = keras.Model(tokens, keras.layers.GlobalAveragePooling1D()(h))
    converted = convert_to_frn(model)
    assert any(isinstance(layer, FilterResponseNormalization)
               for layer in converted.layers)
    sequence = np.array([[4, 11, 7]])
    padded = np.array([[4, 11, 7, 0, 0]])
    np.testing.assert_allclose(converted(padded).numpy(),
                               converted(sequence).numpy(), rtol=1e-6,
                               atol=1e-7)


def test_fused_pair_keeps_its_mask():
    # fuse_frn_tlu replays the FRN's call on the fused layer: an explicit
    # mask, and the one Keras passes on from Embedding, reach it.
    x = keras.Input((6, 4))
    valid = keras.Input((6,), dtype="bool")
    tlu = TLU()
    model = keras.Model([x, valid],
                        tlu(FilterResponseNormalization()(x, mask=valid)))
    tau = np.array([0.1, -0.2, 0.3, 0.0])
    tlu.tau.assign(tau)
    fused = fuse_frn_tlu(model)
    assert [type(layer) for layer in fused.layers[2:]] == [
        FilterResponseNormalizationTLU]
    values = np.random.default_rng(14).normal(size=(2, 6, 4)).astype(
        "float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    want = ref.frn_tlu_forward(values, -1, np.ones(4), np.zeros(4), 1e-6,
                               None, tau, mask=mask)
    np.testing.assert_allclose(fused([values, mask]).numpy(), want,
                               rtol=1e-5, atol=1e-6)

    tokens = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 4, mask_zero=True)(tokens)
    h = TLU()(FilterResponseNormalization()(h))
    model = keras.Model(tokens, keras.layers.GlobalAveragePooling1D()(h))
    fused = fuse_frn_tlu(model)
    assert any(isinstance(layer, FilterResponseNormalizationTLU)
               for layer in fused.layers)
    np.testing.assert_allclose(fused(np.array([[4, 11, 7, 0, 0]])).numpy(),
                               fused(np.array([[4, 11, 7]])).numpy(),
                               rtol=1e-6, atol=1e-7)
