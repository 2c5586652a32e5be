"""Served FRN with and without the wide view, side by side.

Outside XLA, FRN and TLU compute their per-channel broadcasts on a
channels-last `x` viewed as `(batch, positions / k, k * channels)` when the
channels are few, where TensorFlow's CPU kernels broadcast faster
(`frn_keras/layers/_wide_broadcast.py`, `benchmarks/graph_ops.py`). This
script exports each FRN model twice with `frn_keras.export`:

- "wide": as the layers trace by default (inputs of up to
  `_wide_broadcast.MAX_CHANNELS` channels widened), or with that limit set
  to `--max-channels`;
- "narrow": with the view turned off (`MAX_CHANNELS` = 0, so k = 1), the
  graph before the view.

It checks that both exports predict the same and counts their `Tile` ops
(the view's tiled per-channel tensors; the narrow export has none). Then it
times their `serving_default` signatures interleaved, after a warm-up. The
result is the median of the per-call ratios wide / narrow (the two calls of
one repeat ran back to back), with its 95% interval (`median_interval.py`;
needs >= 6 repeats).

    python benchmarks/wide_view.py                  # ResNet-20, batch 1, 32
    python benchmarks/wide_view.py --model resnet_v2_50 --image-size 224 \
        --max-channels 1023           # what the default limit leaves out

Writes `<out>.csv` (default benchmarks/results/wide_view_<device>_<model>).
"""

import argparse
import os
import pathlib
import statistics
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

from frn_keras.export import export_for_serving  # noqa: E402
from frn_keras.layers import _wide_broadcast  # noqa: E402
from frn_keras.serving_requests import INPUT_NAME  # noqa: E402
from frn_keras.serving_requests import SIGNATURE_NAME  # noqa: E402
from cli_checks import require_at_least  # noqa: E402
from inference import randomize  # noqa: E402
from inference import time_signatures  # noqa: E402
from median_interval import interval_text  # noqa: E402
from median_interval import paired_ratios  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402
from zoo import BUILDERS  # noqa: E402
from zoo import build_model  # noqa: E402

NORMS = ("frn", "frn_fused")


def export(model, base, name, max_channels):
    """`export_for_serving`, traced with the wide view applied to inputs of
    up to `max_channels` channels (0: turned off)."""
    default = _wide_broadcast.MAX_CHANNELS
    _wide_broadcast.MAX_CHANNELS = max_channels
    try:
        return export_for_serving(model, base, name, verbose=False)
    finally:
        _wide_broadcast.MAX_CHANNELS = default


def count_ops(version_dir, op_type):
    """How many `op_type` nodes a SavedModel's graph and functions hold."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(
        pathlib.Path(version_dir, "saved_model.pb").read_bytes())
    graph = saved_model.meta_graphs[0].graph_def
    nodes = list(graph.node) + [
        node for f in graph.library.function for node in f.node_def]
    return sum(node.op == op_type for node in nodes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", choices=list(BUILDERS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=101)
    parser.add_argument("--max-channels", type=int,
                        default=_wide_broadcast.MAX_CHANNELS,
                        help="widen inputs of up to this many channels")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    require_at_least(parser, {"--repeats": (args.repeats, 3),
                              "--batches": (args.batches, 1),
                              "--image-size": (args.image_size, 32)})
    device = device_kind()
    out = output_prefix(args.out, f"wide_view_{device}_{args.model}")
    rng = np.random.default_rng(1)

    signatures, tiles = {}, {}
    progress = Progress(len(NORMS) + len(args.batches))
    with tempfile.TemporaryDirectory() as base:
        for norm in NORMS:
            progress(f"exporting {norm}, with and without the wide view")
            model = build_model(args.model, norm, args.image_size)
            randomize(model, seed=0)
            for view in ("wide", "narrow"):
                name = f"{norm}_{view}"
                path = export(model, base, name, args.max_channels
                              if view == "wide" else 0)
                tiles[name] = count_ops(path, "Tile")
                signatures[name] = tf.saved_model.load(path).signatures[
                    SIGNATURE_NAME]
        check = {INPUT_NAME: tf.constant(rng.integers(
            0, 256, (4, args.image_size, args.image_size, 3)), tf.uint8)}
        for norm in NORMS:
            np.testing.assert_allclose(
                signatures[f"{norm}_wide"](**check)["probabilities"],
                signatures[f"{norm}_narrow"](**check)["probabilities"],
                rtol=1e-5, atol=1e-7)
        rows = []
        for batch in args.batches:
            progress(f"batch {batch}: {len(signatures)} exports x "
                     f"{args.repeats} calls")
            times = time_signatures(signatures, batch, args.image_size,
                                    args.repeats, rng)
            for norm in NORMS:
                wide, narrow = times[f"{norm}_wide"], times[f"{norm}_narrow"]
                ratios, ratio, low, high = paired_ratios(wide, narrow)
                rows.append({
                    "device": device, "model": args.model,
                    "image_size": args.image_size, "batch": batch,
                    "norm": norm, "max_channels": args.max_channels,
                    "tile_ops_wide": tiles[f"{norm}_wide"],
                    "tile_ops_narrow": tiles[f"{norm}_narrow"],
                    "wide_ms": statistics.median(wide) * 1e3,
                    "narrow_ms": statistics.median(narrow) * 1e3,
                    "wide_vs_narrow": ratio,
                    "ci95_low": low, "ci95_high": high,
                    "ratios": " ".join(f"{r:.4f}" for r in ratios)})
    write_csv(out, rows)
    print("\n| model | batch | norm | wide ms | narrow ms | wide / narrow "
          "| 95% CI |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        interval = interval_text(r["ci95_low"], r["ci95_high"])
        print(f"| {r['model']} {r['image_size']}px | {r['batch']} | "
              f"{r['norm']} | {r['wide_ms']:.2f} | {r['narrow_ms']:.2f} | "
              f"{r['wide_vs_narrow']:.3f} | {interval} |")
    print(f"\nTF {tf.__version__}, {os.cpu_count()} cores; wrote {out}.csv")


if __name__ == "__main__":
    main()
