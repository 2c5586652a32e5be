"""Cost of the TensorFlow graph-runtime kernels that a served FRN + TLU runs,
against a same-shape elementwise op, at the ResNet-20 activation shapes.

A SavedModel served without XLA runs each op as its own kernel, one pass
over memory each. FRN's inference needs a reduction over the spatial axes
(the squared Euclidean norm, which TF computes in one pass over x, where
`sum(x^2)` writes the square first) and then a per-sample, per-channel
scale, an offset and the TLU maximum, which broadcast a small tensor against
the activation; folded BatchNorm needs nothing. This script times each
kernel inside one `tf.function` (no XLA), `--chain` distinct calls per timed
run so that dispatch is amortized, interleaved, median of `--repeats`;
`x + c` (same shape) is the baseline every other time includes. The "wide
view" rows run the broadcasting ops as the layers run them outside XLA, on
x viewed as `(b, positions / k, k * c)` (column `wide_view_k`; where it is
1 the view does not apply and they run the plain ops).

    python benchmarks/graph_ops.py

Prints a table (microseconds per op) and writes `<out>.csv` (default
benchmarks/results/graph_ops_<device>).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cli_checks import require_at_least  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402

from frn_keras.layers._wide_broadcast import tile_channels  # noqa: E402
from frn_keras.layers._wide_broadcast import widen  # noqa: E402
from frn_keras.layers._wide_broadcast import widening_factor  # noqa: E402

SHAPES = [(32, 32, 32, 16), (32, 16, 16, 32), (32, 8, 8, 64), (1, 32, 32, 16)]


def kernels(shape):
    """name -> f(x) applying one kernel (after the baseline `x + c`)."""
    b, _, _, c = shape
    rng = np.random.default_rng(0)
    per_channel = tf.constant(rng.uniform(0.5, 1.5, c), tf.float32)
    per_sample_channel = tf.constant(rng.uniform(0.5, 1.5, (b, 1, 1, c)),
                                     tf.float32)
    return {
        "baseline x + c": lambda x: x,
        "x * x (same shape)": lambda x: x * x,
        "relu": tf.nn.relu,
        "sum(x^2) over H, W": lambda x: tf.reduce_sum(
            tf.square(x), axis=(1, 2), keepdims=True),
        # What FRN runs outside XLA: one pass over x instead of two.
        "euclidean_norm(x)^2 over H, W": lambda x: tf.square(
            tf.math.reduce_euclidean_norm(x, axis=(1, 2), keepdims=True)),
        "x * scale[b, c]": lambda x: x * per_sample_channel,
        "x + beta[c]": lambda x: x + per_channel,
        "bias_add(x, beta[c])": lambda x: tf.nn.bias_add(x, per_channel),
        "max(x, tau[c])": lambda x: tf.maximum(x, per_channel),
        # What FRN and TLU run outside XLA (frn_keras/layers/
        # _wide_broadcast.py): the same ops on x viewed as
        # (b, positions / k, k * c), the small operand tiled k times.
        "x * scale[b, c], wide view": on_wide_view(tf.multiply,
                                                   per_sample_channel),
        "x + beta[c], wide view": on_wide_view(tf.add, per_channel),
        "max(x, tau[c]), wide view": on_wide_view(tf.maximum, per_channel),
    }


def on_wide_view(op, operand):
    """`op(x, operand)` computed as the layers compute it outside XLA (the
    plain op where the view does not apply)."""
    def kernel(x):
        k = widening_factor(x.shape)
        if k == 1:
            return op(x, operand)
        wide = op(widen(x, k), tile_channels(operand, k))
        return tf.reshape(wide, x.shape)
    return kernel


def timed(kernel, chain):
    """A graph function applying `kernel` to `chain` distinct inputs."""
    @tf.function(jit_compile=False)
    def run(x):
        total = tf.constant(0.0)
        for i in range(chain):
            y = kernel(x + float(i))  # distinct inputs: nothing is shared
            total += tf.reduce_sum(tf.reshape(y, [-1])[:1])
        return total
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chain", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    require_at_least(parser, {"--chain": (args.chain, 1),
                              "--repeats": (args.repeats, 3)})
    device = device_kind()
    out = output_prefix(args.out, f"graph_ops_{device}")
    rows = []
    progress = Progress(len(SHAPES))
    for shape in SHAPES:
        x = tf.random.normal(shape)
        runs = {name: timed(k, args.chain) for name, k in kernels(shape).items()}
        progress(f"{'x'.join(map(str, shape))}: {len(runs)} kernels x "
                 f"{args.repeats} repeats")
        for run in runs.values():
            run(x).numpy()
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():  # interleaved
                start = time.perf_counter()
                run(x).numpy()
                times[name].append((time.perf_counter() - start) / args.chain)
        base = statistics.median(times["baseline x + c"])
        same_shape = statistics.median(times["x * x (same shape)"]) - base
        for name, values in times.items():
            op_us = (statistics.median(values) - base) * 1e6
            rows.append({"device": device, "shape": "x".join(map(str, shape)),
                         "wide_view_k": widening_factor(shape),
                         "kernel": name, "us_per_op": op_us,
                         "vs_same_shape": op_us / (same_shape * 1e6)})
    write_csv(out, rows)
    print("\n| shape | kernel | us per op | vs x * x |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        if r["kernel"] != "baseline x + c":
            print(f"| {r['shape']} | {r['kernel']} | {r['us_per_op']:.1f} | "
                  f"{r['vs_same_shape']:.1f} |")
    print(f"\nTF {tf.__version__}, {os.cpu_count()} cores; wrote {out}.csv")


if __name__ == "__main__":
    main()
