"""One training run for `test_distributed.py`, in its own process (logical
devices and TF_CONFIG must be set before TensorFlow starts).

    python -m tests.distributed_run --norm frn --distribute mirrored OUT.npz

Trains a small ConvNet from fixed weights on fixed data with
`examples/data_parallel.py`'s loop and saves the final weights and the
per-step losses to OUT.npz.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import frn_keras  # noqa: E402
from tests.example_modules import load_example  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 6


def small_convnet(norm):
    norm_act = frn_keras.models.norm_act(norm)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = norm_act.act(-1)(norm_act.norm(-1)(x))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = norm_act.act(-1)(norm_act.norm(-1)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--norm", required=True)
    parser.add_argument("--distribute", default="none",
                        choices=["none", "mirrored", "multi_worker"])
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--fit", action="store_true",
                        help="train with model.fit instead of the loop")
    parser.add_argument("out")
    args = parser.parse_args(argv)

    data_parallel = load_example("data_parallel")
    if args.distribute == "none":
        strategy = tf.distribute.get_strategy()
    else:
        if args.logical_cpus > 1:
            data_parallel.split_host_cpu(args.logical_cpus)
        strategy = data_parallel.make_strategy(args.distribute)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=GLOBAL_BATCH * STEPS).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        GLOBAL_BATCH, drop_remainder=True)

    with strategy.scope():
        model = small_convnet(args.norm)
        init = np.random.default_rng(1)
        model.set_weights([
            w if w.ndim == 1 and "moving_variance" in v.path
            else init.normal(size=w.shape).astype("float32") * 0.3
            for v, w in zip(model.weights, model.get_weights())])
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    if args.fit:
        with strategy.scope():
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
                jit_compile=args.jit_compile)
        losses = model.fit(dataset, epochs=1, shuffle=False,
                           verbose=0).history["loss"]
    else:
        trainer = data_parallel.DataParallelTrainer(
            strategy, model, optimizer, GLOBAL_BATCH,
            jit_compile=args.jit_compile)
        iterator = iter(data_parallel.split_global_batches(strategy, dataset))
        losses = [trainer.train(iterator, 1)[0] for _ in range(STEPS)]
    np.savez(args.out, losses=np.array(losses),
             replicas=strategy.num_replicas_in_sync,
             **{f"w{i}": w for i, w in enumerate(model.get_weights())})


if __name__ == "__main__":
    sys.exit(main())
