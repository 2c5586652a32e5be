"""Imports the scripts under examples/ and benchmarks/ as modules, for the
tests."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(folder, name):
    """Imports `folder/name.py` with `folder` first on `sys.path` while its
    top-level imports run, as when the script runs from the command line."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / folder / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / folder))
    return module


def load_example(name):
    return _load("examples", name)


def load_benchmark(name):
    return _load("benchmarks", name)
