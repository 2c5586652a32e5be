"""Train a CIFAR ResNet (FRN + TLU by default) with XLA.

Data through tensorflow-datasets: `cifar10` / `cifar100` (downloaded by tfds
where there is network), a folder of images in `<split>/<class>/*.jpg`
layout read by `tfds.folder_dataset.ImageFolder` (`--image-folder`, e.g. the
CIFAR-10 JPEG copy), or `--mock-data`.

    python examples/train_cifar.py                            # ResNet-20 FRN, CIFAR-10
    python examples/train_cifar.py --norm bn --depth 56 --dataset cifar100
    python examples/train_cifar.py --image-folder DIR --model-dir runs/r20_frn
"""

import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import training  # noqa: E402  (sets the backend before keras is imported)

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from frn_keras.models import resnet_cifar  # noqa: E402
from frn_keras.models.resnet_cifar import cifar_blocks_per_stage  # noqa: E402

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
TRAIN_SIZE = 50_000  # CIFAR-10 and CIFAR-100 alike
MOCK_EXAMPLES = 256  # per split, with --mock-data
AUTOTUNE = tf.data.AUTOTUNE


def load_splits(args):
    """Returns `(train, test, train_examples)`: datasets of `(uint8 image,
    label)` and the number of training images (an epoch's worth)."""
    if args.image_folder:
        builder = tfds.folder_dataset.ImageFolder(
            args.image_folder, shape=(32, 32, 3), dtype=tf.uint8
        )
        return (*(builder.as_dataset(split=split, as_supervised=True,
                                     shuffle_files=split == "train")
                  for split in ("train", "test")),
                builder.info.splits["train"].num_examples)
    mock = (tfds.testing.mock_data(num_examples=MOCK_EXAMPLES)
            if args.mock_data else contextlib.nullcontext())
    with mock:
        return (*(tfds.load(args.dataset, split=split, data_dir=args.data_dir,
                            as_supervised=True, shuffle_files=split == "train",
                            download=not args.mock_data)
                  for split in ("train", "test")),
                MOCK_EXAMPLES if args.mock_data else TRAIN_SIZE)


def image_folder_problem(folder, num_classes):
    """Why `folder` cannot serve as `--image-folder` for `num_classes`
    classes, or `None`: each of `train/` and `test/` needs class folders
    with files in them, and at most `num_classes` of them (ImageFolder
    labels the sorted class names 0, 1, ...)."""
    for split in ("train", "test"):
        split_dir = os.path.join(folder, split)
        classes = [entry.path for entry in os.scandir(split_dir)
                   if entry.is_dir()] if os.path.isdir(split_dir) else []
        if not any(os.listdir(path) for path in classes):
            return f"{split_dir} has no <class>/<image> files"
        if len(classes) > num_classes:
            return (f"{split_dir} has {len(classes)} class folders, more "
                    f"than the {num_classes} classes of the model")
    return None


def augment(image, label):
    """He et al.'s CIFAR augmentation: 4-pixel zero padding, random 32x32
    crop, random horizontal flip."""
    image = tf.image.pad_to_bounding_box(image, 4, 4, 40, 40)
    image = tf.image.random_crop(image, (32, 32, 3))
    image = tf.image.random_flip_left_right(image)
    return tf.cast(image, tf.float32), label


def to_float(image, label):
    return tf.cast(image, tf.float32), label


def input_pipelines(args):
    train, test, train_examples = load_splits(args)
    # The decoded uint8 images (150 MB for CIFAR) stay in memory, so JPEG
    # decoding and file reads happen in the first epoch only.
    train, test = train.cache(), test.cache()
    train = (train.shuffle(10_000, seed=args.seed).repeat()
             .map(augment, num_parallel_calls=AUTOTUNE)
             # One batch shape, so XLA compiles the train step once.
             .batch(args.batch_size, drop_remainder=True)
             .prefetch(AUTOTUNE).with_options(training.data_options(args)))
    test = (test.map(to_float, num_parallel_calls=AUTOTUNE)
            .batch(args.batch_size).prefetch(AUTOTUNE))
    return train, test, train_examples


def main(argv=None):
    parser = training.common_parser(
        __doc__.split("\n")[0], batch_size=128, epochs=180, warmup_epochs=5,
        weight_decay=1e-4,
    )
    parser.add_argument("--dataset", default="cifar10", choices=NUM_CLASSES)
    parser.add_argument("--depth", type=int, default=20,
                        help="6n + 2: 20, 32, 44, 56, 110")
    parser.add_argument("--image-folder", default=None,
                        help="folder with train/<class>/ and test/<class>/ "
                        "images (read by tfds ImageFolder)")
    args = parser.parse_args(argv)
    training.check_common_args(parser, args)
    try:
        cifar_blocks_per_stage(args.depth)
    except ValueError:
        parser.error(f"--depth must be 6n + 2 (20, 32, 56, ...), got {args.depth}")
    if args.image_folder:
        problem = image_folder_problem(args.image_folder,
                                       NUM_CLASSES[args.dataset])
        if problem:
            parser.error(f"--image-folder {args.image_folder}: {problem}")

    strategy = training.configure_runtime(args)
    train, test, train_examples = input_pipelines(args)
    training.run(
        args,
        lambda: resnet_cifar(args.depth, NUM_CLASSES[args.dataset],
                             norm=args.norm, data_format=args.data_format),
        train, test, train_examples, reference_batch=128, strategy=strategy,
    )


if __name__ == "__main__":
    main()
