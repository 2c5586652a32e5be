"""Serving latency of the FRN ResNet vs the BN ResNet with BN folded.

BatchNorm at inference is a per-channel affine map that folds into the
preceding convolution (`kernel * scale`, `bias = beta - mean * scale`), so a
served BN network pays nothing for it; FRN cannot fold (its statistics depend
on the input); only its offset `beta` folds into the 1x1 convolutions that
read it, which `export_for_serving` does (`frn_keras.fold_frn_offsets`).
This script exports four SavedModels with
`frn_keras.export.export_for_serving` (FRN, FRN with its FRN -> TLU pairs
fused, BN as trained, BN folded into its convolutions, checked equal to the
unfolded model), loads them as a server
would, and times the `serving_default` signature at batch 1 and 32,
interleaved, median of `--repeats` calls after a warm-up. The goal's
ratio, the faster FRN export against the faster folded-BN export, is the
median of the per-call ratios (the two calls of one repeat ran back to back),
with a 95% confidence interval (`median_interval.py`; needs >= 6 repeats),
over all exports and over the plain ones (without XLA, as stock TF Serving
runs them), in `<out>_best.csv`.

With `--xla`, each model is also exported with its forward pass compiled
by XLA (`<name>_xla`: a `jit_compile=True` function in the SavedModel, as
TF Serving runs only with its experimental `--xla_cpu_compilation_enabled`
flag), and the outputs are checked equal to the plain export's.

    python benchmarks/inference.py                 # ResNet-20, CIFAR size
    python benchmarks/inference.py --xla --batches 1 8 32
    python benchmarks/inference.py --model resnet_v2_50 --image-size 224

Writes `<out>.csv` (default benchmarks/results/inference_<device>_<model>).
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from frn_keras._graph import producer  # noqa: E402
from frn_keras.export import _served_model  # noqa: E402
from frn_keras.export import _serving_function  # noqa: E402
from frn_keras.export import export_for_serving  # noqa: E402
from frn_keras.serving_requests import INPUT_NAME  # noqa: E402
from frn_keras.serving_requests import SIGNATURE_NAME  # noqa: E402
from cli_checks import require_at_least  # noqa: E402
from median_interval import interval_text  # noqa: E402
from median_interval import paired_ratios  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402
from zoo import BUILDERS  # noqa: E402
from zoo import build_model  # noqa: E402


def randomize(model, seed):
    """Non-trivial weights and BN statistics, so folding is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, .1, c),
                               rng.normal(0, .1, c), rng.uniform(0.5, 2, c)])


class FoldedAway(keras.layers.Layer):
    """Stands where a folded BatchNormalization was: returns its input (and
    takes BN's call arguments, which the cloned graph passes)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def fold_batch_norm(model):
    """Returns a copy of `model` with each BatchNormalization that directly
    follows a bias-free Conv2D folded into it (the BN becomes `FoldedAway`)."""
    folds = {}  # conv name -> bn layer
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            conv = producer(layer)
            if isinstance(conv, keras.layers.Conv2D) and not conv.use_bias:
                folds[conv.name] = layer
    folded_bns = {bn.name for bn in folds.values()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = True
            return type(layer).from_config(config)
        if layer.name in folded_bns:
            return FoldedAway(name=layer.name)
        return type(layer).from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        target = folded.get_layer(layer.name)
        if layer.name in folds:
            bn = folds[layer.name]
            gamma, beta, mean, var = (w.numpy() for w in (
                bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
            scale = gamma / np.sqrt(var + bn.epsilon)
            (kernel,) = layer.get_weights()
            target.set_weights([kernel * scale, beta - mean * scale])
        elif layer.name not in folded_bns:
            target.set_weights(layer.get_weights())
    return folded


def check_folded(model, folded, images):
    """Asserts that `folded` computes `model`'s logits on `images`, to
    float32 precision at the logits' own scale (deep models with random BN
    statistics give logits in the hundreds)."""
    logits = model.predict(images, verbose=0)
    np.testing.assert_allclose(folded.predict(images, verbose=0), logits,
                               rtol=1e-4, atol=1e-5 * np.abs(logits).max())


def export_xla(model, path, image_size):
    """Saves `model` with `export_for_serving`'s serving function (and its
    FRN offsets folded, as that does), compiled by XLA (which drops that
    function's run-time check of the input shape: XLA compiles `Assert` to
    nothing)."""
    served = _served_model(model, fold_offsets=True)
    forward = tf.function(
        _serving_function(served, True, image_size, image_size),
        jit_compile=True)

    @tf.function(input_signature=[tf.TensorSpec(
        [None, image_size, image_size, 3], tf.uint8, name=INPUT_NAME)])
    def serve(images):
        return forward(images)

    module = tf.Module()
    module.variables_ = list(served.variables)
    module.serve = serve
    tf.saved_model.save(module, path, signatures={SIGNATURE_NAME: serve})
    return path


def comparisons(times, batch):
    """The goal's comparisons at one batch size, each the faster FRN export
    against the faster folded-BN export as the median of their per-repeat
    ratios with its 95% interval: `"best"` over all exports, and `"plain"`
    over the exports without XLA (what stock TF Serving runs)."""
    def fastest(names):
        return min(names, key=lambda n: statistics.median(times[n]))

    rows = []
    for comparison in ("best", "plain"):
        names = [n for n in times
                 if comparison == "best" or not n.endswith("_xla")]
        frn = fastest([n for n in names if n.startswith("frn")])
        bn = fastest([n for n in names if n.startswith("bn_folded")])
        _, ratio, low, high = paired_ratios(times[frn], times[bn])
        rows.append({"batch": batch, "comparison": comparison,
                     "frn_variant": frn, "bn_variant": bn,
                     "ratio": ratio, "ci95_low": low, "ci95_high": high})
    return rows


def time_signatures(signatures, batch, image_size, repeats, rng):
    """{name: seconds of each call} of each serving signature on one random
    uint8 batch: 5 warm-up calls each, then `repeats` rounds that call every
    signature once (interleaved, so a slow spell of the host hits all)."""
    feed = {INPUT_NAME: tf.constant(rng.integers(
        0, 256, (batch, image_size, image_size, 3)), tf.uint8)}
    calls = {name: (lambda s=s: s(**feed)["classes"].numpy())
             for name, s in signatures.items()}
    for call in calls.values():
        for _ in range(5):
            call()
    return interleaved(calls, repeats)


def interleaved(calls, repeats):
    """Seconds of each of `calls` (name -> no-argument function) per
    repeat, run one after another in each repeat."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", choices=list(BUILDERS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--xla", action="store_true",
                        help="also time each model compiled by XLA")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    require_at_least(parser, {"--repeats": (args.repeats, 3),
                              "--batches": (args.batches, 1),
                              "--image-size": (args.image_size, 32)})
    device = device_kind()
    out = output_prefix(args.out, f"inference_{device}_{args.model}")

    frn = build_model(args.model, "frn", args.image_size)
    frn_fused = build_model(args.model, "frn_fused", args.image_size)
    bn = build_model(args.model, "bn", args.image_size)
    randomize(bn, seed=0)
    bn_folded = fold_batch_norm(bn)
    rng = np.random.default_rng(1)
    check = rng.uniform(0, 255, (4, args.image_size, args.image_size, 3))
    check_folded(bn, bn_folded, check)
    n_bn = sum(isinstance(l, keras.layers.BatchNormalization)
               for l in bn_folded.layers)
    print(f"folded BN model: {n_bn} BatchNormalization layers left")

    signatures = {}
    models = [("frn", frn), ("frn_fused", frn_fused), ("bn", bn),
              ("bn_folded", bn_folded)]
    progress = Progress(len(models) + len(args.batches))
    with tempfile.TemporaryDirectory() as base:
        for name, model in models:
            progress(f"exporting {name}" + (f" and {name}_xla" if args.xla
                                              else ""))
            path = export_for_serving(model, base, name, verbose=False)
            signatures[name] = tf.saved_model.load(path).signatures[
                SIGNATURE_NAME]
            if args.xla:
                path = export_xla(model, os.path.join(base, f"{name}_xla"),
                                  args.image_size)
                signatures[f"{name}_xla"] = tf.saved_model.load(
                    path).signatures[SIGNATURE_NAME]
        feed = {INPUT_NAME: tf.constant(check.astype(np.uint8))}
        for name in [n for n in signatures if n.endswith("_xla")]:
            np.testing.assert_allclose(
                signatures[name](**feed)["probabilities"],
                signatures[name[:-4]](**feed)["probabilities"],
                rtol=1e-4, atol=1e-5)
        rows, best_rows = [], []
        for batch in args.batches:
            progress(f"batch {batch}: {len(signatures)} exports x "
                     f"{args.repeats} calls")
            times = time_signatures(signatures, batch, args.image_size,
                                    args.repeats, rng)
            folded = statistics.median(times["bn_folded"])
            for name, values in times.items():
                q1, _, q3 = statistics.quantiles(values, n=4)
                median = statistics.median(values)
                rows.append({"device": device, "model": args.model,
                             "image_size": args.image_size, "batch": batch,
                             "variant": name, "median_ms": median * 1e3,
                             "spread": (q3 - q1) / median,
                             "vs_bn_folded": median / folded,
                             "calls_ms": " ".join(f"{t * 1e3:.3f}"
                                                  for t in values)})
            best_rows.extend(comparisons(times, batch))
    write_csv(out, rows)
    write_csv(out + "_best", best_rows)
    print("\n| model | batch | variant | median ms | spread | vs BN folded |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} {r['image_size']}px | {r['batch']} | "
              f"{r['variant']} | {r['median_ms']:.2f} | {r['spread']:.0%} | "
              f"{r['vs_bn_folded']:.2f} |")
    print("\n| batch | exports | faster FRN export | faster folded-BN "
          "export | median of per-call ratios | 95% CI |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in best_rows:
        interval = interval_text(r["ci95_low"], r["ci95_high"])
        print(f"| {r['batch']} | {r['comparison']} | {r['frn_variant']} | "
              f"{r['bn_variant']} | {r['ratio']:.2f} | {interval} |")
    print(f"\nTF {tf.__version__}, {os.cpu_count()} cores; wrote {out}.csv, "
          f"{out}_best.csv")


if __name__ == "__main__":
    main()
