"""`examples/data_parallel.py` in this process, on the default strategy
(one replica): the loop's reported loss and accuracy, its evaluation, loss
scaling under mixed_float16, and which process writes the outputs.
`test_distributed.py` runs it on two replicas and two workers."""

import types

import numpy as np
import pytest
import tensorflow as tf

import keras

from tests.distributed_run import small_convnet
from tests.example_modules import load_example

data_parallel = load_example("data_parallel")

BATCH = 8


def _convnet():
    """The FRN + TLU ConvNet of the multi-process runs, seeded."""
    keras.utils.set_random_seed(0)
    return small_convnet("frn")


def _data(batches, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batches * BATCH, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=batches * BATCH).astype("int32")
    return x, y


def _cross_entropy_and_accuracy(logits, y):
    """float64 reference: mean cross-entropy from logits, top-1 accuracy."""
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = -np.mean(log_probs[np.arange(len(y)), y])
    return loss, np.mean(np.argmax(logits, -1) == y)


def _trainer(model, optimizer):
    strategy = tf.distribute.get_strategy()
    return data_parallel.DataParallelTrainer(
        strategy, model, optimizer, BATCH, jit_compile=True)


def _batches(x, y):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        BATCH, drop_remainder=True)
    return iter(data_parallel.split_global_batches(
        tf.distribute.get_strategy(), dataset))


def test_train_reports_the_mean_loss_and_accuracy_of_its_steps():
    model = _convnet()
    trainer = _trainer(model, keras.optimizers.SGD(0.1))
    x, y = _data(2)
    batches = _batches(x, y)
    for step in range(2):  # the second call goes on with the next batch
        rows = slice(step * BATCH, (step + 1) * BATCH)
        expected = _cross_entropy_and_accuracy(model(x[rows]), y[rows])
        weights = model.get_weights()
        loss, accuracy = trainer.train(batches, 1)
        np.testing.assert_allclose(loss, expected[0], rtol=1e-5)
        assert accuracy == pytest.approx(expected[1])
        # and took an SGD step
        assert any(not np.array_equal(a, b)
                   for a, b in zip(weights, model.get_weights()))


def test_evaluate_counts_every_example_up_to_the_step_cap():
    model = _convnet()
    trainer = _trainer(model, keras.optimizers.SGD(0.1))
    x, y = _data(3, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    predicted = np.argmax(model.predict(x, verbose=0), -1)
    assert trainer.evaluate(dataset) == pytest.approx(np.mean(predicted == y))
    assert trainer.evaluate(dataset, steps=2) == pytest.approx(
        np.mean(predicted[:2 * BATCH] == y[:2 * BATCH]))


def test_mixed_float16_with_loss_scaling_takes_the_float32_steps():
    # The LossScaleOptimizer divides the gradients by its scale (32768 at
    # first), so the loss must be multiplied by it: then the step matches
    # the float32 one.
    x, y = _data(2, seed=2)
    float32_model = _convnet()
    start = float32_model.get_weights()
    _trainer(float32_model, keras.optimizers.SGD(0.1)).train(
        _batches(x, y), 2)
    expected = [w - w0 for w, w0 in zip(float32_model.get_weights(), start)]

    keras.config.set_dtype_policy("mixed_float16")
    mixed_model = _convnet()
    mixed_model.set_weights(start)
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1))
    _trainer(mixed_model, optimizer).train(_batches(x, y), 2)
    for w, w0, step in zip(mixed_model.get_weights(), start, expected):
        # float16 compute moves a few elements; the step as a whole agrees.
        error = np.linalg.norm((w - w0) - step) / np.linalg.norm(step)
        assert error < 0.1, error


class _Resolver:
    def __init__(self, cluster, task_type=None, task_id=None):
        self._cluster = cluster
        self.task_type, self.task_id = task_type, task_id

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


@pytest.mark.parametrize("cluster,task_type,task_id,chief", [
    ({}, None, None, True),  # one process
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"worker": ["a:1"], "ps": ["p:1"]}, "ps", 0, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
])
def test_one_process_writes_the_outputs(cluster, task_type, task_id, chief):
    strategy = types.SimpleNamespace(
        cluster_resolver=_Resolver(cluster, task_type, task_id))
    assert data_parallel.is_chief(strategy) is chief
    assert data_parallel.is_chief(tf.distribute.get_strategy()) is True


def test_make_strategy_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="distribute='tpu'"):
        data_parallel.make_strategy("tpu")
