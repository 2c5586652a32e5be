"""Train ResNetV2-50 (FRN + TLU by default) on ImageNet with XLA.

Data through tensorflow-datasets `imagenet2012`, built from the manually
downloaded archives (`ILSVRC2012_img_train.tar`, `ILSVRC2012_img_val.tar`)
in `--manual-dir`, or `--mock-data`.

    python examples/train_imagenet.py --manual-dir ~/imagenet --data-dir ~/tfds \\
        --batch-size 256 --mixed-precision bfloat16 --distribute mirrored \\
        --model-dir runs/rn50_frn --export-dir saved_models
"""

import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import training  # noqa: E402  (sets the backend before keras is imported)

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from frn_keras.models import resnet_v2_50  # noqa: E402

AUTOTUNE = tf.data.AUTOTUNE
# What tfds' imagenet2012 builder reads from the manual folder (it reads the
# validation archive's labels even to build the train split alone).
ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
CROP_FRACTION = 0.875  # eval: resize to size / 0.875, center crop


def load_splits(args):
    """Returns `(train, eval, train_examples, num_classes)`."""
    mock = (tfds.testing.mock_data(num_examples=64) if args.mock_data
            else contextlib.nullcontext())
    with mock:
        builder = tfds.builder("imagenet2012", data_dir=args.data_dir)
        if not args.mock_data:
            # Builds the TFRecords once from the manual archives; no download.
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=args.manual_dir))
        splits = [
            builder.as_dataset(split=split, as_supervised=True,
                               shuffle_files=split == args.train_split)
            for split in (args.train_split, args.eval_split)
        ]
        info = builder.info
        train_examples = (info.splits[args.train_split].num_examples
                          if not args.mock_data else 64)
    return (*splits, train_examples, info.features["label"].num_classes)


def missing_archives(manual_dir, data_dir):
    """The `ARCHIVES` that `manual_dir` lacks; none once tfds has built the
    dataset in `data_dir`."""
    if tfds.builder("imagenet2012", data_dir=data_dir).is_prepared():
        return []
    return [name for name in ARCHIVES
            if not os.path.isfile(os.path.join(manual_dir, name))]


def random_resized_crop(image, label, size):
    """Inception-style crop (8%-100% of the area, aspect 3/4-4/3), resized
    to `size`, and a random horizontal flip."""
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    channels = image.shape[-1]
    image = tf.slice(image, begin, crop_size)
    image.set_shape((None, None, channels))  # a dynamic slice loses it
    image = tf.image.resize(image, (size, size), antialias=True)
    image = tf.image.random_flip_left_right(image)
    return image, label


def center_crop(image, label, size):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (size / CROP_FRACTION) / tf.reduce_min(shape)
    resized = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, resized, antialias=True)
    image = tf.image.resize_with_crop_or_pad(image, size, size)
    return image, label


def input_pipelines(args):
    train, evaluation, train_examples, num_classes = load_splits(args)
    size = args.image_size
    train = (train.shuffle(10_000, seed=args.seed).repeat()
             .map(lambda x, y: random_resized_crop(x, y, size),
                  num_parallel_calls=AUTOTUNE)
             .batch(args.batch_size, drop_remainder=True)
             .prefetch(AUTOTUNE).with_options(training.data_options(args)))
    evaluation = (evaluation
                  .map(lambda x, y: center_crop(x, y, size),
                       num_parallel_calls=AUTOTUNE)
                  .batch(args.batch_size).prefetch(AUTOTUNE))
    return train, evaluation, train_examples, num_classes


def main(argv=None):
    parser = training.common_parser(
        __doc__.split("\n")[0], batch_size=256, epochs=90, warmup_epochs=5,
        weight_decay=1e-4,
    )
    parser.add_argument("--manual-dir", default=None,
                        help="folder with the ILSVRC2012 tar archives")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="validation",
                        help="e.g. 'train[:5%%]' for a held-out train slice")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    training.check_common_args(parser, args)
    if not args.mock_data and not args.manual_dir:
        parser.error("--manual-dir is required (or --mock-data)")
    if not args.mock_data:
        missing = missing_archives(args.manual_dir, args.data_dir)
        if missing:
            parser.error(f"--manual-dir {args.manual_dir} lacks "
                         f"{' and '.join(missing)}, from which tfds builds "
                         "imagenet2012 (once, into --data-dir)")
    if args.image_size < 32:
        parser.error(f"--image-size must be >= 32, got {args.image_size}")

    strategy = training.configure_runtime(args)
    train, evaluation, train_examples, num_classes = input_pipelines(args)
    training.run(
        args,
        lambda: resnet_v2_50(num_classes, norm=args.norm,
                             data_format=args.data_format,
                             input_shape=(args.image_size, args.image_size, 3)),
        train, evaluation, train_examples, reference_batch=256,
        strategy=strategy,
    )


if __name__ == "__main__":
    main()
