"""Training throughput (images/s) and peak memory of the model zoo's ResNets
with `norm="frn"` (also fused: `"frn_fused"`) vs `"bn"` vs `"gn"`, XLA on
and off.

Throughput: every configuration is built in one process and timed
interleaved (round r times `--steps` calls of `train_on_batch` for each
configuration before round r + 1), after a warm-up; medians over the rounds.
The ratio to BN is the median of the per-round ratios (each configuration
against the BN run of the same round), with a 95% confidence interval for
that median (`median_interval.py`; needs >= 6 rounds) and the rounds' min
and max; the CSV keeps every round's ratio.
Peak memory: each configuration is run again, alone, in a fresh process, and
its peak resident set size (CPU) or peak device memory (GPU) is reported.

    python benchmarks/train_step.py                         # CPU defaults
    python benchmarks/train_step.py --model resnet_v2_50 --image-size 224 \\
        --batch 128 --precision mixed_bfloat16              # on a GPU

Writes `<out>.csv` (default benchmarks/results/train_step_<device>_<model>).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cli_checks import require_at_least  # noqa: E402
from median_interval import interval_text  # noqa: E402
from median_interval import paired_ratios  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402
from zoo import BUILDERS  # noqa: E402
from zoo import build_model  # noqa: E402


def build(model_name, norm, image_size, batch, jit_compile, seed=0):
    keras.utils.set_random_seed(seed)
    model = build_model(model_name, norm, image_size)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(0, 255, (batch, image_size, image_size, 3)),
                    tf.float32)
    y = tf.constant(rng.integers(0, model.output_shape[-1], batch))
    return model, x, y


def run_steps(model, x, y, steps):
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    return loss


def peak_memory_mib():
    if tf.config.list_physical_devices("GPU"):
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    # ru_maxrss would include the parent's RSS at fork time (it survives
    # exec on Linux); VmHWM belongs to this process's own address space.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_of(args, norm, xla):
    """Peak memory of one configuration, alone in a fresh process."""
    command = [sys.executable, __file__, "--memory-probe",
               json.dumps([args.model, norm, args.image_size, args.batch,
                           xla == "on", args.precision, args.steps])]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory_probe(spec):
    model_name, norm, image_size, batch, jit, precision, steps = json.loads(
        spec)
    keras.config.set_dtype_policy(precision)
    model, x, y = build(model_name, norm, image_size, batch, jit)
    run_steps(model, x, y, steps + 2)
    print(peak_memory_mib())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", choices=list(BUILDERS))
    parser.add_argument("--norms", nargs="+",
                        default=["frn", "frn_fused", "bn", "gn"])
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: 32 (resnet20), 64 (resnet_v2_50)")
    parser.add_argument("--batch", type=int, default=None,
                        help="default: 128 (resnet20), 16 (resnet_v2_50)")
    parser.add_argument("--steps", type=int, default=10,
                        help="train steps per timed call")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--xla", nargs="+", default=["on", "off"],
                        choices=["on", "off"])
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds of 2 steps: checks the script runs")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.memory_probe:
        return memory_probe(args.memory_probe)
    small = args.model == "resnet20"
    args.image_size = args.image_size or (32 if small else 64)
    args.batch = args.batch or (128 if small else 16)
    if args.quick:
        args.rounds, args.steps = 2, 2
    if "bn" not in args.norms:
        parser.error("--norms must include bn, the baseline of the ratios")
    require_at_least(parser, {"--batch": (args.batch, 1),
                              "--steps": (args.steps, 1),
                              "--rounds": (args.rounds, 1),
                              "--image-size": (args.image_size, 1)})
    device = device_kind()
    out = output_prefix(args.out, f"train_step_{device}_{args.model}")

    keras.config.set_dtype_policy(args.precision)
    configs = {(norm, xla): build(args.model, norm, args.image_size,
                                  args.batch, xla == "on")
               for xla in args.xla for norm in args.norms}
    for model, x, y in configs.values():
        run_steps(model, x, y, 2)  # compile + warm up
    times = {key: [] for key in configs}
    progress = Progress(args.rounds)
    for _ in range(args.rounds):
        progress(f"round of {len(configs)} models x {args.steps} steps")
        for key, (model, x, y) in configs.items():
            start = time.perf_counter()
            loss = run_steps(model, x, y, args.steps)
            times[key].append(time.perf_counter() - start)
            if not np.isfinite(loss):
                raise RuntimeError(f"{key}: loss is {loss}")

    rows = []
    for (norm, xla), values in times.items():
        seconds = statistics.median(values) / args.steps
        rows.append({
            "device": device, "model": args.model, "norm": norm, "xla": xla,
            "precision": args.precision, "batch": args.batch,
            "image_size": args.image_size,
            "images_per_s": args.batch / seconds,
            "step_ms": seconds * 1e3,
            "spread": (max(values) - min(values)) / statistics.median(values),
            "peak_memory_mib": memory_of(args, norm, xla),
        })
    for row in rows:
        # Paired per round: both configurations ran back to back in the same
        # round, so a slow spell of the machine cancels out of their ratio.
        ratios, row["step_vs_bn"], low, high = paired_ratios(
            times[row["norm"], row["xla"]], times["bn", row["xla"]])
        row["step_vs_bn_min"] = min(ratios)
        row["step_vs_bn_max"] = max(ratios)
        row["step_vs_bn_ci95_low"], row["step_vs_bn_ci95_high"] = low, high
        row["step_vs_bn_rounds"] = " ".join(f"{r:.4f}" for r in ratios)
    write_csv(out, rows)
    print("\n| model | norm | XLA | images/s | step ms | step / BN step "
          "(rounds' min-max) | 95% CI | spread | peak memory MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        interval = interval_text(r["step_vs_bn_ci95_low"],
                                 r["step_vs_bn_ci95_high"], "rounds")
        print(f"| {r['model']} b{r['batch']} {r['image_size']}px "
              f"{r['precision']} | {r['norm']} | {r['xla']} | "
              f"{r['images_per_s']:.0f} | {r['step_ms']:.1f} | "
              f"{r['step_vs_bn']:.2f} ({r['step_vs_bn_min']:.2f}-"
              f"{r['step_vs_bn_max']:.2f}) | {interval} | "
              f"{r['spread']:.0%} | "
              f"{r['peak_memory_mib']:.0f} |")
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, TF "
          f"{tf.__version__}, Keras {keras.__version__}; wrote {out}.csv")


if __name__ == "__main__":
    main()
