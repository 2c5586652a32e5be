"""Batch-size study: held-out accuracy vs per-step batch size, per norm.

The FRN paper's claim: BatchNorm degrades at small batches, GroupNorm /
LayerNorm lag at large ones, FRN + TLU is good at all of them; and after
FRN, TLU beats ReLU, PReLU and Affine-TLU. This trains one small ConvNet
(conv 16 -> 32/2 -> 32 -> 64/2, norm + activation after each, global pool,
dense) on real images for every (norm, batch size, seed):

- data: a fixed subset of the CIFAR-10 JPEG copy in ../shared/data
  (`--train-per-class` images per class for training, the next
  `--val-per-class` for choosing the learning rate, and
  `--test-per-class` per class of the test set for the reported accuracy);
  `--quick`: the scikit-learn digits (8x8), for smoke runs.
- protocol: the same number of optimizer steps (`--steps`) for every batch
  size; SGD with momentum 0.9 and decoupled weight decay 5e-4 (not on norm
  parameters); linear warm-up over the first 10% of the steps, then cosine
  decay; peak learning rate `base_lr * batch / 32`, with `base_lr` chosen
  per norm on the validation split at batch `--lr-batch` from
  `--lr-grid`; BatchNorm evaluated with its moving statistics
  (`model.evaluate`, inference mode), as users would; XLA.
- norms: bn, gn, ln, frn (FRN + TLU), frn_relu, gn_pn, ln_pn (Proxy
  Normalization: opt-in, patented, see the README) and, for the activation
  ablation after FRN, frn_prelu and frn_atlu (Affine-TLU). `--norms`
  takes any registered name, e.g. `--norms bn in` (InstanceNorm).

    python benchmarks/batch_size_study.py          # CIFAR-10 subset (33 min, 2 cores)
    python benchmarks/batch_size_study.py --quick  # digits, a smoke run

Rows are appended to `<out>.csv` as runs finish (a rerun skips those done);
at the end `<out>.md` (mean +- std table) and `<out>.png` /
`<out>_activations.png` (accuracy vs batch size) are written.
"""

import argparse
import csv
import gc
import math
import os
import statistics
import sys
import tarfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import frn_keras  # noqa: E402
from frn_keras.models import NO_WEIGHT_DECAY  # noqa: E402
from frn_keras.models import norm_act  # noqa: E402
from frn_keras.models import register_norm_act  # noqa: E402
from cli_checks import require_at_least  # noqa: E402
from results_files import pyplot  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_TAR = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar.gz")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog",
                 "frog", "horse", "ship", "truck"]
NORMS = ["bn", "gn", "ln", "frn", "frn_relu", "gn_pn", "ln_pn"]
ACTIVATION_ABLATION = {"frn_relu": "ReLU", "frn_prelu": "PReLU",
                       "frn": "TLU", "frn_atlu": "Affine-TLU"}
FIELDS = ["norm", "batch_size", "seed", "base_lr", "steps", "warmup",
          "split", "accuracy", "seconds"]


def _register_ablation_norms():
    """FRN followed by each activation of the paper's ablation."""
    frn = lambda axis: frn_keras.FilterResponseNormalization(axis=axis)  # noqa: E731
    extra = {
        "frn_relu": lambda axis: keras.layers.ReLU(),
        "frn_prelu": lambda axis: keras.layers.PReLU(shared_axes=[1, 2]),
        "frn_atlu": lambda axis: frn_keras.TLU(axis=axis, affine=True),
    }
    for name, act in extra.items():
        register_norm_act(name, norm=frn, act=act, overwrite=True)


def load_cifar_subset(tar_path, train_per_class, val_per_class,
                      test_per_class):
    """The first images of each class, decoded from the JPEG copy:
    `{"train": (x, y), "val": (x, y), "test": (x, y)}`, x uint8 NHWC."""
    wanted = {}
    for label, name in enumerate(CIFAR_CLASSES):
        for i in range(train_per_class + val_per_class):
            split = "train" if i < train_per_class else "val"
            wanted[f"train/{name}/{i:04d}.jpg"] = (split, label)
        for i in range(test_per_class):
            wanted[f"test/{name}/{i:04d}.jpg"] = ("test", label)
    images = {"train": [], "val": [], "test": []}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key = member.name.lstrip("./")
            if key in wanted:
                split, label = wanted[key]
                data = tar.extractfile(member).read()
                images[split].append((key, label, data))
    if sum(len(v) for v in images.values()) != len(wanted):
        raise SystemExit(f"{tar_path}: expected {len(wanted)} images, found "
                         f"{sum(len(v) for v in images.values())}")
    out = {}
    for split, items in images.items():
        items.sort()
        x = np.stack([tf.io.decode_jpeg(d, channels=3).numpy()
                      for _, _, d in items])
        out[split] = (x, np.array([label for _, label, _ in items], "int32"))
    return out


def load_digits_splits():
    """scikit-learn's digits as uint8 RGB 8x8 images (as the main job
    reads them), 60/20/20 split."""
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from train_digits import load_digits_images

    x, y = load_digits_images()
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]),
            "test": (x[b:], y[b:])}


def build_convnet(norm, input_shape, num_classes, mean, std):
    layers = norm_act(norm)
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Normalization(mean=mean, variance=np.square(std))(x)
    for filters, strides in [(16, 1), (32, 2), (32, 1), (64, 2)]:
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same",
                                use_bias=False,
                                kernel_initializer="he_normal")(x)
        x = layers.act(-1)(layers.norm(-1)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def make_optimizer(base_lr, batch_size, steps, warmup_fraction):
    """SGD with momentum 0.9 and decoupled weight decay 5e-4 (not on norm
    parameters); peak learning rate `base_lr * batch_size / 32`, reached by
    a linear warm-up over `warmup_fraction` of the `steps`, then cosine
    decay to 0."""
    peak = base_lr * batch_size / 32
    warmup = int(warmup_fraction * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak, decay_steps=steps - warmup,
        warmup_target=peak if warmup else None, warmup_steps=warmup)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9,
                                     weight_decay=5e-4)
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer


def training_batches(x, y, batch_size, seed):
    """Endless batches of `(x, y)`, all of `batch_size` examples: each epoch
    is a fresh shuffle (the orders set by `seed`), and batches run on across
    the epochs' boundaries."""
    return (tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed).repeat()
            .batch(batch_size, drop_remainder=True).prefetch(4))


def train_and_evaluate(data, norm, batch_size, base_lr, steps, seed, split,
                       warmup_fraction=0.1):
    """Trains from scratch; returns the accuracy on `split`."""
    keras.utils.set_random_seed(seed)
    x, y = data["train"]
    mean = x.reshape(-1, 3).mean(0) / 255.0
    std = x.reshape(-1, 3).std(0) / 255.0
    model = build_convnet(norm, x.shape[1:], int(y.max()) + 1, mean, std)
    optimizer = make_optimizer(base_lr, batch_size, steps, warmup_fraction)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], jit_compile=True,
        # Small batches are dispatch-bound: run 10 steps per call.
        steps_per_execution=10)
    train = training_batches(x, y, batch_size, seed)
    model.fit(train, epochs=1, steps_per_epoch=steps, shuffle=False,
              verbose=0)
    x_eval, y_eval = data[split]
    _, accuracy = model.evaluate(x_eval, y_eval, batch_size=500, verbose=0)
    # Free the model and its compiled XLA code: after ~200 runs in one
    # process, LLVM otherwise fails to allocate memory for new code.
    del model, optimizer, train
    keras.backend.clear_session(free_memory=True)
    gc.collect()
    return accuracy


def _read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _key(norm, batch_size, seed, base_lr, steps, warmup, split):
    return (norm, str(batch_size), str(seed), f"{base_lr:g}", str(steps),
            f"{warmup:g}", split)


class Runner:
    """Runs configurations, appending each result to the CSV at once, and
    skipping those already there (an interrupted study resumes)."""

    def __init__(self, data, csv_path, total_runs, warmup_fraction):
        self.data = data
        self.warmup_fraction = warmup_fraction
        self.csv_path = csv_path
        self.done = {tuple(r[k] for k in FIELDS[:7]): float(r["accuracy"])
                     for r in _read_rows(csv_path)}
        self.total = total_runs
        self.count = 0
        self.start = time.perf_counter()

    def __call__(self, norm, batch_size, seed, base_lr, steps, split):
        key = _key(norm, batch_size, seed, base_lr, steps,
                   self.warmup_fraction, split)
        self.count += 1
        if key in self.done:
            return self.done[key]
        t0 = time.perf_counter()
        accuracy = train_and_evaluate(self.data, norm, batch_size, base_lr,
                                      steps, seed, split,
                                      self.warmup_fraction)
        seconds = time.perf_counter() - t0
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(FIELDS)
            writer.writerow([*key, f"{accuracy:.4f}", f"{seconds:.1f}"])
        self.done[key] = accuracy
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.count * (self.total - self.count)
        print(f"[{self.count}/{self.total}] {norm:9s} batch {batch_size:3d} "
              f"seed {seed} lr {base_lr:g} {split}: {accuracy:.4f} "
              f"({seconds:.1f} s, ~{eta / 60:.0f} min left)", flush=True)
        return accuracy


def summarize(rows, norms, batch_sizes):
    """`{norm: {batch: (mean, std, n)}}` of the accuracies in `rows` (the
    test runs to report), over seeds."""
    table = {}
    for norm in norms:
        table[norm] = {}
        for b in batch_sizes:
            values = [float(r["accuracy"]) for r in rows
                      if r["norm"] == norm and int(r["batch_size"]) == b]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                table[norm][b] = (statistics.mean(values), std, len(values))
    return table


def markdown_table(table, batch_sizes, learning_rates, title):
    lines = [f"### {title}", "",
             "| norm | base lr | " + " | ".join(
                 f"batch {b}" for b in batch_sizes) + " |",
             "| --- | --- | " + " | ".join("---" for _ in batch_sizes) + " |"]
    for norm, cells in table.items():
        row = [f"{cells[b][0]:.3f} ± {cells[b][1]:.3f}" if b in cells
               else "" for b in batch_sizes]
        lines.append(f"| {norm} | {learning_rates.get(norm, ''):g} | "
                     + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(table, batch_sizes, path, title, labels=None):
    """Plots accuracy (mean +- std) against batch size to `path`; returns
    False, drawing nothing, without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for norm, cells in table.items():
        bs = [b for b in batch_sizes if b in cells]
        means = np.array([cells[b][0] for b in bs])
        stds = np.array([cells[b][1] for b in bs])
        line, = ax.plot(bs, means, marker="o",
                        label=(labels or {}).get(norm, norm))
        ax.fill_between(bs, means - stds, means + stds, alpha=0.15,
                        color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.set_xlabel("per-step batch size")
    ax.set_ylabel("held-out accuracy (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="digits, few steps and configurations")
    parser.add_argument("--norms", nargs="+", default=None)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps, the same at every batch size")
    parser.add_argument("--epochs", type=float, default=None,
                        help="instead of --steps: the same epochs at every "
                        "batch size (the naive protocol)")
    parser.add_argument("--warmup-fraction", type=float, default=0.1,
                        help="linear warm-up over this fraction of the steps")
    parser.add_argument("--lr-grid", nargs="+", type=float, default=None)
    parser.add_argument("--lr-batch", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--val-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=300)
    parser.add_argument("--cifar-tar", default=CIFAR_TAR)
    parser.add_argument("--out", default=None,
                        help="output path without extension")
    args = parser.parse_args(argv)
    quick = args.quick
    norms = args.norms or (["bn", "gn", "frn"] if quick else NORMS)
    ablation = [] if (quick or args.norms) else ["frn_prelu", "frn_atlu"]
    batch_sizes = args.batch_sizes or ([2, 32] if quick
                                       else [2, 4, 8, 16, 32, 64])
    seeds = args.seeds or (1 if quick else 3)
    steps = args.steps or (20 if quick else 800)
    lr_grid = args.lr_grid or ([0.1] if quick else [0.05, 0.1, 0.2, 0.4])
    out = args.out or os.path.join(
        ROOT, "benchmarks", "results",
        "batch_size_study_digits" if quick else "batch_size_study_cifar10")
    require_at_least(parser, {"--seeds": (seeds, 1), "--steps": (steps, 1),
                              "--lr-batch": (args.lr_batch, 1),
                              "--batch-sizes": (batch_sizes, 1)})
    if not 0 <= args.warmup_fraction < 1:
        parser.error("--warmup-fraction must be in [0, 1), got "
                     f"{args.warmup_fraction}")
    if args.epochs is not None and not args.epochs > 0:
        parser.error(f"--epochs must be > 0, got {args.epochs}")
    for lr in lr_grid:
        if not lr > 0:
            parser.error(f"--lr-grid must be > 0, got {lr}")
    _register_ablation_norms()
    for norm in norms:
        norm_act(norm)  # unknown names fail before any training

    if quick:
        data = load_digits_splits()
    else:
        if not os.path.exists(args.cifar_tar):
            parser.error(f"CIFAR-10 JPEG copy not found: {args.cifar_tar} "
                         "(or use --quick)")
        print("decoding the CIFAR-10 subset ...", flush=True)
        data = load_cifar_subset(args.cifar_tar, args.train_per_class,
                                 args.val_per_class, args.test_per_class)
    print({k: v[0].shape for k, v in data.items()}, flush=True)

    train_size = len(data["train"][1])

    def steps_for(batch_size):
        if args.epochs:
            return max(1, int(args.epochs * train_size) // batch_size)
        return steps

    all_norms = norms + ablation
    total = (len(all_norms) * len(lr_grid) * (len(lr_grid) > 1)
             + len(all_norms) * len(batch_sizes) * seeds)
    run = Runner(data, out + ".csv", total, args.warmup_fraction)

    # 1. The learning rate per norm, on the validation split.
    learning_rates = {}
    for norm in all_norms:
        if len(lr_grid) == 1:
            learning_rates[norm] = lr_grid[0]
            continue
        scores = {lr: run(norm, args.lr_batch, 0, lr,
                          steps_for(args.lr_batch), "val")
                  for lr in lr_grid}
        learning_rates[norm] = max(lr_grid, key=lambda lr: (
            -1.0 if math.isnan(scores[lr]) else scores[lr]))
    print("base learning rate per norm:", learning_rates, flush=True)

    # 2. Every batch size and seed, on the test split.
    for seed in range(seeds):
        for batch_size in batch_sizes:
            for norm in all_norms:
                run(norm, batch_size, seed, learning_rates[norm],
                    steps_for(batch_size), "test")

    rows = [r for r in _read_rows(out + ".csv")
            if r["split"] == "test"
            and int(r["steps"]) == steps_for(int(r["batch_size"]))
            and float(r["warmup"]) == args.warmup_fraction
            and int(r["seed"]) < seeds
            and float(r["base_lr"]) == learning_rates.get(r["norm"])]
    dataset = "digits" if quick else (
        f"CIFAR-10 (JPEG copy), {args.train_per_class * 10} training images")
    budget = (f"{args.epochs:g} epochs at every batch size" if args.epochs
              else f"{steps} steps at every batch size")
    header = (f"{dataset}; {budget}, warm-up {args.warmup_fraction:g} of "
              f"the steps, {seeds} seed(s), base lr chosen per norm on "
              f"validation at batch {args.lr_batch} from {lr_grid}.\n\n")
    table = summarize(rows, norms, batch_sizes)
    text = header + markdown_table(table, batch_sizes, learning_rates,
                                   "Held-out accuracy by norm")
    plots = [(table, out + ".png",
              f"Accuracy vs batch size ({dataset.split(',')[0]})", None)]
    if ablation:
        names = [n for n in ACTIVATION_ABLATION if n in all_norms]
        activations = summarize(rows, names, batch_sizes)
        text += "\n" + markdown_table(
            activations, batch_sizes, learning_rates,
            "Activation after FRN (frn = TLU, frn_atlu = Affine-TLU)")
        plots.append((activations, out + "_activations.png",
                      "Activation after FRN", ACTIVATION_ABLATION))
    # The table first: it holds the results whether or not a plot is drawn.
    with open(out + ".md", "w") as f:
        f.write(text)
    print(text)
    written = [out + ".csv", out + ".md"]
    for cells, path, title, labels in plots:
        if plot(cells, batch_sizes, path, title, labels=labels):
            written.append(path)
    print(f"wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
