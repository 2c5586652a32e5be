"""What the CIFAR and ImageNet examples share: flags, precision,
distribution, the warm-up + cosine schedule, XLA compilation, resumable
`fit`, evaluation and export."""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_parallel  # noqa: E402
import frn_keras  # noqa: E402  (also registers the layers)
from frn_keras.export import export_for_serving  # noqa: E402
from frn_keras.models import NO_WEIGHT_DECAY  # noqa: E402
from frn_keras.models import available_norms  # noqa: E402

MOMENTUM = 0.9


def common_parser(description, batch_size, epochs, warmup_epochs,
                  weight_decay):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--norm", default="frn", choices=available_norms())
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="global batch size")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="cap on the steps of each epoch (smoke runs)")
    parser.add_argument("--eval-steps", type=int, default=None,
                        help="cap on the evaluation steps (smoke runs)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak learning rate (default scales linearly "
                        "with the batch size)")
    parser.add_argument("--warmup-epochs", type=float, default=warmup_epochs)
    parser.add_argument("--weight-decay", type=float, default=weight_decay,
                        help="L2 coefficient as the papers give it (He et "
                        "al.: 1e-4), applied as Keras's decoupled decay "
                        "weight_decay / (1 - momentum)")
    parser.add_argument("--mixed-precision", default="off",
                        choices=["off", "float16", "bfloat16"])
    parser.add_argument("--distribute", default="none",
                        choices=["none", "mirrored", "multi_worker"],
                        help="data-parallel training (tf.distribute) in a "
                        "custom loop; multi_worker reads TF_CONFIG")
    parser.add_argument("--logical-cpus", type=int, default=0,
                        help="with --distribute mirrored and no GPU: split "
                        "the CPU into this many devices (to try it out)")
    parser.add_argument("--data-format", default="channels_last",
                        choices=["channels_last", "channels_first"])
    parser.add_argument("--no-jit-compile", dest="jit_compile",
                        action="store_false", help="train without XLA")
    parser.add_argument("--fuse-frn-tlu", action="store_true",
                        help="with --norm frn: fuse each FRN -> TLU pair into "
                        "FilterResponseNormalizationTLU (same function "
                        "and weights)")
    parser.add_argument("--data-dir", default=None,
                        help="tensorflow-datasets data_dir")
    parser.add_argument("--mock-data", action="store_true",
                        help="random data from tfds.testing.mock_data")
    parser.add_argument("--model-dir", default=None,
                        help="checkpoints + TensorBoard logs; a rerun with "
                        "the same flags resumes after an interrupt")
    parser.add_argument("--export-dir", default="saved_models",
                        help="TF Serving model root: the trained model is "
                        "exported to EXPORT_DIR/<model name>/1 at the end "
                        "(default: saved_models)")
    parser.add_argument("--no-export", dest="export_dir",
                        action="store_const", const=None,
                        help="do not export a SavedModel")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check_common_args(parser, args):
    if args.logical_cpus < 0:
        parser.error(f"--logical-cpus must be >= 0, got {args.logical_cpus}")
    for name in ("batch_size", "epochs", "steps_per_epoch", "eval_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    for name in ("warmup_epochs", "weight_decay"):
        value = getattr(args, name)
        if not value >= 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.fuse_frn_tlu and args.norm != "frn":
        parser.error(f"--fuse-frn-tlu needs --norm frn, got --norm {args.norm}")


def configure_runtime(args):
    """Seeds, the dtype policy, the CPU devices (--logical-cpus) and the
    --distribute strategy, which TensorFlow needs before any tensor or
    dataset is made. Returns the strategy, or `None`."""
    if args.logical_cpus > 1:
        data_parallel.split_host_cpu(args.logical_cpus)
    strategy = None
    if args.distribute != "none":
        strategy = data_parallel.make_strategy(args.distribute)
    keras.utils.set_random_seed(args.seed)
    policy = {"off": "float32", "float16": "mixed_float16",
              "bfloat16": "mixed_bfloat16"}[args.mixed_precision]
    keras.config.set_dtype_policy(policy)
    return strategy


def warmup_cosine(peak, total_steps, warmup_steps):
    """Linear warm-up from 0 to `peak`, then cosine decay to 0."""
    warmup_steps = min(max(0, int(warmup_steps)), total_steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def decoupled_weight_decay(l2, momentum=MOMENTUM):
    """Keras's `weight_decay` that shrinks weights as an L2 penalty does.

    Keras optimizers decay decoupled, `w -= learning_rate * weight_decay * w`
    each step. The papers' L2 term adds `l2 * w` to the gradient instead,
    which momentum accumulates into `learning_rate * l2 / (1 - momentum) * w`
    per step. Passing the papers' 1e-4 straight to Keras would decay 10x
    more weakly than their recipe at momentum 0.9.
    """
    return l2 / (1.0 - momentum)


def make_optimizer(args, steps_per_epoch, peak_learning_rate):
    """SGD with Nesterov momentum, weight decay (not on norm parameters or
    biases) equivalent to the L2 `--weight-decay`, and the warm-up + cosine
    schedule."""
    total = args.epochs * steps_per_epoch
    optimizer = keras.optimizers.SGD(
        warmup_cosine(peak_learning_rate, total,
                      args.warmup_epochs * steps_per_epoch),
        momentum=MOMENTUM, nesterov=True,
        weight_decay=decoupled_weight_decay(args.weight_decay),
    )
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer


def compile_model(model, args, steps_per_epoch, peak_learning_rate):
    optimizer = make_optimizer(args, steps_per_epoch, peak_learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # Keras's default "auto" leaves XLA off on CPU and under
        # tf.distribute: ask for it explicitly.
        jit_compile=args.jit_compile,
    )


def fit_and_evaluate(model, train_ds, eval_ds, args, steps_per_epoch,
                     eval_steps):
    """Resumable `fit` (progress bar, per-epoch metrics), then the final
    evaluation. Returns the test accuracy."""
    callbacks = []
    if args.model_dir:
        callbacks += [
            # Restores model, optimizer and epoch after an interrupt; kept
            # after the last epoch, so a rerun with more --epochs goes on.
            keras.callbacks.BackupAndRestore(
                os.path.join(args.model_dir, "backup"),
                delete_checkpoint=False),
            keras.callbacks.ModelCheckpoint(
                os.path.join(args.model_dir, "last.keras")),
            keras.callbacks.CSVLogger(
                os.path.join(args.model_dir, "history.csv"), append=True),
            keras.callbacks.TensorBoard(os.path.join(args.model_dir, "logs")),
        ]
    print(f"XLA: jit_compile={model.jit_compile} (train and eval steps are "
          "compiled with XLA)" if model.jit_compile else "XLA: off")
    start = time.perf_counter()
    model.fit(
        train_ds, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
        validation_data=eval_ds, validation_steps=eval_steps,
        callbacks=callbacks, verbose=1 if os.environ.get("CI") is None else 2,
        # The input pipeline shuffles; Keras' default `shuffle=True` would
        # only warn that it ignores itself for a `tf.data.Dataset`.
        shuffle=False,
    )
    print(f"train time: {time.perf_counter() - start:.1f} s")
    _, accuracy = model.evaluate(eval_ds, steps=eval_steps, verbose=0)
    print(f"final test accuracy: {accuracy:.4f}")
    return accuracy


def run(args, build_model, train_ds, eval_ds, train_examples,
        reference_batch, strategy=None):
    """Builds, trains (`fit`, or the data-parallel loop with
    `--distribute`), evaluates and exports. The default peak learning rate is
    `0.1 * batch / reference_batch`."""
    if args.fuse_frn_tlu:
        build_model = _fusing(build_model)
    steps_per_epoch = max(1, train_examples // args.batch_size)
    if args.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.steps_per_epoch)
    learning_rate = (args.learning_rate
                     or 0.1 * args.batch_size / reference_batch)
    writes_outputs = True
    if strategy is not None:
        model, writes_outputs = train_data_parallel(
            args, strategy, build_model, train_ds, eval_ds, steps_per_epoch,
            learning_rate)
    else:
        model = build_model()
        compile_model(model, args, steps_per_epoch, learning_rate)
        print(f"{model.name}: {model.count_params():,} parameters, "
              f"{args.epochs} epochs x {steps_per_epoch} steps of "
              f"{args.batch_size}, peak learning rate {learning_rate:g}, "
              f"L2 weight decay {args.weight_decay:g} (Keras decoupled "
              f"{decoupled_weight_decay(args.weight_decay):g})")
        fit_and_evaluate(model, train_ds, eval_ds, args, steps_per_epoch,
                         args.eval_steps)
    if args.export_dir and writes_outputs:
        export_for_serving(model, args.export_dir, model.name, overwrite=True)
    return model


def _fusing(build_model):
    def build_fused_model():
        model = frn_keras.fuse_frn_tlu(build_model())
        fused = sum(isinstance(layer, frn_keras.FilterResponseNormalizationTLU)
                    for layer in model.layers)
        print(f"fused {fused} FRN -> TLU pairs into "
              "FilterResponseNormalizationTLU")
        return model
    return build_fused_model


def train_data_parallel(args, strategy, build_model, train_ds, eval_ds,
                        steps_per_epoch, learning_rate):
    """`--distribute`: the custom loop of `data_parallel.py` (XLA unless
    --no-jit-compile), a progress bar and per-epoch metrics, a checkpoint
    per epoch in --model-dir (resumed by a rerun), and the final test
    accuracy. Returns the model and whether this process is the one that
    writes the outputs (the chief)."""
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        raise SystemExit(
            f"--batch-size must be divisible by the {replicas} replicas, "
            f"got {args.batch_size}")
    with strategy.scope():
        model = build_model()
        optimizer = make_optimizer(args, steps_per_epoch, learning_rate)
        if keras.config.dtype_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        epoch = keras.Variable(0, dtype="int64", trainable=False,
                               name="epoch")
    trainer = data_parallel.DataParallelTrainer(
        strategy, model, optimizer, args.batch_size,
        jit_compile=args.jit_compile)
    manager = None
    if args.model_dir:
        manager = data_parallel.checkpoint_manager(
            strategy, args.model_dir, model=model, optimizer=optimizer,
            epoch=epoch)
        if manager.latest_checkpoint:
            manager.checkpoint.restore(manager.latest_checkpoint)
            print(f"resumed from {manager.latest_checkpoint} after epoch "
                  f"{int(epoch.numpy())}")
    print(f"{model.name}: {model.count_params():,} parameters, "
          f"{args.epochs} epochs x {steps_per_epoch} steps of "
          f"{args.batch_size} over {replicas} replicas, peak learning rate "
          f"{learning_rate:g}, XLA {'on' if args.jit_compile else 'off'}")
    batches = iter(data_parallel.split_global_batches(strategy, train_ds))
    start = time.perf_counter()
    for e in range(int(epoch.numpy()), args.epochs):
        print(f"Epoch {e + 1}/{args.epochs}")
        progress = keras.utils.Progbar(
            steps_per_epoch, verbose=1 if os.environ.get("CI") is None else 2)
        loss, accuracy = trainer.train(batches, steps_per_epoch, progress)
        val_accuracy = trainer.evaluate(eval_ds, args.eval_steps)
        print(f"epoch {e + 1}: loss {loss:.4f} - accuracy {accuracy:.4f} - "
              f"val_accuracy {val_accuracy:.4f}")
        epoch.assign(e + 1)
        if manager:
            manager.save()
    print(f"train time: {time.perf_counter() - start:.1f} s")
    accuracy = trainer.evaluate(eval_ds, args.eval_steps)
    print(f"final test accuracy: {accuracy:.4f}")
    return model, data_parallel.is_chief(strategy)


def data_options(args):
    """Unordered parallel map, except under multi-worker training, where
    every worker must see the same global batches (`data_parallel.py`)."""
    options = tf.data.Options()
    options.deterministic = args.distribute == "multi_worker"
    return options
