"""The examples' optimizer follows the papers' recipe: SGD with Nesterov
momentum and an L2 weight decay of `--weight-decay`, not on norm parameters."""

import argparse

import numpy as np
import pytest

import keras

import frn_keras

from tests.example_modules import load_example

training = load_example("training")


def _l2_sgd_nesterov_reference(w, learning_rate, l2, momentum, steps):
    """float64 SGD with Nesterov momentum on a loss that is only the L2
    penalty `l2 / 2 * w**2`, in Keras's (Sutskever) form of the update."""
    w = np.float64(w)
    velocity = 0.0
    for _ in range(steps):
        gradient = l2 * w
        velocity = momentum * velocity - learning_rate * gradient
        w = w + momentum * velocity - learning_rate * gradient
    return w


def _optimizer(weight_decay, steps_per_epoch=1000):
    args = argparse.Namespace(epochs=1000, warmup_epochs=0,
                              weight_decay=weight_decay)
    # 1e6 cosine steps: the learning rate stays within 1e-6 of its peak here.
    return training.make_optimizer(args, steps_per_epoch, 0.1)


@pytest.mark.parametrize("l2", [1e-4, 5e-4])
def test_weight_decay_shrinks_weights_as_the_papers_l2_term(l2):
    steps = 400
    kernel = keras.Variable(np.full((3,), 2.0, "float32"), name="kernel")
    gamma = keras.Variable(np.full((3,), 2.0, "float32"), name="gamma")
    optimizer = _optimizer(l2)
    zeros = np.zeros((3,), "float32")
    for _ in range(steps):
        optimizer.apply_gradients([(zeros, kernel), (zeros, gamma)])

    expected = _l2_sgd_nesterov_reference(2.0, 0.1, l2, training.MOMENTUM,
                                          steps)
    # Log-shrink of the decayed kernel within 2% of the L2 recipe's (the
    # two differ only while momentum builds up, over the first ~10 steps).
    measured = np.log(kernel.numpy() / 2.0)
    np.testing.assert_allclose(measured, np.log(expected / 2.0), rtol=0.02)
    # Norm parameters are not decayed at all.
    np.testing.assert_array_equal(gamma.numpy(), 2.0)


def test_decoupled_weight_decay_is_ten_times_l2_at_momentum_0_9():
    assert training.decoupled_weight_decay(1e-4, momentum=0.9) == (
        pytest.approx(1e-3))


def test_warmup_then_cosine_schedule():
    # Linear from 0 to the peak over the warm-up, then a cosine to 0:
    # lr(t) = peak * (1 + cos(pi * (t - w) / (T - w))) / 2.
    peak, total, warmup = 0.4, 100, 10
    schedule = training.warmup_cosine(peak, total, warmup)
    for step in [0, 5, 10, 30, 55, 90, 100]:
        if step <= warmup:
            want = peak * step / warmup
        else:
            want = peak * (1 + np.cos(np.pi * (step - warmup)
                                      / (total - warmup))) / 2
        np.testing.assert_allclose(float(schedule(step)), want, atol=1e-6,
                                   err_msg=f"step {step}")


def test_only_kernels_are_decayed():
    # Every normalization and activation parameter of frn_keras (and every
    # bias) is left alone by the weight decay; kernels are decayed.
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = frn_keras.FilterResponseNormalization(learned_epsilon=True)(h)
    h = frn_keras.TLU(affine=True)(h)
    h = keras.layers.GroupNormalization(2, center=False, scale=False)(h)
    h = frn_keras.layers.ProxyNormalization()(h)
    h = frn_keras.FilterResponseNormalizationTLU()(h)
    outputs = keras.layers.Dense(2, name="dense")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    model.set_weights([np.ones(w.shape) for w in model.weights])
    optimizer = _optimizer(1e-2)
    optimizer.apply_gradients(
        [(np.zeros(w.shape, "float32"), w) for w in model.trainable_weights])
    decayed = sorted(w.path for w in model.trainable_weights
                     if not np.all(w.numpy() == 1.0))
    assert decayed == ["conv/kernel", "dense/kernel"]
    assert len(model.trainable_weights) == 16
