"""`_xla_context` tells the layers whether the trace will be compiled by
XLA (and for the CPU), which decides the forms they take."""

import pytest
import tensorflow as tf

from frn_keras.layers import _xla_context


def _traced(predicate, jit_compile, nested=False):
    """`predicate()` as seen while tracing a tf.function (optionally an
    inner plain tf.function called from it)."""
    seen = []

    def record(x):
        seen.append(predicate())
        return x

    inner = tf.function(record) if nested else record
    tf.function(inner, jit_compile=jit_compile)(tf.ones(()))
    return seen[0]


def test_eager_is_not_compiled():
    assert _xla_context.compiled_by_xla() is False
    assert _xla_context.compiled_by_xla_for_cpu() is False


@pytest.mark.parametrize("nested", [False, True])
def test_only_jit_compiled_traces_are_compiled(nested):
    assert _traced(_xla_context.compiled_by_xla, None, nested) is False
    assert _traced(_xla_context.compiled_by_xla, False, nested) is False
    # A plain tf.function called inside a jit_compile one is compiled with
    # it.
    assert _traced(_xla_context.compiled_by_xla, True, nested) is True


def test_for_cpu_when_no_accelerator_is_visible():
    on_cpu = not (tf.config.list_logical_devices("GPU")
                  or tf.config.list_logical_devices("TPU"))
    assert _traced(_xla_context.compiled_by_xla_for_cpu, True) is on_cpu
    assert _traced(_xla_context.compiled_by_xla_for_cpu, False) is False


@pytest.mark.parametrize("accelerator", ["GPU", "TPU"])
def test_not_for_cpu_when_an_accelerator_is_visible(accelerator, monkeypatch):
    # Keras places the computation on the accelerator, so the XLA:CPU forms
    # must not be taken there. This machine has none: pretend one is seen.
    list_devices = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config, "list_logical_devices",
        lambda kind=None: (["/device:%s:0" % accelerator]
                           if kind == accelerator else list_devices(kind)))
    assert _traced(_xla_context.compiled_by_xla, True) is True
    assert _traced(_xla_context.compiled_by_xla_for_cpu, True) is False


def test_not_for_cpu_under_another_keras_backend(monkeypatch):
    monkeypatch.setattr(_xla_context.backend, "backend", lambda: "jax")
    assert _traced(_xla_context.compiled_by_xla_for_cpu, True) is False


def test_assumes_xla_if_tensorflow_marker_is_missing(monkeypatch):
    # XLA is the safe guess: it has no kernel for the TF-only forms
    # (EuclideanNorm), while its own forms are plain math TF runs too.
    from tensorflow.python.ops import control_flow_util

    monkeypatch.delattr(control_flow_util, "GraphOrParentsInXlaContext")
    assert _traced(_xla_context.compiled_by_xla, False) is True
    assert _xla_context.compiled_by_xla() is False  # eager needs no marker
