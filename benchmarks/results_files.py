"""Where the benchmark scripts write their results, and how (shared by the
scripts)."""

import csv
import os

import tensorflow as tf

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_kind():
    """`"gpu"` when TensorFlow sees a GPU, else `"cpu"`."""
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def output_prefix(out, default_name):
    """`out`, or `benchmarks/results/<default_name>` when it is `None`; the
    folder is created. Files are written as `<prefix>.csv`, `<prefix>.png`."""
    out = out or os.path.join(RESULTS, default_name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return out


def write_csv(prefix, rows):
    """Writes `rows` (dicts with the same keys) to `<prefix>.csv`."""
    with open(prefix + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def pyplot():
    """matplotlib's pyplot, drawing to files, or None when matplotlib is not
    installed (it comes with `pip install -e ".[benchmarks]"`): the scripts
    then write their tables without the plots, and say so."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed, so no plot is drawn "
              '(pip install -e ".[benchmarks]" adds it)')
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
