"""FRN models under XLA with and without one of the layers' XLA:CPU forms,
side by side.

Under XLA for the CPU the layers take two forms of their own, each the same
function (the boundary bit for bit, the staged sums up to rounding):

- `activation_boundary`: a TLU's output (standalone or fused) is divided by
  a runtime 1 so that XLA computes it once instead of in each reader
  (`frn_keras/layers/_activation_boundary.py`);
- `staged_sum`: FRN's sums over more than 32 positions are taken in two
  stages, so that XLA forms `x^2` and `dy * x` in the loops that sum them
  instead of writing them to memory (`frn_keras/layers/_staged_sum.py`).

This script builds each FRN model twice from the same seed, one traced with
the form (`--form`) and one without (that module's `compiled_by_xla_for_cpu`
patched to False while it traces), and times, interleaved after a warm-up:

- "train_step": `--steps` calls of `train_on_batch` (compiled with
  `jit_compile=True`, as `train_step.py` does) per round;
- "forward": the forward pass, `training=False`, in a `jit_compile=True`
  function (what an XLA-compiled serving export runs), one call per repeat.

It checks that both traces give the same first loss and the same
predictions (to float32 rounding). The result is the median of the per-round (per-call) ratios
with / without, with its 95% interval (`median_interval.py`; needs >= 6).

    python benchmarks/xla_cpu_forms.py                      # ResNet-20
    python benchmarks/xla_cpu_forms.py --form staged_sum
    python benchmarks/xla_cpu_forms.py --model resnet_v2_50 \\
        --image-size 224 --train-batch 16 --rounds 7 --repeats 21

Writes `<out>.csv` (default benchmarks/results/<form>_<device>_<model>).
"""

import argparse
import os
import statistics

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from frn_keras.layers import _activation_boundary  # noqa: E402
from frn_keras.layers import _staged_sum  # noqa: E402
from cli_checks import require_at_least  # noqa: E402
from inference import interleaved  # noqa: E402
from median_interval import interval_text  # noqa: E402
from median_interval import paired_ratios  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402
from train_step import build  # noqa: E402
from train_step import run_steps  # noqa: E402
from zoo import BUILDERS  # noqa: E402

NORMS = ("frn", "frn_fused")
# --form -> the module whose XLA:CPU form it is.
FORMS = {"activation_boundary": _activation_boundary,
         "staged_sum": _staged_sum}
VARIANTS = ("with", "without")


def traced(form, variant, fn, *args):
    """`fn(*args)`, tracing with (the default) or without `form`."""
    module = FORMS[form]
    default = module.compiled_by_xla_for_cpu
    if variant == "without":
        module.compiled_by_xla_for_cpu = lambda: False
    try:
        return fn(*args)
    finally:
        module.compiled_by_xla_for_cpu = default


def row(kind, norm, batch, times, **extra):
    ratios, ratio, low, high = paired_ratios(times["with"], times["without"])
    return {"kind": kind, "norm": norm, "batch": batch, **extra,
            "with_ms": statistics.median(times["with"]) * 1e3,
            "without_ms": statistics.median(times["without"]) * 1e3,
            "with_vs_without": ratio,
            "ci95_low": low, "ci95_high": high,
            "ratios": " ".join(f"{r:.4f}" for r in ratios)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--form", default="activation_boundary",
                        choices=list(FORMS))
    parser.add_argument("--model", default="resnet20", choices=list(BUILDERS))
    parser.add_argument("--norms", nargs="+", default=list(NORMS),
                        choices=NORMS)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10,
                        help="train steps per timed round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32],
                        help="forward-pass batch sizes")
    parser.add_argument("--repeats", type=int, default=101,
                        help="forward calls per batch size")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    require_at_least(parser, {"--rounds": (args.rounds, 3),
                              "--repeats": (args.repeats, 3),
                              "--steps": (args.steps, 1),
                              "--batches": (args.batches, 1),
                              "--train-batch": (args.train_batch, 1),
                              "--image-size": (args.image_size, 32)})
    device = device_kind()
    out = output_prefix(args.out, f"{args.form}_{device}_{args.model}")
    rows = []
    progress = Progress(len(args.norms))
    for norm in args.norms:
        progress(f"{norm}: forward at batches {args.batches}, then "
                 f"{args.rounds} rounds of {args.steps} train steps")
        models = {variant: build(args.model, norm, args.image_size,
                                 args.train_batch, jit_compile=True)
                  for variant in VARIANTS}
        # The forward passes first, on the initial weights: a form that is
        # not bit-exact (the staged sums round differently) lets training
        # steps drift the two models apart.
        rng = np.random.default_rng(1)
        for batch in args.batches:
            images = tf.constant(rng.uniform(
                0, 255, (batch, args.image_size, args.image_size, 3)),
                tf.float32)
            forward = {}
            for variant, (model, *_) in models.items():
                fn = tf.function(lambda t, m=model: m(t, training=False),
                                 jit_compile=True)
                traced(args.form, variant, fn, images)
                forward[variant] = (lambda f=fn: f(images).numpy())
            # Relative to the largest output: in ResNetV2-50 the staged
            # sums' rounding reaches the logits near 0 at about 1e-6.
            without = forward["without"]()
            np.testing.assert_allclose(forward["with"](), without, rtol=1e-5,
                                       atol=1e-5 * np.abs(without).max())
            rows.append(row("forward", norm, batch,
                            interleaved(forward, args.repeats), steps=1))

        # The first call traces and compiles the train function.
        losses = [float(traced(args.form, variant, run_steps, *models[variant],
                               1)) for variant in VARIANTS]
        np.testing.assert_allclose(*losses, rtol=1e-5)
        steps = {v: (lambda m=m: run_steps(*m, args.steps))
                 for v, m in models.items()}
        rows.append(row("train_step", norm, args.train_batch,
                        interleaved(steps, args.rounds), steps=args.steps))
    for r in rows:
        r.update(device=device, form=args.form, model=args.model,
                 image_size=args.image_size)
    write_csv(out, rows)
    print(f"\n{args.form}, with / without:")
    print("| model | kind | norm | batch | with ms | without ms "
          "| with / without | 95% CI |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        interval = interval_text(r["ci95_low"], r["ci95_high"])
        print(f"| {r['model']} {r['image_size']}px | {r['kind']} | "
              f"{r['norm']} | {r['batch']} | {r['with_ms']:.2f} | "
              f"{r['without_ms']:.2f} | {r['with_vs_without']:.3f} | "
              f"{interval} |")
    print(f"\nTF {tf.__version__}, {os.cpu_count()} cores; wrote {out}.csv")


if __name__ == "__main__":
    main()
