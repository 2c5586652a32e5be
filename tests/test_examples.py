"""End-to-end smoke runs of the training examples through the real
tensorflow-datasets code paths: mock data, and the real images in
../shared/data (CIFAR-10 JPEG copy, tiny ImageNet in the manual layout)."""

import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.example_modules import load_example
from tests.loopback_cluster import worker_tf_configs
from tests.shared_data import IMAGENET_MANUAL
from tests.shared_data import needs_cifar
from tests.shared_data import needs_imagenet

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(script, args, tmp_path, xla_dump=None):
    env = dict(os.environ, KERAS_BACKEND="tensorflow",
               TFDS_DATA_DIR=str(tmp_path / "tfds"))
    if xla_dump:
        env["XLA_FLAGS"] = f"--xla_dump_to={xla_dump}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        env=env, capture_output=True, text=True, timeout=600,
        cwd=tmp_path,  # default outputs (saved_models/) land in tmp_path
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # fit() is told that the pipeline shuffles (Keras warns otherwise).
    assert "will be ignored since the data" not in result.stderr
    return result.stdout


def _final_accuracy(stdout):
    line = [l for l in stdout.splitlines() if "final test accuracy" in l][-1]
    return float(line.split()[-1])


SMOKE = ["--epochs", "1", "--steps-per-epoch", "2", "--eval-steps", "1"]


def test_cifar_mock_data_trains_with_xla_and_exports(tmp_path):
    dump = tmp_path / "xla"
    out = _run("train_cifar.py",
               ["--mock-data", "--batch-size", "8", *SMOKE],
               tmp_path, xla_dump=dump)
    assert "XLA: jit_compile=True" in out
    # The peak learning rate scales linearly: 0.1 at the reference batch 128.
    assert "1 epochs x 2 steps of 8, peak learning rate 0.00625," in out
    assert 0.0 <= _final_accuracy(out) <= 1.0
    # XLA really compiled the training step.
    assert any("one_step_on_data" in p.name for p in dump.iterdir())
    # Exported by default to saved_models/ in the working directory.
    served = tf.saved_model.load(
        str(tmp_path / "saved_models" / "resnet20_frn" / "1"))
    probs = served.signatures["serving_default"](
        images=tf.zeros((2, 32, 32, 3), tf.uint8))["probabilities"]
    assert probs.shape == (2, 10)


@needs_cifar
def test_cifar_real_jpeg_copy_through_tfds_image_folder(cifar_folder, tmp_path):
    out = _run("train_cifar.py",
               ["--image-folder", str(cifar_folder), "--batch-size", "16",
                "--norm", "bn", *SMOKE], tmp_path)
    assert "resnet20_bn" in out and "final test accuracy" in out


def test_cifar_resumes_from_model_dir_after_interrupt(tmp_path):
    model_dir = tmp_path / "run"
    common = ["--mock-data", "--batch-size", "8", "--steps-per-epoch", "2",
              "--eval-steps", "1", "--model-dir", str(model_dir)]
    first = _run("train_cifar.py", [*common, "--epochs", "1", "--no-export"],
                 tmp_path)
    assert "final test accuracy" in first
    assert not (tmp_path / "saved_models").exists()
    # A second run asked for 2 epochs starts at epoch 2, from the backup.
    second = _run("train_cifar.py", [*common, "--epochs", "2"], tmp_path)
    assert "Epoch 2/2" in second and "Epoch 1/2" not in second
    assert (model_dir / "last.keras").exists()
    assert any((model_dir / "logs").rglob("*tfevents*"))


def test_cifar_channels_first_mixed_precision_without_xla(tmp_path):
    out = _run("train_cifar.py",
               ["--mock-data", "--batch-size", "4", "--norm", "gn",
                "--data-format", "channels_first", "--mixed-precision",
                "bfloat16", "--no-jit-compile", "--depth", "8", *SMOKE],
               tmp_path)
    assert "XLA: off" in out and "final test accuracy" in out


def test_imagenet_mock_data_trains_fused(tmp_path):
    out = _run("train_imagenet.py",
               ["--mock-data", "--image-size", "32", "--batch-size", "4",
                "--fuse-frn-tlu", "--no-export", *SMOKE], tmp_path)
    assert "resnet_v2_50_frn" in out and "XLA: jit_compile=True" in out
    # 0.1 at ImageNet's reference batch 256.
    assert "peak learning rate 0.0015625," in out
    # ResNetV2-50 is pre-activation: every one of its 49 FRNs feeds a TLU.
    assert "fused 49 FRN -> TLU pairs" in out
    assert 0.0 <= _final_accuracy(out) <= 1.0


@needs_imagenet
def test_imagenet_builds_from_manual_dir_and_trains(tmp_path):
    # Validation labels of a subset are wrong (tfds assigns them by
    # position), so evaluate on a held-out slice of train.
    out = _run("train_imagenet.py",
               ["--manual-dir", str(IMAGENET_MANUAL),
                "--data-dir", str(tmp_path / "tfds"),
                "--train-split", "train[10%:]", "--eval-split", "train[:10%]",
                "--image-size", "32", "--batch-size", "8", "--no-export",
                *SMOKE],
               tmp_path)
    assert "final test accuracy" in out
    assert (tmp_path / "tfds" / "imagenet2012").is_dir()
    # Once built, the archives are no longer needed.
    train_imagenet = load_example("train_imagenet")
    assert train_imagenet.missing_archives(
        str(tmp_path / "empty"), str(tmp_path / "tfds")) == []


def test_imagenet_names_the_archives_its_manual_dir_lacks(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_imagenet.py"),
         "--manual-dir", str(manual), "--data-dir", str(tmp_path / "tfds")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert (f"--manual-dir {manual} lacks ILSVRC2012_img_val.tar, from which"
            in result.stderr)
    assert not (tmp_path / "tfds").exists()  # nothing started


@pytest.mark.parametrize("script,args,message", [
    ("train_cifar.py", ["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ("train_cifar.py", ["--weight-decay=-0.5"],
     "--weight-decay must be >= 0, got -0.5"),
    ("train_imagenet.py", ["--mock-data", "--warmup-epochs", "nan"],
     "--warmup-epochs must be >= 0, got nan"),
    ("train_cifar.py", ["--norm", "xn"], "invalid choice: 'xn'"),
    ("train_cifar.py", ["--depth", "19"], "--depth must be 6n + 2"),
    ("train_cifar.py", ["--norm", "bn", "--fuse-frn-tlu"],
     "--fuse-frn-tlu needs --norm frn, got --norm bn"),
    ("train_imagenet.py", [], "--manual-dir is required"),
    ("train_cifar.py", ["--image-folder", "/nonexistent"],
     "--image-folder /nonexistent: /nonexistent/train has no <class>/<image> "
     "files"),
])
def test_examples_reject_bad_flags(script, args, message, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr


def test_cifar_image_folder_needs_images_and_at_most_the_model_classes(
        tmp_path):
    train_cifar = load_example("train_cifar")
    for split in ("train", "test"):
        for c in range(11):
            (tmp_path / split / f"class{c}").mkdir(parents=True)
    # Class folders without images, then with: 11 > CIFAR-10's 10 classes.
    assert train_cifar.image_folder_problem(str(tmp_path), 11) == (
        f"{tmp_path / 'train'} has no <class>/<image> files")
    for c in range(11):
        (tmp_path / "train" / f"class{c}" / "0.jpg").write_bytes(b"")
    assert train_cifar.image_folder_problem(str(tmp_path), 11) == (
        f"{tmp_path / 'test'} has no <class>/<image> files")
    (tmp_path / "test" / "class0" / "0.jpg").write_bytes(b"")
    assert train_cifar.image_folder_problem(str(tmp_path), 11) is None
    assert train_cifar.image_folder_problem(str(tmp_path), 10) == (
        f"{tmp_path / 'train'} has 11 class folders, more than the 10 "
        "classes of the model")


def test_cifar_mirrored_strategy_with_xla_resumes_and_exports(tmp_path):
    common = ["--mock-data", "--batch-size", "8", "--depth", "8",
              "--steps-per-epoch", "2", "--eval-steps", "1",
              "--distribute", "mirrored", "--logical-cpus", "2",
              "--mixed-precision", "float16",  # with loss scaling
              "--model-dir", str(tmp_path / "run")]
    first = _run("train_cifar.py", [*common, "--epochs", "1"], tmp_path)
    assert "MirroredStrategy, 2 replicas" in first and "XLA on" in first
    second = _run("train_cifar.py",
                  [*common, "--epochs", "2", "--export-dir",
                   str(tmp_path / "export")], tmp_path)
    assert "resumed from" in second
    assert "Epoch 2/2" in second and "Epoch 1/2" not in second
    assert 0.0 <= _final_accuracy(second) <= 1.0
    assert (tmp_path / "export" / "resnet8_frn" / "1" / "saved_model.pb").exists()


def test_cifar_multi_worker_two_processes(tmp_path):
    workers = []
    for tf_config in worker_tf_configs(2):
        env = dict(os.environ, KERAS_BACKEND="tensorflow",
                   TFDS_DATA_DIR=str(tmp_path / "tfds"), TF_CONFIG=tf_config)
        workers.append(subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "train_cifar.py"),
             "--mock-data", "--batch-size", "8", "--depth", "8", *SMOKE,
             "--distribute", "multi_worker",
             "--export-dir", str(tmp_path / "export")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=600)
        assert worker.returncode == 0, output[-4000:]
        outputs.append(output)
    for output in outputs:
        assert "MultiWorkerMirroredStrategy" in output or (
            "CollectiveAllReduceStrategy" in output)
        assert "2 replicas" in output and "final test accuracy" in output
    # Only the chief (worker 0) exports.
    assert "exported SavedModel" in outputs[0]
    assert "exported SavedModel" not in outputs[1]
