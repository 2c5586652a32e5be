"""Activation-sized buffers that XLA writes and reads in one compiled
training step, per normalization: a count of memory passes that does not
depend on timing noise.

Each configuration runs one `train_on_batch` with `jit_compile=True` in a
fresh process with `XLA_FLAGS=--xla_dump_to=<tmp>`. The script reads the
entry computation of the step's optimized HLO (`*after_optimizations.txt`)
and sums, over its instructions, the outputs (writes) and operands (reads)
of at least `batch * 4096` elements (the smallest ResNet-20 activation:
8x8x64): convolutions (and their dilated / transposed variants) apart from
everything else (fusions of the normalization, activation, residual and
their gradients, copies). It is a static count: a fusion that reads an
operand twice, or reads it from cache, counts it once.

    python benchmarks/hlo_traffic.py                  # ResNet-20, batch 128

Writes `<out>.csv` (default benchmarks/results/hlo_traffic_<device>_<model>).
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cli_checks import require_at_least  # noqa: E402
from progress import Progress  # noqa: E402
from results_files import device_kind  # noqa: E402
from results_files import output_prefix  # noqa: E402
from results_files import write_csv  # noqa: E402
from zoo import BUILDERS  # noqa: E402

BYTES = {"pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "f32": 4,
         "s32": 4, "u32": 4, "f64": 8, "s64": 8}
NOT_WRITES = {"parameter", "constant", "bitcast", "tuple",
              "get-tuple-element"}
INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%?(?P<name>[\w.\-]+) = (?P<shape>\(.*?\)|\S+) "
    r"(?P<op>[\w\-]+)\((?P<operands>[^)]*)\)")
OPERAND = re.compile(r"%([\w.\-]+)")
ARRAY = re.compile(r"\b(" + "|".join(BYTES) + r")\[([\d,]*)\]")


def arrays(shape):
    """(elements, bytes) of each array in an HLO shape (tuples too)."""
    for dtype, dims in ARRAY.findall(shape):
        elements = 1
        for d in filter(None, dims.split(",")):
            elements *= int(d)
        yield elements, elements * BYTES[dtype]


def traffic(hlo_text, min_elements):
    """{"conv": {...}, "other": {...}}, each with the count and bytes of the
    outputs ("writes", "write_bytes") and of the operands ("read_bytes") of
    >= `min_elements`, over the entry computation's instructions."""
    entry = hlo_text[hlo_text.index("\nENTRY"):]
    entry = entry[:entry.index("\n}")]
    shapes = {}
    totals = {kind: {"writes": 0, "write_bytes": 0, "read_bytes": 0}
              for kind in ("conv", "other")}
    for line in entry.splitlines()[1:]:
        match = INSTRUCTION.match(line)
        if not match:
            continue
        shapes[match["name"]] = match["shape"]
        if match["op"] in NOT_WRITES:
            continue
        kind = totals["conv" if "convolution" in match["name"] or
                      match["op"] == "convolution" else "other"]
        for elements, nbytes in arrays(match["shape"]):
            if elements >= min_elements:
                kind["writes"] += 1
                kind["write_bytes"] += nbytes
        for operand in OPERAND.findall(match["operands"]):
            kind["read_bytes"] += sum(
                nbytes for elements, nbytes in arrays(shapes.get(operand, ""))
                if elements >= min_elements)
    return totals


def probe(spec):
    """Child process: one XLA training step (the parent's `XLA_FLAGS` dump
    its HLO)."""
    model_name, norm, image_size, batch = json.loads(spec)
    from train_step import build
    from train_step import run_steps
    model, x, y = build(model_name, norm, image_size, batch, True)
    run_steps(model, x, y, 1)


def step_hlo(args, norm):
    with tempfile.TemporaryDirectory() as dump_dir:
        flags = (os.environ.get("XLA_FLAGS", "") +
                 f" --xla_dump_to={dump_dir} --xla_dump_hlo_as_text")
        env = dict(os.environ, XLA_FLAGS=flags.strip())
        subprocess.run(
            [sys.executable, __file__, "--probe",
             json.dumps([args.model, norm, args.image_size, args.batch])],
            env=env, check=True, capture_output=True, text=True)
        steps = glob.glob(os.path.join(
            dump_dir, "*one_step_on_data*after_optimizations.txt"))
        if len(steps) != 1:
            raise RuntimeError(f"{norm}: expected one training-step module "
                               f"in the XLA dump, found {len(steps)}")
        with open(steps[0]) as f:
            return f.read()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", choices=list(BUILDERS))
    parser.add_argument("--norms", nargs="+",
                        default=["bn", "frn", "frn_fused", "gn"])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.probe:
        return probe(args.probe)
    if "bn" not in args.norms:
        parser.error("--norms must include bn, the baseline of the ratios")
    require_at_least(parser, {"--batch": (args.batch, 1),
                              "--image-size": (args.image_size, 1)})
    out = output_prefix(args.out, f"hlo_traffic_{device_kind()}_{args.model}")

    rows = []
    progress = Progress(len(args.norms))
    for norm in args.norms:
        progress(f"{norm}: compiling the train step, reading its HLO")
        totals = traffic(step_hlo(args, norm), args.batch * 4096)
        row = {"model": args.model, "norm": norm, "batch": args.batch}
        for kind, t in totals.items():
            row[f"{kind}_writes"] = t["writes"]
            row[f"{kind}_written_mib"] = t["write_bytes"] / 2**20
            row[f"{kind}_read_mib"] = t["read_bytes"] / 2**20
        rows.append(row)
    bn = next(r for r in rows if r["norm"] == "bn")
    for row in rows:
        row["other_traffic_vs_bn"] = (
            (row["other_written_mib"] + row["other_read_mib"])
            / (bn["other_written_mib"] + bn["other_read_mib"]))
    write_csv(out, rows)
    print("\n| model | norm | convolutions: outputs, MiB written / read | "
          "everything else: outputs, MiB written / read | else, read + "
          "written / BN's |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} b{r['batch']} | {r['norm']} | "
              f"{r['conv_writes']}, {r['conv_written_mib']:.0f} / "
              f"{r['conv_read_mib']:.0f} | {r['other_writes']}, "
              f"{r['other_written_mib']:.0f} / {r['other_read_mib']:.0f} | "
              f"{r['other_traffic_vs_bn']:.2f} |")
    print(f"\nwrote {out}.csv")


if __name__ == "__main__":
    main()
