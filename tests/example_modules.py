"""Imports the scripts under examples/ and benchmarks/ as modules, for the
tests."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(folder, name):
    spec = importlib.util.spec_from_file_location(
        name, ROOT / folder / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_example(name):
    return _load("examples", name)


def load_benchmark(name):
    return _load("benchmarks", name)
