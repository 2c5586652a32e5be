"""Per-example gradients through FRN, TLU and the fused pair, taken as
differentially private training (DP-SGD) takes them: the backend's
vectorizing map (`tf.vectorized_map`, `jax.vmap`, `torch.func.vmap`)
computes each sample's gradients alone. Checked against the float64 NumPy
reference of each sample alone, and, through a network, against each
sample's share of the gradient of a whole batch's loss, which only a
batch-independent normalization makes equal (BatchNorm, the control, does
not)."""

import numpy as np
import pytest

import keras

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from tests import harness
from tests import numpy_reference as ref

pytestmark = pytest.mark.all_backends

EPSILON = 1e-4
BATCH = 4

# (input shape, channel axis, masked): NHWC, a channels-first sequence, and
# a padded channels-last sequence with a mask.
CASES = {"nhwc": ((BATCH, 5, 4, 6), -1, False),
         "channels_first": ((BATCH, 6, 7), 1, False),
         "masked": ((BATCH, 7, 6), -1, True)}
LAYERS = ["frn", "frn_tlu", "tlu", "tlu_affine"]


def _random_layer(kind, shape, axis, rng):
    """A built float64 layer of `kind` with random weights, and the float64
    reference of one sample's gradients: `reference(x, upstream, mask)` ->
    `{name: gradient}`, named as `harness.per_example_gradients` names
    them."""
    c = shape[axis]
    gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
    beta, tau = rng.normal(size=c), rng.normal(size=c) * 0.5
    alpha, eps_learned = rng.uniform(0.1, 0.5, c), -3e-3
    if kind in ("frn", "frn_tlu"):
        cls = (FilterResponseNormalization if kind == "frn"
               else FilterResponseNormalizationTLU)
        layer = cls(axis=axis, epsilon=EPSILON, learned_epsilon=True,
                    dtype="float64")
        layer.build(shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        layer.eps_learned.assign([eps_learned])
        if kind == "frn_tlu":
            layer.tau.assign(tau)
    else:
        layer = TLU(axis=axis, affine=kind == "tlu_affine", dtype="float64")
        layer.build(shape)
        layer.tau.assign(tau)
        if kind == "tlu_affine":
            layer.alpha.assign(alpha)

    def reference(x, upstream, mask):
        frn_args = (x, axis, gamma, beta, EPSILON, eps_learned)
        if kind == "frn":
            grads = ref.frn_backward(*frn_args, upstream, mask)
        elif kind == "frn_tlu":
            grads = ref.frn_tlu_backward(*frn_args, tau, upstream, mask)
        else:
            grads = ref.tlu_backward(
                x, axis, tau, alpha if kind == "tlu_affine" else None,
                upstream)
        if "eps_learned" in grads:
            grads["learned_epsilon"] = [grads.pop("eps_learned")]
        return grads

    return layer, reference


@pytest.mark.parametrize(
    "kind,shape,axis,masked",
    [pytest.param(kind, *case, id=f"{kind}-{name}")
     for name, case in CASES.items() for kind in LAYERS
     # TLU keeps no statistics: a mask would change nothing.
     if not (case[2] and kind.startswith("tlu"))])
def test_per_example_gradients_match_float64_reference(kind, shape, axis,
                                                       masked):
    rng = np.random.default_rng(7)
    layer, reference = _random_layer(kind, shape, axis, rng)
    # FRN's inputs small, so that eps matters; TLU's on tau's scale, so
    # that each channel has values on both sides of its threshold.
    x = rng.normal(size=shape) * (0.5 if kind.startswith("tlu") else 0.05)
    upstream = rng.normal(size=shape)
    mask = None
    if masked:
        mask = rng.random(shape[:-1]) < 0.6
        mask[0] = False  # a sample with every position masked out

    per_example = harness.per_example_gradients(layer, x, upstream, mask)

    for i in range(BATCH):
        want = reference(x[i:i + 1], upstream[i:i + 1],
                         None if mask is None else mask[i:i + 1])
        want["x"] = want["x"][0]
        for way, grads in per_example.items():
            harness.assert_same_gradients(
                {name: g[i] for name, g in grads.items()}, want, rtol=1e-8,
                atol=1e-10, where=f"{way}, sample {i}")


def _network(norm, rng):
    """A float64 network of sequences with FRN + TLU and the fused layer,
    or with BatchNorm + ReLU (`norm="bn"`), with random weights."""
    if norm == "frn":
        def block(h):
            return TLU(dtype="float64")(FilterResponseNormalization(
                learned_epsilon=True, dtype="float64")(h))

        def last_block(h):
            return FilterResponseNormalizationTLU(dtype="float64")(h)
    else:
        def block(h):
            h = keras.layers.BatchNormalization(dtype="float64")(h)
            return keras.layers.ReLU(dtype="float64")(h)

        last_block = block
    # Dense layers on sequences rather than convolutions: under PyTorch,
    # Keras's Conv2D makes a channels-last copy, which torch.func.vmap does
    # not support.
    inputs = keras.Input((6, 2), dtype="float64")
    h = block(keras.layers.Dense(4, dtype="float64")(inputs))
    h = last_block(keras.layers.Dense(4, dtype="float64")(h))
    h = keras.layers.GlobalAveragePooling1D(dtype="float64")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(h))
    for weight in model.trainable_weights:
        weight.assign(harness.to_numpy(weight)
                      + rng.normal(0, 0.2, weight.shape))
    return model


def _largest_relative_difference(a, b):
    return max(np.abs(a[name] - b[name]).max() / np.abs(b[name]).max()
               for name in b)


@pytest.mark.parametrize("norm", ["frn", "bn"])
def test_per_example_gradients_are_each_samples_share_of_the_batch_gradient(
        norm):
    """Sample `i`'s gradients computed alone (by the vectorizing map, and
    by a batch of one) equal the gradients of its term of a whole batch's
    loss: no other sample reaches them. BatchNorm's batch statistics tie
    the samples together, so there they differ: the control."""
    rng = np.random.default_rng(3)
    model = _network(norm, rng)
    x = rng.normal(size=(BATCH, 6, 2))
    upstream = rng.normal(size=(BATCH, 3))

    if norm == "frn":
        per_example = harness.per_example_gradients(
            model, x, upstream, key="path", training=True)
    for i in range(BATCH):
        alone = harness.outputs_and_gradients(
            model, x[i:i + 1], upstream[i:i + 1], key="path",
            training=True)[1]
        alone["x"] = alone["x"][0]
        share = np.zeros_like(upstream)
        share[i] = upstream[i]
        in_batch = harness.outputs_and_gradients(
            model, x, share, key="path", training=True)[1]
        in_batch["x"] = in_batch["x"][i]
        if norm == "bn":
            assert _largest_relative_difference(in_batch, alone) > 0.1
            continue
        harness.assert_same_gradients(in_batch, alone, rtol=1e-7, atol=1e-9,
                                      where=f"sample {i} in its batch")
        for way, grads in per_example.items():
            harness.assert_same_gradients(
                {name: g[i] for name, g in grads.items()}, alone, rtol=1e-7,
                atol=1e-9, where=f"sample {i}, {way}")
