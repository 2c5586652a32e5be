"""The `>>>` examples in the package's docstrings run and print what they
show (under TensorFlow, whose shapes they print)."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import frn_keras


def _docstring_examples():
    finder = doctest.DocTestFinder()
    found = []
    for module in pkgutil.walk_packages(frn_keras.__path__, "frn_keras."):
        for test in finder.find(importlib.import_module(module.name)):
            if test.examples:
                found.append(test)
    return found


EXAMPLES = _docstring_examples()


def test_the_layer_and_folding_examples_are_found():
    names = {test.name.rsplit(".", 1)[-1] for test in EXAMPLES}
    assert {"FilterResponseNormalization", "TLU",
            "FilterResponseNormalizationTLU", "ProxyNormalization",
            "fold_frn_offsets"} <= names, names


@pytest.mark.parametrize("test", EXAMPLES, ids=lambda test: test.name)
def test_docstring_example(test):
    test.globs = {"np": np, "keras": keras, "frn_keras": frn_keras}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failures = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)
