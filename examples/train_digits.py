"""Train a small FRN + TLU ConvNet on the scikit-learn handwritten digits.

The project's offline main job: the digits (8x8 grey images, 10 classes,
1,797 real scans from UCI) ship inside scikit-learn, so this runs with no
download. Training is compiled with XLA (`jit_compile=True`).

    python examples/train_digits.py                  # defaults below
    python examples/train_digits.py --batch-size 4 --epochs 20
    python examples/train_digits.py --save runs/digits_frn.keras
    python examples/train_digits.py --export-dir saved_models   # TF Serving
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import frn_keras  # noqa: E402
from frn_keras.export import export_for_serving  # noqa: E402
from frn_keras.export import write_models_config  # noqa: E402


def load_digits_images():
    """Returns `(x, y)`: all 1,797 digits as raw-pixel uint8 RGB images of
    shape `(n, 8, 8, 3)` (the 0..16 grey levels scaled to 0..255, as a client
    would send them) and int32 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).astype("uint8")
    return np.repeat(grey[..., None], 3, axis=-1), digits.target.astype(
        "int32")


def load_digits_split(test_fraction=0.2, seed=0):
    """Returns `(x_train, y_train), (x_test, y_test)` of
    `load_digits_images()`, split per class."""
    from sklearn.model_selection import train_test_split

    x, y = load_digits_images()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return (x_train, y_train), (x_test, y_test)


def build_model(num_classes=10, width=32):
    """Raw pixels in (the preprocessing is part of the model), Conv-FRN-TLU
    blocks, then Dense-FRN-TLU (the paper's N = 1 case, with a learned
    epsilon) and a linear classifier giving logits."""
    inputs = keras.Input((8, 8, 3), name="images")
    h = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    for filters, strides in [(width, 1), (2 * width, 2), (2 * width, 1)]:
        h = keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False
        )(h)
        h = frn_keras.FilterResponseNormalization()(h)
        h = frn_keras.TLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(2 * width, use_bias=False)(h)
    h = frn_keras.FilterResponseNormalization(learned_epsilon=True)(h)
    h = frn_keras.TLU()(h)
    outputs = keras.layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name="digits_frn_convnet")


def check_batch_size(batch_size, num_train, name="batch_size"):
    """Raises `ValueError` (naming the argument `name`) unless
    `1 <= batch_size <= num_train`: a batch larger than the training set is
    the whole set, while the default learning rate would still grow with
    `batch_size` (and diverge)."""
    if not 1 <= batch_size <= num_train:
        raise ValueError(
            f"{name} must be between 1 and {num_train} (the training "
            f"images), got {batch_size}")


def train(epochs=30, batch_size=32, learning_rate=0.05, jit_compile=True,
          seed=0, verbose=1, data=None):
    """Trains the model and returns `(model, history, test_accuracy)`."""
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data or load_digits_split(seed=seed)
    check_batch_size(batch_size, len(x_train))
    model = build_model()
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=learning_rate,
        warmup_steps=max(1, steps // 10),
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs,
        validation_data=(x_test, y_test), verbose=verbose,
    )
    _, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    return model, history, test_accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="at most the 1,437 training images; a larger "
                        "batch takes fewer steps per epoch")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak learning rate (default 0.05 x batch / 32, "
                        "the linear scaling rule of the other examples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-jit-compile", dest="jit_compile", action="store_false",
        help="train without XLA",
    )
    parser.add_argument("--save", help="write the trained model (.keras)")
    parser.add_argument(
        "--export-dir",
        help="export a TF Serving SavedModel to EXPORT_DIR/digits_frn/1 and "
        "write EXPORT_DIR/models.config",
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size"):
        value = getattr(args, name)
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.learning_rate is None:
        args.learning_rate = 0.05 * args.batch_size / 32
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    if args.save and not args.save.endswith(".keras"):
        # Checked now, not when Keras refuses it after training.
        parser.error(f"--save must name a .keras file, got {args.save}")

    start = time.perf_counter()
    data = load_digits_split(seed=args.seed)
    try:
        check_batch_size(args.batch_size, len(data[0][0]), "--batch-size")
    except ValueError as error:
        parser.error(str(error))
    model, _, accuracy = train(
        epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, jit_compile=args.jit_compile,
        seed=args.seed, data=data,
    )
    print(f"XLA jit_compile: {model.jit_compile}")
    print(f"train time: {time.perf_counter() - start:.1f} s")
    print(f"test accuracy (digits, held-out 20%): {accuracy:.4f}")
    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        model.save(args.save)
        print(f"saved {args.save}")
    if args.export_dir:
        (_, _), (x_test, _) = data
        export_for_serving(
            model, args.export_dir, "digits_frn", version=1,
            warmup_images=x_test[:32], overwrite=True,
        )
        write_models_config(args.export_dir, ["digits_frn"])


if __name__ == "__main__":
    main()
