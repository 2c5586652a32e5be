"""The staged sums over positions (`frn_keras/layers/_staged_sum.py`):
under XLA for the CPU, FRN's sums over more than 32 positions are taken in
two stages, so that XLA writes neither `x^2` nor `dy * x` to memory; the
sums equal float64 NumPy's, NaN and infinities stay in their own sample and
channel, FRN + TLU under XLA match the float64 reference, a mask adds no
full-size tensor, and only XLA traces for the CPU take it."""

import re

import numpy as np
import pytest
import tensorflow as tf

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras.layers import _staged_sum
from frn_keras.layers._staged_sum import staged_sum
from tests import harness
from tests import numpy_reference as ref

EPSILON = 1e-4


@pytest.mark.parametrize("shape,axes,group", [
    ((None, 256, 32), (1,), 32),     # 16 x 16 positions
    ((None, 1024, 16), (1,), 32),
    ((None, 3136, 256), (1,), 32),   # 56 x 56: 98 groups of 32
    ((None, 2800, 3), (1,), 28),     # 40 x 70: 100 groups of 28
    ((None, 49, 2048), (1,), 7),
    ((None, 8, 96), (2,), 32),       # channels first
    ((None, 32, 8), (1,), 1),        # one window: one stage
    ((None, 37, 8), (1,), 1),        # a prime: no group
    ((None, None, 8), (1,), 1),      # positions unknown until run time
    ((None, 8, 8, 4), (1, 2), 1),    # several axes
])
def test_group_size(shape, axes, group):
    assert _staged_sum._group_size(shape, axes) == group


def _xla_sum(t, axes):
    fn = tf.function(lambda t: staged_sum(t, axes), jit_compile=True,
                     input_signature=[tf.TensorSpec((None, *t.shape[1:]),
                                                    t.dtype)])
    return fn(t).numpy()


@pytest.mark.parametrize("shape,axes", [
    ((3, 96, 5), (1,)), ((3, 5, 96), (2,)), ((2, 2800, 3), (1,)),
    ((3, 37, 5), (1,)), ((3, 20, 5), (1,)),
])
def test_xla_sum_equals_float64_numpy(shape, axes):
    t = np.random.default_rng(0).normal(size=shape)
    want = t.sum(axis=axes, keepdims=True)
    np.testing.assert_allclose(_xla_sum(tf.constant(t, tf.float32), axes),
                               want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_xla_sum(tf.constant(t), axes), want,
                               rtol=1e-12)


def test_nan_and_inf_stay_in_their_own_sums():
    # The runtime 1 is read from the first group sum: a NaN there must not
    # spread to the other samples' and channels' sums.
    t = np.random.default_rng(1).normal(size=(2, 96, 3))
    t[0, 0, 0], t[1, 50, 2] = np.nan, np.inf
    got = _xla_sum(tf.constant(t, tf.float32), (1,))
    assert np.isnan(got[0, 0, 0]) and got[1, 0, 2] == np.inf
    finite = np.ones(got.shape, bool)
    finite[0, 0, 0] = finite[1, 0, 2] = False
    np.testing.assert_allclose(got[finite], t.sum(axis=1)[finite[:, 0]],
                               rtol=1e-5)


def _without_stages(monkeypatch):
    monkeypatch.setattr(_staged_sum, "compiled_by_xla_for_cpu",
                        lambda: False)


def _full_size_results(hlo, shape):
    """How many instructions of the optimized HLO's while-free entry
    computation produce a tensor of `shape`'s size: the passes that write a
    full-size tensor to memory."""
    entry = hlo[hlo.index("\nENTRY"):]
    entry = entry[:entry.index("\n}")]
    size = int(np.prod(shape))
    count = 0
    for dims in re.findall(r"= f32\[([\d,]*)\]", entry):
        if dims and int(np.prod([int(d) for d in dims.split(",")])) == size:
            count += 1
    return count


def _forward_backward_hlo(layers, x, upstream, mask=None):
    """The optimized HLO of the forward + backward pass; a `mask` (an
    argument of the compiled function) goes to the FRN layers."""
    def run(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = x
            for layer in layers:
                takes_mask = isinstance(layer, FilterResponseNormalization)
                z = layer(z, mask=mask) if takes_mask and mask is not None \
                    else layer(z)
            loss = tf.reduce_sum(z * upstream)
        return tape.gradient(loss, [x] + [w.value for layer in layers
                                          for w in layer.trainable_weights])

    return tf.function(run, jit_compile=True).experimental_get_compiler_ir(
        x, mask)(stage="optimized_hlo")


def _built(layers, shape):
    for layer in layers:
        layer.build(shape)
    return layers


@pytest.mark.parametrize("kind", ["fused", "pair"])
def test_xla_writes_neither_the_square_nor_the_product(kind, monkeypatch):
    shape = (4, 16, 16, 8)
    x = tf.random.normal(shape)
    upstream = tf.random.normal(shape)

    def layers():
        if kind == "fused":
            return _built([FilterResponseNormalizationTLU()], shape)
        return _built([FilterResponseNormalization(), TLU()], shape)

    staged = _forward_backward_hlo(layers(), x, upstream)
    _without_stages(monkeypatch)
    plain = _forward_backward_hlo(layers(), x, upstream)
    # XLA's tree reduction splits the two one-stage sums over 256 positions
    # (of x^2 and of dy * x) into windows, and writes x^2 and dy * x for
    # them.
    assert plain.count(" reduce-window(") - staged.count(
        " reduce-window(") == 2
    assert _full_size_results(staged, shape) == _full_size_results(
        plain, shape) - 2


@pytest.mark.parametrize("kind", ["fused", "pair"])
def test_a_mask_writes_no_more_than_the_unmasked_pass(kind):
    # The masked statistics share the unmasked analytic gradient: under XLA
    # neither `x` with its padding zeroed nor its square nor `dy * x` is
    # written to memory (autodiff of the masked sums wrote two full-size
    # tensors more).
    shape = (4, 16, 16, 8)
    x = tf.random.normal(shape)
    upstream = tf.random.normal(shape)
    mask = tf.constant(np.random.default_rng(3).random(shape[:3]) < 0.7)

    def layers():
        if kind == "fused":
            return _built([FilterResponseNormalizationTLU()], shape)
        return _built([FilterResponseNormalization(), TLU()], shape)

    masked = _forward_backward_hlo(layers(), x, upstream, mask)
    unmasked = _forward_backward_hlo(layers(), x, upstream)
    assert _full_size_results(masked, shape) == _full_size_results(
        unmasked, shape)
    assert masked.count(" reduce-window(") == unmasked.count(
        " reduce-window(")


@pytest.mark.parametrize("shape,axis", [
    ((2, 8, 12, 3), -1), ((2, 3, 8, 12), 1), ((1, 40, 70, 2), -1),
])
def test_xla_forward_and_gradients_match_float64_reference(shape, axis):
    rng = np.random.default_rng(2)
    channels = shape[axis]
    gamma = rng.uniform(0.5, 1.5, channels) * rng.choice([-1, 1], channels)
    beta, tau = rng.normal(size=channels), rng.normal(size=channels) * 0.5
    eps_learned = -3e-3
    x = rng.normal(size=shape) * 0.05
    upstream = rng.normal(size=shape)
    layer = FilterResponseNormalizationTLU(
        axis=axis, epsilon=EPSILON, learned_epsilon=True, dtype="float64")
    layer.build(shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    layer.tau.assign(tau)
    layer.eps_learned.assign([eps_learned])

    z, grads = harness.traced_outputs_and_gradients(layer, x, upstream,
                                                    "xla")
    frn_tlu_args = (x, axis, gamma, beta, EPSILON, eps_learned, tau)
    np.testing.assert_allclose(z, ref.frn_tlu_forward(*frn_tlu_args),
                               rtol=1e-10)
    reference = ref.frn_tlu_backward(*frn_tlu_args, upstream)
    # The layer names the weight it keeps as `eps_learned` "learned_epsilon".
    reference["learned_epsilon"] = [reference.pop("eps_learned")]
    assert sorted(grads) == sorted(reference)
    for name, want in reference.items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-8,
                                   atol=1e-10 * np.abs(want).max(),
                                   err_msg=name)


def _sums(layer, shape, jit_compile):
    fn = tf.function(layer, jit_compile=jit_compile)
    graph = fn.get_concrete_function(
        tf.TensorSpec(shape, layer.compute_dtype)).graph
    return sum(op.type == "Sum" for op in graph.get_operations())


def test_only_xla_traces_for_the_cpu_take_it(monkeypatch):
    shape = (2, 16, 16, 4)
    layer = _built([FilterResponseNormalization()], shape)[0]
    # One sum over the positions, as the squared norm outside XLA.
    assert _sums(layer, shape, jit_compile=False) == 0
    assert _sums(layer, shape, jit_compile=True) == 2
    # With a GPU visible, Keras' XLA trace is for the GPU.
    devices = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config, "list_logical_devices",
        lambda kind=None: ["/GPU:0"] if kind == "GPU" else devices(kind))
    assert _sums(layer, shape, jit_compile=True) == 1
