"""Where the data that comes with the project lies (../shared/data beside
the checkout; CI has it too), and skip markers for tests that need it."""

import pathlib

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_TAR = SHARED_DATA / "cifar10-jpeg.tar.gz"
IMAGENET_MANUAL = SHARED_DATA / "imagenet2012-manual-tiny"

needs_cifar = pytest.mark.skipif(
    not CIFAR_TAR.exists(),
    reason=f"real CIFAR-10 JPEG copy not found at {CIFAR_TAR}")
needs_imagenet = pytest.mark.skipif(
    not (IMAGENET_MANUAL / "ILSVRC2012_img_train.tar").exists(),
    reason=f"tiny ImageNet manual archives not found in {IMAGENET_MANUAL}")
