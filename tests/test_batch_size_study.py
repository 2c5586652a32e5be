"""The batch-size study follows the protocol its docstring and README give:
the splits it reads, the model, the optimizer, the learning rate chosen
per norm on the validation split, every (norm, batch size, seed) run on
the test split, and a table of mean +- sample std over seeds.

The protocol tests replace the training run with a fake whose accuracies
are known, so the choices and the table are checked against numbers
computed here, independently."""

import math
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import frn_keras
from frn_keras._graph import readers_of
from tests.example_modules import load_benchmark
from tests.example_modules import load_example
from tests.shared_data import CIFAR_TAR
from tests.shared_data import needs_cifar

study = load_benchmark("batch_size_study")

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
           "horse", "ship", "truck"]
# README: seven norms, then two more activations after FRN for the ablation.
NORMS = ["bn", "gn", "ln", "frn", "frn_relu", "gn_pn", "ln_pn", "frn_prelu",
         "frn_atlu"]


@needs_cifar
def test_cifar_subset_takes_the_first_images_of_each_class(cifar_folder):
    data = study.load_cifar_subset(str(CIFAR_TAR), train_per_class=3,
                                   val_per_class=2, test_per_class=2)
    files = {
        "train": [f"train/{c}/{i:04d}.jpg" for c in CLASSES for i in (0, 1, 2)],
        "val": [f"train/{c}/{i:04d}.jpg" for c in CLASSES for i in (3, 4)],
        "test": [f"test/{c}/{i:04d}.jpg" for c in CLASSES for i in (0, 1)],
    }
    for split, names in files.items():
        x, y = data[split]
        want = np.stack([
            tf.io.decode_jpeg(tf.io.read_file(str(cifar_folder / name)),
                              channels=3).numpy() for name in names])
        np.testing.assert_array_equal(x, want, err_msg=split)
        assert x.dtype == np.uint8
        labels = [CLASSES.index(name.split("/")[1]) for name in names]
        np.testing.assert_array_equal(y, labels, err_msg=split)


def test_digits_splits_are_a_shuffled_60_20_20_partition():
    # The pixels are the main job's (checked in tests/test_training.py).
    x, y = load_example("train_digits").load_digits_images()
    data = study.load_digits_splits()
    sizes = {split: len(y_split) for split, (_, y_split) in data.items()}
    assert sizes == {"train": 1078, "val": 359, "test": 360}
    # Together the three splits are the 1,797 digits, each once.
    got = sorted((image.tobytes(), label)
                 for x_split, y_split in data.values()
                 for image, label in zip(x_split, y_split))
    assert got == sorted((image.tobytes(), label)
                         for image, label in zip(x, y))
    # Shuffled: the training split is not the first 60% of the set.
    assert not np.array_equal(data["train"][1], y[:1078])


def test_convnet_normalizes_its_input_and_has_the_documented_stages():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 8, 8, 3)).astype("uint8")
    x[..., 1] //= 4  # channels with different statistics
    mean = x.reshape(-1, 3).mean(0) / 255.0
    std = x.reshape(-1, 3).std(0) / 255.0
    model = study.build_convnet("frn", (8, 8, 3), 10, mean, std)
    normalization = next(layer for layer in model.layers
                         if isinstance(layer, keras.layers.Normalization))
    z = keras.Model(model.input, normalization.output)(x).numpy()
    np.testing.assert_allclose(z.reshape(-1, 3).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.reshape(-1, 3).std(0), 1, atol=1e-3)

    convs = [layer for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.strides) for c in convs] == [
        (16, (1, 1)), (32, (2, 2)), (32, (1, 1)), (64, (2, 2))]
    assert model.output.shape == (None, 10)


@pytest.mark.parametrize("norm, act", [
    ("frn", lambda layer: isinstance(layer, frn_keras.TLU)
     and not layer.affine),
    ("frn_atlu", lambda layer: isinstance(layer, frn_keras.TLU)
     and layer.affine),
    ("frn_relu", lambda layer: isinstance(layer, keras.layers.ReLU)),
    ("frn_prelu", lambda layer: isinstance(layer, keras.layers.PReLU)
     and layer.shared_axes == [1, 2]),
])
def test_each_convolution_is_followed_by_frn_and_the_ablation_activation(
        norm, act):
    study._register_ablation_norms()
    model = study.build_convnet(norm, (8, 8, 3), 10, np.zeros(3), np.ones(3))
    for conv in (layer for layer in model.layers
                 if isinstance(layer, keras.layers.Conv2D)):
        [norm_layer] = readers_of(conv)
        [act_layer] = readers_of(norm_layer)
        assert isinstance(norm_layer, frn_keras.FilterResponseNormalization)
        assert act(act_layer), act_layer


@pytest.mark.parametrize("warmup_fraction", [0.1, 0.0])
def test_learning_rate_is_scaled_by_the_batch_warmed_up_and_cosine_decayed(
        warmup_fraction):
    base_lr, batch_size, steps = 0.2, 8, 200
    optimizer = study.make_optimizer(base_lr, batch_size, steps,
                                     warmup_fraction)
    peak = base_lr * batch_size / 32
    warmup = int(warmup_fraction * steps)

    def want(step):
        if step < warmup:
            return peak * step / warmup
        progress = (step - warmup) / (steps - warmup)
        return peak * 0.5 * (1 + math.cos(math.pi * progress))

    for step in [0, 5, warmup, 60, 100, 150, 199, 200]:
        optimizer.iterations.assign(step)
        got = float(optimizer.learning_rate)
        assert got == pytest.approx(want(step), rel=1e-5, abs=1e-7), step
    assert optimizer.momentum == 0.9


def test_weight_decay_shrinks_kernels_but_not_norm_parameters():
    study._register_ablation_norms()
    model = study.build_convnet("frn_atlu", (8, 8, 3), 10, np.zeros(3),
                                np.ones(3))
    optimizer = study.make_optimizer(0.4, 32, 10, warmup_fraction=0.0)
    before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
    # Zero gradients: any change is the decoupled weight decay,
    # w -= lr * 5e-4 * w.
    optimizer.apply_gradients(
        [(tf.zeros_like(v), v) for v in model.trainable_variables])
    norm_names = ("gamma", "beta", "tau", "alpha")
    for v in model.trainable_variables:
        old = before[v.path]
        if v.name in norm_names:
            np.testing.assert_array_equal(v.numpy(), old, err_msg=v.path)
        elif v.name == "kernel":
            np.testing.assert_allclose(v.numpy(), old * (1 - 0.4 * 5e-4),
                                       rtol=1e-6, err_msg=v.path)
    assert {v.name for v in model.trainable_variables} >= {
        "kernel", *norm_names}


def test_training_batches_are_a_fresh_shuffle_of_every_epoch():
    x = np.arange(20, dtype="float32")[:, None]
    y = np.arange(20, dtype="int32")

    def stream(seed):
        """The labels of the first 10 batches of 6 (3 epochs), in order."""
        batches = study.training_batches(x, y, batch_size=6, seed=seed)
        assert batches.element_spec[1].shape == (6,)  # one static shape
        pairs = [(xb.numpy()[:, 0], yb.numpy())
                 for xb, yb in batches.take(10)]
        for xb, yb in pairs:
            np.testing.assert_array_equal(xb, yb)  # pairs stay together
        return np.concatenate([yb for _, yb in pairs])

    labels = stream(seed=3)
    epochs = labels.reshape(3, 20)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(20))
    assert not np.array_equal(epochs[0], np.arange(20))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(stream(seed=4), labels)


def test_training_run_is_scored_on_the_requested_split():
    x, y = study.load_digits_splits()["train"]
    # The same images, once with their labels and once with every label
    # moved to the next class: the trained model must score high on the
    # first and low on the second.
    data = {"train": (x, y), "val": (x, y), "test": (x, (y + 1) % 10)}
    kwargs = dict(norm="frn", batch_size=32, base_lr=0.1, steps=60, seed=0)
    assert study.train_and_evaluate(data, split="val", **kwargs) > 0.6
    assert study.train_and_evaluate(data, split="test", **kwargs) < 0.2


class FakeTraining:
    """Stands in for `train_and_evaluate`: records each call and returns a
    known accuracy. On validation, bn is best at base lr 0.2 and frn at 0.4
    (its 0.1 run diverges: NaN); on test, the accuracy depends on the norm,
    the batch size and the seed."""

    VAL = {"bn": {0.1: 0.5, 0.2: 0.7, 0.4: 0.6},
           "frn": {0.1: math.nan, 0.2: 0.3, 0.4: 0.8}}

    def __init__(self):
        self.calls = []

    @staticmethod
    def accuracy_on_test(norm, batch_size, seed):
        return (0.05 * NORMS.index(norm) + 0.001 * batch_size
                + 0.01 * seed ** 2)

    def __call__(self, data, norm, batch_size, base_lr, steps, seed, split,
                 warmup_fraction=0.1):
        self.calls.append((norm, batch_size, base_lr, steps, seed, split,
                           warmup_fraction))
        if split == "val":
            return self.VAL.get(norm, {}).get(base_lr, 0.5)
        return self.accuracy_on_test(norm, batch_size, seed)


def _table_row(norm, base_lr, batch_sizes, seeds):
    cells = []
    for b in batch_sizes:
        values = [FakeTraining.accuracy_on_test(norm, b, s)
                  for s in range(seeds)]
        std = float(np.std(values, ddof=1)) if seeds > 1 else 0.0
        cells.append(f"{np.mean(values):.3f} ± {std:.3f}")
    return f"| {norm} | {base_lr:g} | " + " | ".join(cells) + " |"


@pytest.fixture
def fake_training(monkeypatch):
    fake = FakeTraining()
    monkeypatch.setattr(study, "train_and_evaluate", fake)
    return fake


def test_protocol_chooses_the_rate_on_validation_and_reports_test(
        fake_training, tmp_path):
    out = tmp_path / "study"

    def run(norms, seeds, steps=50, warmup_fraction=0.1):
        return study.main([
            "--quick", "--norms", *norms, "--batch-sizes", "2", "8",
            "--seeds", str(seeds), "--steps", str(steps),
            "--warmup-fraction", str(warmup_fraction),
            "--lr-grid", "0.1", "0.2", "0.4", "--lr-batch", "4",
            "--out", str(out)])

    assert run(["bn", "frn"], seeds=3) == 0
    val = [c for c in fake_training.calls if c[5] == "val"]
    assert sorted(val) == sorted(
        (norm, 4, lr, 50, 0, "val", 0.1)
        for norm in ("bn", "frn") for lr in (0.1, 0.2, 0.4))
    chosen = {"bn": 0.2, "frn": 0.4}  # frn's NaN run counts as the worst
    test = [c for c in fake_training.calls if c[5] == "test"]
    assert sorted(test) == sorted(
        (norm, b, chosen[norm], 50, seed, "test", 0.1)
        for norm in ("bn", "frn") for b in (2, 8) for seed in range(3))
    table = (tmp_path / "study.md").read_text()
    for norm in ("bn", "frn"):
        assert _table_row(norm, chosen[norm], [2, 8], 3) in table
    assert (tmp_path / "study.png").stat().st_size > 0

    # Reruns into the same CSV train nothing, and report only the runs
    # asked for: fewer seeds, or a subset of the norms.
    fake_training.calls.clear()
    assert run(["bn", "frn"], seeds=2) == 0
    table = (tmp_path / "study.md").read_text()
    assert _table_row("frn", 0.4, [2, 8], 2) in table
    assert run(["bn"], seeds=3) == 0
    table = (tmp_path / "study.md").read_text()
    assert _table_row("bn", 0.2, [2, 8], 3) in table and "| frn |" not in table
    assert fake_training.calls == []
    # Another budget or warm-up trains anew, and its table holds only its
    # own runs (mixed in, each accuracy would count twice).
    for budget in ({"steps": 60}, {"warmup_fraction": 0.2}):
        assert run(["bn"], seeds=3, **budget) == 0
        table = (tmp_path / "study.md").read_text()
        assert _table_row("bn", 0.2, [2, 8], 3) in table
    assert len(fake_training.calls) == 2 * (3 + 2 * 3)


def test_without_matplotlib_the_study_still_writes_its_table(
        fake_training, monkeypatch, tmp_path, capsys):
    # Plotting comes last; a missing matplotlib must not lose the results.
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert study.main(["--quick", "--norms", "gn", "--batch-sizes", "2",
                       "--lr-grid", "0.1", "--out",
                       str(tmp_path / "s")]) == 0
    assert "| gn | 0.1 |" in (tmp_path / "s.md").read_text()
    assert (tmp_path / "s.csv").exists()
    assert not (tmp_path / "s.png").exists()
    out = capsys.readouterr().out
    assert "matplotlib is not installed" in out
    assert f"wrote {tmp_path / 's.csv'}, {tmp_path / 's.md'}\n" in out


def test_epochs_protocol_gives_each_batch_size_the_same_epochs(
        fake_training, tmp_path, capsys):
    assert study.main(["--quick", "--norms", "gn", "--batch-sizes", "2", "32",
                       "--epochs", "2", "--warmup-fraction", "0",
                       "--lr-grid", "0.1", "--out",
                       str(tmp_path / "s")]) == 0
    train_size = int(0.6 * 1797)
    assert sorted(fake_training.calls) == [
        ("gn", 2, 0.1, 2 * train_size // 2, 0, "test", 0.0),
        ("gn", 32, 0.1, 2 * train_size // 32, 0, "test", 0.0)]
    # One rate in the grid: no validation runs, and the progress says so.
    assert "[2/2] gn" in capsys.readouterr().out


def test_full_study_runs_every_norm_and_the_activation_ablation(
        fake_training, monkeypatch, tmp_path, capsys):
    # The CIFAR subset is replaced by digits: only the protocol is checked.
    monkeypatch.setattr(study, "load_cifar_subset",
                        lambda *args: study.load_digits_splits())
    tar = tmp_path / "cifar.tar.gz"
    tar.write_bytes(b"")
    assert study.main(["--cifar-tar", str(tar),
                       "--out", str(tmp_path / "s")]) == 0
    # README: 198 runs (9 norms x 4 rates on validation, then 9 norms x 6
    # batch sizes x 3 seeds on test), 800 steps each.
    assert len(fake_training.calls) == 198
    assert "[198/198] frn_atlu" in capsys.readouterr().out
    assert {c[0] for c in fake_training.calls} == set(NORMS)
    assert {c[3] for c in fake_training.calls} == {800}
    assert {c[2] for c in fake_training.calls if c[5] == "val"} == {
        0.05, 0.1, 0.2, 0.4}
    assert {c[1] for c in fake_training.calls if c[5] == "val"} == {8}
    assert {c[1] for c in fake_training.calls if c[5] == "test"} == {
        2, 4, 8, 16, 32, 64}
    text = (tmp_path / "s.md").read_text()
    main_table, ablation = text.split("### Activation after FRN")
    batch_sizes = [2, 4, 8, 16, 32, 64]
    # Validation ties (every other norm scores 0.5 at each rate) go to the
    # first rate of the grid.
    chosen = dict.fromkeys(NORMS, 0.05) | {"bn": 0.2, "frn": 0.4}
    for norm in NORMS[:7]:
        assert _table_row(norm, chosen[norm], batch_sizes, 3) in main_table
    for norm in ["frn_relu", "frn_prelu", "frn", "frn_atlu"]:
        assert _table_row(norm, chosen[norm], batch_sizes, 3) in ablation
    assert "frn_prelu" not in main_table
    assert (tmp_path / "s_activations.png").stat().st_size > 0
