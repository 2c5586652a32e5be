"""Forward and forward + backward time of FRN + TLU against BN, GN and LN
(each + ReLU), at the activation shapes of ResNet-50 and a CIFAR ResNet.

Every configuration runs in one process, interleaved (round r times each
configuration once before round r + 1), after a warm-up; the table gives the
median of the repeats, the spread (interquartile range / median), the ratio
to BN + ReLU and to GN + ReLU, and the time over the memory floor: the bytes
the pass must move (forward: read x, write y; forward + backward: read x,
write y, read x and dy, write dx) divided by the machine's copy bandwidth,
measured here by the same harness on a 256 MiB tensor. All pairs run in
training mode (BN with batch statistics).

    python benchmarks/layers.py                    # CPU defaults, ~10 minutes
    python benchmarks/layers.py --quick            # a smoke run
    python benchmarks/layers.py --batch 32 --precision float32 mixed_bfloat16

Writes `<out>.csv` and `<out>.png` (default benchmarks/results/layers_<device>).
"""

import argparse
import inspect
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from frn_keras import FilterResponseNormalizationTLU  # noqa: E402
from frn_keras.models import norm_act  # noqa: E402
from cli_checks import require_at_least  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import pyplot  # noqa: E402
from results_files import write_csv  # noqa: E402

# (name, (H, W, C)) per activation; the batch size is a flag.
SHAPES = {
    "cifar": [("cifar_stage1", (32, 32, 16)), ("cifar_stage2", (16, 16, 32)),
              ("cifar_stage3", (8, 8, 64)), ("issue5", (32, 32, 64))],
    "resnet50": [("rn50_stage1", (56, 56, 256)), ("rn50_stage2", (28, 28, 512)),
                 ("rn50_stage3", (14, 14, 1024)), ("rn50_stage4", (7, 7, 2048))],
}


def registered(name):
    """The pair exactly as the model zoo builds it (frn_keras.models)."""
    pair = norm_act(name)
    return lambda axis: [pair.norm(axis), pair.act(axis)]


# name -> `make_layers(axis)`, the layers applied in order.
PAIRS = {
    "frn_tlu": registered("frn"),
    "frn_tlu_fused": lambda axis: [FilterResponseNormalizationTLU(axis=axis)],
    "bn_relu": registered("bn"),
    "gn_relu": registered("gn"),
    "ln_relu": registered("ln"),
}


def make_step(make_layers, x, dy, backward, jit_compile, inner, mask=None):
    """A function running `inner` passes in one compiled loop, as layers run
    inside one XLA computation in a training step (no per-call dispatch).
    A `mask` goes to every layer whose `call` takes one, as an argument of
    the compiled function (as in a model: XLA cannot fold it away)."""
    layers = make_layers(-1)
    for layer in layers:
        layer.build(x.shape)
    weights = [w for layer in layers for w in layer.trainable_weights]

    def one_pass(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x
            for layer in layers:
                y = layer(y, training=True, **mask_argument(layer, mask))
        if not backward:
            return y
        grads = tape.gradient(y, [x] + [w.value for w in weights],
                              output_gradients=dy)
        weight_sums = sum(tf.reduce_sum(g) for g in grads[1:])
        return grads[0] + tf.cast(weight_sums, grads[0].dtype)

    def loop(x, mask):
        # Each pass feeds the next, so none can be skipped or hoisted.
        for _ in tf.range(inner):
            x = x + 1e-3 * one_pass(x, mask)
        return x

    step = tf.function(loop, jit_compile=jit_compile)
    return lambda: step(x, mask)


def mask_argument(layer, mask):
    """`{"mask": mask}` for a layer whose `call` takes a mask, else `{}`."""
    if mask is None or "mask" not in inspect.signature(layer.call).parameters:
        return {}
    return {"mask": mask}


def copy_bandwidth(repeats, jit_compile, inner):
    """Bytes per second of `y = x * c` (read + write) on a 256 MiB tensor
    (larger than the caches)."""
    x = tf.random.normal((64 * 1024 * 1024,))
    c = tf.constant(0.999)  # an argument, so XLA cannot fold the loop

    def loop(x, c):
        for _ in tf.range(inner):
            x = x * c
        return x

    step = tf.function(loop, jit_compile=jit_compile)
    times = measure({"copy": lambda: step(x, c)}, repeats)["copy"]
    return 2 * x.shape[0] * 4 * inner / statistics.median(times)


def device_sync():
    """What to call after a timed call before stopping the clock: a GPU call
    returns once its kernels are queued, so the GPU must be synced first.
    CPU calls return finished: nothing to call (CPU timings stay comparable
    with earlier runs)."""
    if tf.config.list_physical_devices("GPU"):
        return tf.test.experimental.sync_devices
    return lambda: None


def measure(steps, repeats, warmup=3):
    sync = device_sync()  # decided once, outside the timed calls
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():  # interleaved
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def spread(values):
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / statistics.median(values)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["cifar", "resnet50"],
                        choices=list(SHAPES))
    parser.add_argument("--precision", nargs="+", default=["float32"],
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    args = parse_harness_arguments(parser, argv, repeats=15)
    shapes = [s for group in args.shapes for s in SHAPES[group]]
    if args.quick:
        shapes, args.repeats, args.xla = shapes[:1], 3, args.xla[:1]
    device = device_kind()
    out = output_prefix(args.out, f"layers_{device}")

    rows = []
    progress = Progress(len(args.xla) * len(args.precision) * len(shapes))
    for xla in args.xla:
        jit = xla == "on"
        bandwidth = copy_bandwidth(args.repeats, jit, args.inner)
        print(f"copy bandwidth (XLA {xla}): {bandwidth / 1e9:.1f} GB/s")
        for precision in args.precision:
            keras.config.set_dtype_policy(precision)
            dtype = keras.config.dtype_policy().compute_dtype
            for shape_name, hwc in shapes:
                shape = (args.batch, *hwc)
                progress(f"XLA {xla}, {precision}, "
                         f"{'x'.join(map(str, shape))}: {2 * len(PAIRS)} "
                         f"steps x {args.repeats} repeats")
                x = tf.cast(tf.random.normal(shape), dtype)
                dy = tf.cast(tf.random.normal(shape), dtype)
                steps = {(pair, backward): make_step(PAIRS[pair], x, dy,
                                                     backward, jit, args.inner)
                         for pair in PAIRS for backward in (False, True)}
                times = measure(steps, args.repeats)
                nbytes = int(np.prod(shape)) * x.dtype.size
                for (pair, backward), values in times.items():
                    values = [v / args.inner for v in values]
                    median = statistics.median(values)
                    floor = (5 if backward else 2) * nbytes / bandwidth
                    rows.append({
                        "device": device, "xla": xla, "precision": precision,
                        "shape": shape_name, "batch_shape": "x".join(map(str, shape)),
                        "pass": "fwd+bwd" if backward else "fwd", "pair": pair,
                        "median_ms": median * 1e3,
                        "spread": spread(values),
                        "over_floor": median / floor,
                    })
            keras.config.set_dtype_policy("float32")
    for row in rows:
        base = {r["pair"]: r["median_ms"] for r in rows if all(
            r[k] == row[k] for k in ("xla", "precision", "shape", "pass"))}
        row["vs_bn"] = row["median_ms"] / base["bn_relu"]
        row["vs_gn"] = row["median_ms"] / base["gn_relu"]

    write_csv(out, rows)
    print_table(rows)
    written = [f"{out}.csv"]
    if plot(rows, out + ".png"):
        written.append(f"{out}.png")
    print(f"\nmachine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, Keras "
          f"{keras.__version__}; wrote {' and '.join(written)}")


def parse_harness_arguments(parser, argv, repeats):
    """Adds the timing harness' flags to `parser` (shared with masked.py),
    parses `argv` and checks them."""
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--inner", type=int, default=10,
                        help="passes per timed call (one compiled loop)")
    parser.add_argument("--xla", nargs="+", default=["on", "off"],
                        choices=["on", "off"])
    parser.add_argument("--quick", action="store_true",
                        help="one shape, 3 repeats: checks the script runs")
    parser.add_argument("--out", default=None,
                        help="output path without extension")
    args = parser.parse_args(argv)
    require_at_least(parser, {"--batch": (args.batch, 1),
                              "--inner": (args.inner, 1),
                              "--repeats": (args.repeats, 3)})
    return args


def print_table(rows):
    print("\n| XLA | precision | shape | pass | pair | median ms | spread "
          "| vs BN+ReLU | vs GN+ReLU | x floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['xla']} | {r['precision']} | {r['batch_shape']} | "
              f"{r['pass']} | {r['pair']} | {r['median_ms']:.3f} | "
              f"{r['spread']:.0%} | {r['vs_bn']:.2f} | {r['vs_gn']:.2f} | "
              f"{r['over_floor']:.1f} |")


def plot(rows, path):
    """Plots each time over BN + ReLU's to `path`, one panel per XLA setting,
    precision and pass; returns False, drawing nothing, without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    panels = sorted({(r["xla"], r["precision"], r["pass"]) for r in rows})
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 4 * nrows),
                             squeeze=False)
    for ax, (xla, precision, kind) in zip(axes.flat, panels):
        selected = [r for r in rows if (r["xla"], r["precision"], r["pass"])
                    == (xla, precision, kind)]
        shapes = list(dict.fromkeys(r["shape"] for r in selected))
        for pair in PAIRS:
            ax.plot(shapes, [next(r["vs_bn"] for r in selected if
                                  r["shape"] == s and r["pair"] == pair)
                             for s in shapes], marker="o", label=pair)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_title(f"{kind}, XLA {xla}, {precision}")
        ax.set_ylabel("time / BN+ReLU time")
        ax.tick_params(axis="x", rotation=45)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


if __name__ == "__main__":
    main()
