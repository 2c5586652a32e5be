"""The training examples' input pipelines do what their docstrings say: He
et al.'s CIFAR augmentation, the Inception-style random resized crop and
the 0.875 center crop for ImageNet evaluation, augmentation on the training
split only, and the splits each pipeline reads.

The crops are checked on images whose pixels hold their own coordinates:
a resize maps such a ramp to a ramp, so a straight-line fit of the output
recovers the crop box (its origin, size and orientation), which is then
checked against the ranges the docstrings give."""

import argparse
import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.example_modules import load_example
from tests.shared_data import needs_cifar

train_cifar = load_example("train_cifar")
train_imagenet = load_example("train_imagenet")
training = load_example("training")


def _coordinate_image(height, width):
    """uint8 image: channel 0 holds the row, channel 1 the column, channel 2
    a constant 7."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width),
                             indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], -1).astype("uint8")


def _fit_axis(values, margin=4):
    """Fits `values[i] = a + b * i` away from the borders (where an
    antialiased resize truncates its filter). Returns `(a, b)`; asserts that
    the values are a ramp."""
    i = np.arange(margin, len(values) - margin)
    b, a = np.polyfit(i, values[margin:len(values) - margin], 1)
    assert np.max(np.abs(a + b * i - values[i])) < 0.2
    return a, b


def _crop_box(out, size):
    """Recovers `(top, left, height, width, flipped)` of the input box that
    a resize to `size` x `size` (half-pixel centers) mapped onto `out`, from
    a coordinate image: output pixel i shows input `top + (i + 0.5) *
    height / size - 0.5` (columns reversed when flipped)."""
    a_row, b_row = _fit_axis(out[:, size // 2, 0])
    a_col, b_col = _fit_axis(out[size // 2, :, 1])
    height = b_row * size
    top = a_row - 0.5 * b_row + 0.5
    flipped = b_col < 0
    width = abs(b_col) * size
    if flipped:
        left = a_col - (size - 0.5) * width / size + 0.5
    else:
        left = a_col - 0.5 * b_col + 0.5
    return top, left, height, width, flipped


def test_cifar_augmentation_is_a_padded_crop_and_a_flip():
    rng = np.random.default_rng(0)
    # No zeros in the image, so the 4-pixel zero padding is recognisable.
    image = rng.integers(1, 256, size=(32, 32, 3)).astype("uint8")
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0))).astype("float32")
    windows = {
        (dy, dx, flip): (padded[dy:dy + 32, dx:dx + 32, :][:, ::-1] if flip
                         else padded[dy:dy + 32, dx:dx + 32, :])
        for dy in range(9) for dx in range(9) for flip in (False, True)
    }
    tf.random.set_seed(0)
    seen = set()
    for _ in range(300):
        out, label = train_cifar.augment(tf.constant(image), tf.constant(3))
        assert out.dtype == tf.float32 and out.shape == (32, 32, 3)
        assert int(label) == 3
        out = out.numpy()
        matches = [k for k, w in windows.items() if np.array_equal(out, w)]
        assert len(matches) == 1, "not a 32x32 window of the padded image"
        seen.add(matches[0])
    offsets = {(dy, dx) for dy, dx, _ in seen}
    # Every shift up to 4 pixels each way occurs (81 offsets, 300 draws),
    # and both orientations.
    assert {dy for dy, _ in offsets} == set(range(9))
    assert {dx for _, dx in offsets} == set(range(9))
    assert {flip for _, _, flip in seen} == {False, True}


def test_cifar_evaluation_images_are_only_cast():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), "uint8")
    out, label = train_cifar.to_float(tf.constant(image), tf.constant(5))
    assert out.dtype == tf.float32 and int(label) == 5
    np.testing.assert_array_equal(out.numpy(), image.astype("float32"))


def test_random_resized_crop_samples_the_inception_box_and_flips():
    height, width, size = 96, 128, 48
    image = tf.constant(_coordinate_image(height, width))
    tf.random.set_seed(0)
    areas, flips, origins = [], set(), []
    for _ in range(100):
        out, label = train_imagenet.random_resized_crop(image, 9, size)
        assert out.shape == (size, size, 3) and label == 9
        out = out.numpy()
        np.testing.assert_allclose(out[..., 2], 7.0, atol=1e-4)
        top, left, h, w, flipped = _crop_box(out, size)
        # Inside the image (to the fit's 0.2 pixels).
        assert top > -0.2 and left > -0.2
        assert top + h < height + 0.2 and left + w < width + 0.2
        # Aspect 3/4..4/3 and 8%..100% of the area, up to the box's
        # rounding to whole pixels.
        assert 0.75 * 0.95 < w / h < 4 / 3 * 1.05
        area = h * w / (height * width)
        assert 0.08 * 0.95 < area < 1.0 + 1e-3
        areas.append(area)
        flips.add(flipped)
        origins.append((top, left))
    assert flips == {False, True}
    assert min(areas) < 0.3 and max(areas) > 0.7  # the scale varies
    tops, lefts = zip(*origins)
    assert max(tops) > height / 4 and max(lefts) > width / 4  # and the place


@pytest.mark.parametrize("height,width", [(160, 240), (240, 160)])
def test_center_crop_keeps_the_central_0_875_of_the_shorter_side(
        height, width):
    size = 64
    image = tf.constant(_coordinate_image(height, width))
    out, label = train_imagenet.center_crop(image, 4, size)
    assert out.shape == (size, size, 3) and label == 4
    top, left, h, w, flipped = _crop_box(out.numpy(), size)
    assert not flipped
    shorter = min(height, width)
    # Resized so the shorter side is size / 0.875 (rounded to whole
    # pixels), so the crop spans 0.875 of it, with the aspect kept.
    np.testing.assert_allclose(h / shorter, 0.875, rtol=0.02)
    np.testing.assert_allclose(w / h, 1.0, rtol=0.02)
    # Centered, up to half a pixel of the resized image.
    resized_pixel = shorter / math.ceil(size / 0.875)
    assert abs(top + h / 2 - height / 2) < 0.6 * resized_pixel
    assert abs(left + w / 2 - width / 2) < 0.6 * resized_pixel


@needs_cifar
def test_cifar_epoch_is_one_pass_over_the_image_folder(cifar_folder,
                                                       tmp_path):
    # 3 classes with 2 training images each, not CIFAR's 50,000.
    for split, count in (("train", 2), ("test", 1)):
        for name in ("airplane", "cat", "ship"):
            source = sorted((cifar_folder / split / name).iterdir())[:count]
            (tmp_path / split / name).mkdir(parents=True)
            for path in source:
                shutil.copy(path, tmp_path / split / name / path.name)
    args = argparse.Namespace(
        image_folder=str(tmp_path), mock_data=False, dataset="cifar10",
        data_dir=None, seed=0, batch_size=2, distribute="none")
    train, test, train_examples = train_cifar.load_splits(args)
    assert train_examples == 6
    assert sum(1 for _ in train) == 6 and sum(1 for _ in test) == 3


def test_cifar_mock_epoch_is_one_pass_over_the_mock_images():
    args = argparse.Namespace(
        image_folder=None, mock_data=True, dataset="cifar10",
        data_dir=None, seed=0, batch_size=8, distribute="none")
    train, _, train_examples = train_cifar.load_splits(args)
    assert train_examples == sum(1 for _ in train) == 256


@needs_cifar
def test_cifar_pipelines_read_their_splits_and_augment_train_only(
        cifar_folder):
    args = argparse.Namespace(
        image_folder=str(cifar_folder), mock_data=False, dataset="cifar10",
        data_dir=None, seed=0, batch_size=64, distribute="none")
    train, test, _ = train_cifar.input_pipelines(args)
    assert train.element_spec[0].shape == (64, 32, 32, 3)  # one XLA shape
    assert train.element_spec[0].dtype == tf.float32
    assert train.cardinality() == tf.data.INFINITE_CARDINALITY  # repeats
    # The 10,000 test images, in batches of 64, the last one partial.
    assert int(test.cardinality()) == math.ceil(10_000 / 64)

    # Test images are the decoded files, only cast.
    _, raw_test, _ = train_cifar.load_splits(args)
    raw = np.stack([x.numpy() for x, _ in raw_test.take(64)])
    images, _ = next(iter(test))
    np.testing.assert_array_equal(images.numpy(), raw.astype("float32"))

    # Training images are padded crops: a random 4-pixel shift leaves a
    # zero border unless it is (0, 0), 1 draw in 81. The photos themselves
    # almost never have an all-zero edge (none of those 64 test images).
    def has_zero_edge(x):
        return any(not edge.any() for edge in (x[0], x[-1], x[:, 0], x[:, -1]))

    assert not any(has_zero_edge(x) for x in raw)
    images, _ = next(iter(train))
    assert np.mean([has_zero_edge(x) for x in images.numpy()]) > 0.8


def test_imagenet_pipelines_batch_crops_of_the_image_size():
    args = argparse.Namespace(
        mock_data=True, data_dir=None, manual_dir=None, train_split="train",
        eval_split="validation", image_size=40, batch_size=4, seed=0,
        distribute="none")
    train, evaluation, train_examples, num_classes = (
        train_imagenet.input_pipelines(args))
    assert num_classes == 1000 and train_examples == 64
    assert train.element_spec[0].shape == (4, 40, 40, 3)
    assert evaluation.element_spec[0].shape == (None, 40, 40, 3)
    assert train.cardinality() == tf.data.INFINITE_CARDINALITY
    images, labels = next(iter(train))
    assert images.shape == (4, 40, 40, 3) and labels.shape == (4,)


@pytest.mark.parametrize("distribute,deterministic", [
    ("none", False), ("mirrored", False), ("multi_worker", True)])
def test_only_multi_worker_input_is_deterministic(distribute, deterministic):
    # Multi-worker training needs every worker to see the same batches.
    options = training.data_options(argparse.Namespace(distribute=distribute))
    assert options.deterministic is deterministic
