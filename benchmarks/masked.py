"""Forward and forward + backward time of FRN + TLU on padded sequences,
with a mask and without, against BN + ReLU and LN + ReLU.

Inputs are `(batch, steps, channels)`. Sample i is valid for its first
`L_i` steps, `L_i` drawn between `steps / 2` and `steps` (fixed seed). With
the mask, every layer whose `call` takes one gets it: FRN and BN count only
the valid steps in their statistics. LN normalizes each step over its
channels, so it takes no mask and runs once. Every configuration runs in
one process, interleaved, after a warm-up, in one compiled loop of
`--inner` passes (the harness of `layers.py`). The table gives the median
of the repeats, the spread (interquartile range / median), the ratio to BN +
ReLU with the same mask, and the mask's cost: the median of the per-repeat
ratios masked / unmasked of the same pair (the two ran back to back), with
its 95% interval (`median_interval.py`; needs >= 6 repeats).

    python benchmarks/masked.py                    # CPU defaults, ~5 minutes
    python benchmarks/masked.py --quick            # a smoke run

Writes `<out>.csv` (default benchmarks/results/masked_<device>).
"""

import argparse
import os
import platform
import statistics

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from layers import PAIRS  # noqa: E402
from layers import make_step  # noqa: E402
from layers import measure  # noqa: E402
from layers import parse_harness_arguments  # noqa: E402
from layers import spread  # noqa: E402
from median_interval import interval_text  # noqa: E402
from median_interval import paired_ratios  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402

# (name, (steps, channels)): a short sequence with wide features (a
# Transformer's), a long one with narrow features (audio frames), between.
SHAPES = [("seq128x512", (128, 512)), ("seq256x128", (256, 128)),
          ("seq1024x64", (1024, 64))]

# The pairs timed with a mask as well as without (LN takes none).
MASKED_PAIRS = ("frn_tlu", "frn_tlu_fused", "bn_relu")
UNMASKED_PAIRS = ("frn_tlu", "frn_tlu_fused", "bn_relu", "ln_relu")


def padding_mask(batch, steps, seed=0):
    """`(batch, steps)` booleans: sample i is true for its first `L_i`
    steps, `L_i` uniform in `[steps // 2, steps]`."""
    lengths = np.random.default_rng(seed).integers(
        steps // 2, steps + 1, size=batch)
    return np.arange(steps)[None, :] < lengths[:, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = parse_harness_arguments(parser, argv, repeats=21)
    shapes = SHAPES
    if args.quick:
        shapes, args.repeats, args.xla = SHAPES[:1], 3, args.xla[:1]
    device = device_kind()
    out = output_prefix(args.out, f"masked_{device}")
    configs = [(pair, True) for pair in MASKED_PAIRS] + [
        (pair, False) for pair in UNMASKED_PAIRS]

    rows = []
    progress = Progress(len(args.xla) * len(shapes))
    for xla in args.xla:
        jit = xla == "on"
        for shape_name, (steps, channels) in shapes:
            shape = (args.batch, steps, channels)
            progress(f"XLA {xla}, {'x'.join(map(str, shape))}: "
                     f"{2 * len(configs)} steps x {args.repeats} repeats")
            x = tf.random.normal(shape, seed=1)
            dy = tf.random.normal(shape, seed=2)
            mask = tf.constant(padding_mask(args.batch, steps))
            steps_by_config = {
                (pair, masked, backward): make_step(
                    PAIRS[pair], x, dy, backward, jit, args.inner,
                    mask=mask if masked else None)
                for pair, masked in configs for backward in (False, True)}
            times = measure(steps_by_config, args.repeats)
            for (pair, masked, backward), values in times.items():
                values = [v / args.inner for v in values]
                bn = [v / args.inner for v in times["bn_relu", masked,
                                                    backward]]
                row = {
                    "device": device, "xla": xla, "shape": shape_name,
                    "batch_shape": "x".join(map(str, shape)),
                    "valid_fraction": float(np.mean(mask)),
                    "pass": "fwd+bwd" if backward else "fwd", "pair": pair,
                    "mask": "yes" if masked else "no",
                    "median_ms": statistics.median(values) * 1e3,
                    "spread": spread(values),
                    "vs_bn": statistics.median(values) / statistics.median(bn),
                    "mask_cost": None, "mask_cost_ci95_low": None,
                    "mask_cost_ci95_high": None,
                }
                if masked:
                    _, row["mask_cost"], low, high = paired_ratios(
                        times[pair, True, backward],
                        times[pair, False, backward])
                    row["mask_cost_ci95_low"] = low
                    row["mask_cost_ci95_high"] = high
                rows.append(row)

    write_csv(out, rows)
    print_table(rows)
    print(f"\nmachine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, Keras "
          f"{keras.__version__}; wrote {out}.csv")


def print_table(rows):
    print("\n| XLA | shape | pass | pair | mask | median ms | spread "
          "| vs BN+ReLU | mask cost (95% CI) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cost = "" if r["mask_cost"] is None else (
            f"{r['mask_cost']:.2f} ("
            + interval_text(r["mask_cost_ci95_low"], r["mask_cost_ci95_high"])
            + ")")
        print(f"| {r['xla']} | {r['batch_shape']} | {r['pass']} | "
              f"{r['pair']} | {r['mask']} | {r['median_ms']:.3f} | "
              f"{r['spread']:.0%} | {r['vs_bn']:.2f} | {cost} |")


if __name__ == "__main__":
    main()
