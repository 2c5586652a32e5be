"""Data-parallel training with `tf.distribute` in a custom loop, with XLA.

`model.fit` cannot be used for every data-parallel run here:

- `MultiWorkerMirroredStrategy` + `fit` fails with 2 workers inside Keras's
  trainer (keras-team/keras#20585);
- `MirroredStrategy` + `fit(jit_compile=True)` fails on logical CPU devices
  ("Trying to access resource ... located in device CPU:1 from device
  CPU:0", keras-team/keras#19005): `fit` compiles a step that reads the
  replica's variables, and XLA places it on the one host device.

What works on every strategy is this loop: each replica reads its variable
values *outside* XLA and passes them to an XLA-compiled pure function
(`model.stateless_call`) that returns the loss and gradients; the
all-reduce and the optimizer update run outside XLA, in `strategy.run`.

Every replica gets a contiguous slice of every global batch
(`split_global_batches`), so a data-parallel run sees exactly the batches
of a single-replica run with the same global batch. With FRN (no batch
statistics) the two compute the same updates; with BatchNorm each replica
normalizes its own slice, so they do not (`tests/test_distributed.py`).
"""

import os
import tempfile

import keras
import tensorflow as tf


def split_host_cpu(logical_cpus):
    """Splits the host CPU into `logical_cpus` logical devices, to try
    MirroredStrategy without GPUs. Call it before TensorFlow initializes
    its devices (before any tensor or dataset is made)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)


def make_strategy(distribute):
    """Returns the `tf.distribute` strategy for `--distribute`:
    `"mirrored"` (all local GPUs, else every logical CPU device) or
    `"multi_worker"` (`TF_CONFIG` describes the cluster)."""
    if distribute == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif distribute == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        raise ValueError(
            "Argument `distribute` must be 'mirrored' or 'multi_worker'. "
            f"Received: distribute={distribute!r}")
    print(f"tf.distribute: {type(strategy).__name__}, "
          f"{strategy.num_replicas_in_sync} replicas")
    return strategy


def split_global_batches(strategy, dataset):
    """Distributes `dataset`, whose elements are global `(x, y)` batches of
    a fixed size divisible by the number of replicas: replica `r` of `R`
    gets rows `[r * b, (r + 1) * b)` of each, `b = batch / R`.

    Every worker must build the same `dataset` (same order, same seed).
    """
    replicas = strategy.num_replicas_in_sync

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def local_slices(x, y):
            b = tf.shape(y)[0] // replicas
            x, y = x[first * b:(first + local) * b], y[first * b:
                                                      (first + local) * b]
            return tf.data.Dataset.from_tensor_slices((
                tf.reshape(x, tf.concat([[local, b], tf.shape(x)[1:]], 0)),
                tf.reshape(y, tf.concat([[local, b], tf.shape(y)[1:]], 0)),
            ))

        return dataset.flat_map(local_slices)

    return strategy.distribute_datasets_from_function(dataset_fn)


class DataParallelTrainer:
    """Trains `model` with `optimizer` under `strategy`.

    Create the model and the optimizer in `strategy.scope()`. The loss is
    the mean sparse categorical cross-entropy from logits over the global
    batch (+ any `model.losses`).

    Args:
        strategy: A `tf.distribute.Strategy`.
        model: A built Keras model with logits output.
        optimizer: A Keras optimizer (a `LossScaleOptimizer` under
            mixed_float16).
        global_batch_size: Integer, the size of each global batch.
        jit_compile: Whether to compile the per-replica loss and gradients
            with XLA.
    """

    def __init__(self, strategy, model, optimizer, global_batch_size,
                 jit_compile=True):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.global_batch_size = global_batch_size
        self.jit_compile = jit_compile
        with strategy.scope():
            # Optimizer slots must exist before the first replicated step.
            optimizer.build(model.trainable_variables)
        self._losses_and_grads = tf.function(
            self._pure_losses_and_grads, jit_compile=jit_compile)
        self._train_step = tf.function(self._distributed_train_step)
        self._predict = tf.function(
            lambda x: tf.argmax(self.model(x, training=False), -1))

    def _pure_losses_and_grads(self, trainable, non_trainable, x, y,
                               loss_scale):
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            logits, non_trainable = self.model.stateless_call(
                trainable, non_trainable, x, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(
                y, tf.cast(logits, tf.float32), from_logits=True)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch_size)
            scaled = loss * loss_scale
        grads = tape.gradient(scaled, trainable)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y),
            tf.float32))
        return loss, correct, grads, non_trainable

    def _replica_step(self, x, y):
        model = self.model
        # Reading the values here, outside XLA, is what makes XLA work on
        # every device (see the module docstring).
        trainable = [tf.identity(v.value) for v in model.trainable_variables]
        non_trainable = [tf.identity(v.value)
                         for v in model.non_trainable_variables]
        loss_scale = tf.ones(())
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            loss_scale = tf.identity(self.optimizer.scale_loss(1.0))
        loss, correct, grads, non_trainable = self._losses_and_grads(
            trainable, non_trainable, x, y, loss_scale)
        self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        self._assign_replica_mean(model.non_trainable_variables,
                                  non_trainable)
        return loss, correct

    @staticmethod
    def _assign_replica_mean(variables, values):
        """Assigns the mean over all replicas of the new float states (e.g.
        BatchNorm's moving statistics), so that every replica and worker
        keeps the same state; other states (seeds) are assigned as they
        are."""
        floating = [i for i, value in enumerate(values)
                    if value.dtype.is_floating]
        values = list(values)
        if floating:
            means = tf.distribute.get_replica_context().all_reduce(
                "MEAN", [values[i] for i in floating])
            for i, mean in zip(floating, means):
                values[i] = mean
        for variable, value in zip(variables, values):
            variable.assign(value)

    def _distributed_train_step(self, x, y):
        loss, correct = self.strategy.run(self._replica_step, args=(x, y))
        return (self.strategy.reduce("SUM", loss, axis=None),
                self.strategy.reduce("SUM", correct, axis=None))

    def evaluate(self, dataset, steps=None):
        """Top-1 accuracy of the model (inference mode) on `dataset`, batches
        of `(x, y)`, on this process (every worker evaluates all of it)."""
        correct = total = 0
        for step, (x, y) in enumerate(dataset):
            if steps is not None and step >= steps:
                break
            correct += int(tf.reduce_sum(tf.cast(
                tf.equal(self._predict(x), tf.cast(y, tf.int64)), tf.int32)))
            total += int(tf.shape(y)[0])
        return correct / max(total, 1)

    def train(self, distributed_dataset, steps, progress=None):
        """Runs `steps` steps; returns `(mean loss, accuracy)` over them.

        Args:
            distributed_dataset: From `split_global_batches`, or an iterator
                over it (to go on where the last call stopped).
            steps: Integer, the number of global batches.
            progress: Optional `keras.utils.Progbar`.
        """
        iterator = iter(distributed_dataset)
        total_loss = total_correct = 0.0
        for step in range(steps):
            loss, correct = self._train_step(*next(iterator))
            total_loss += float(loss)
            total_correct += float(correct)
            if progress is not None:
                progress.update(step + 1, [
                    ("loss", total_loss / (step + 1)),
                    ("accuracy", total_correct / (
                        (step + 1) * self.global_batch_size))])
        return (total_loss / steps,
                total_correct / (steps * self.global_batch_size))


def is_chief(strategy):
    """Whether this process writes the outputs (checkpoints, export): the
    only process, the `chief` task, or worker 0 of a cluster without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver else {}
    if not cluster:
        return True
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def checkpoint_manager(strategy, model_dir, **objects):
    """A `tf.train.CheckpointManager` over `objects` in `model_dir`/ckpt.

    Under multi-worker every worker must save; only the chief writes to
    `model_dir`, the others to a temporary directory.
    """
    directory = os.path.join(model_dir, "ckpt")
    if not is_chief(strategy):
        directory = tempfile.mkdtemp(prefix="frn_keras_worker_ckpt_")
    checkpoint = tf.train.Checkpoint(**objects)
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1)
