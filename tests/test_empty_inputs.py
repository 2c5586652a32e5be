"""Empty inputs through every layer: a replica's empty last batch, no
channels, or no positions. Like Keras' own normalization layers, each layer
returns an empty output of the input's shape; and since the loss of an empty
output is 0 whatever the weights are, every gradient must be exactly 0,
never NaN (FRN's mean over no positions would be 0 / 0)."""

import numpy as np
import pytest

from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras import ProxyNormalization
from tests import harness

# The rank-2 shapes build "frn" at N = 1 without a learned eps, which warns.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*single value per sample:UserWarning")

LAYERS = {
    "frn": lambda axis: FilterResponseNormalization(axis=axis),
    "frn_learned_epsilon": lambda axis: FilterResponseNormalization(
        axis=axis, learned_epsilon=True),
    "frn_tlu": lambda axis: FilterResponseNormalizationTLU(
        axis=axis, learned_epsilon=True),
    "tlu_affine": lambda axis: TLU(axis=axis, affine=True),
    "proxy_normalization": lambda axis: ProxyNormalization(axis=axis),
}
EMPTY_SHAPES_AND_AXES = [
    ((0, 4, 4, 3), -1),  # empty batch
    ((2, 4, 4, 0), -1),  # no channels
    ((2, 0, 4, 3), -1),  # no positions
    ((2, 3, 0), -1),
    ((2, 3, 0, 4), 1),
    ((2, 0), -1),
    ((0, 3), -1),
]


def _assert_empty_output_and_zero_gradients(layer, shape, y, grads):
    assert y.shape == shape
    assert sorted(grads) == sorted(
        ["x"] + [w.name for w in layer.trainable_weights])
    shapes = {w.name: w.shape for w in layer.trainable_weights}
    for name, g in grads.items():
        want = shape if name == "x" else shapes[name]
        np.testing.assert_array_equal(g, np.zeros(want), err_msg=name)


@pytest.mark.all_backends
@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("shape,axis", EMPTY_SHAPES_AND_AXES,
                         ids=harness.ids(EMPTY_SHAPES_AND_AXES))
def test_empty_input_gives_empty_output_and_zero_gradients(name, shape, axis):
    layer = LAYERS[name](axis)
    layer.build(shape)
    x = np.zeros(shape, np.float32)
    y, grads = harness.outputs_and_gradients(layer, x, np.ones(shape))
    _assert_empty_output_and_zero_gradients(layer, shape, y, grads)


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("shape,axis", EMPTY_SHAPES_AND_AXES,
                         ids=harness.ids(EMPTY_SHAPES_AND_AXES))
def test_empty_input_in_a_compiled_graph(name, shape, axis, mode):
    layer = LAYERS[name](axis)
    x = np.zeros(shape, np.float32)
    y, grads = harness.traced_outputs_and_gradients(layer, x, np.ones(shape),
                                                    mode)
    _assert_empty_output_and_zero_gradients(layer, shape, y, grads)


@pytest.mark.parametrize("name", ["frn", "frn_learned_epsilon", "frn_tlu"])
def test_no_positions_known_only_at_run_time(name):
    # A fully convolutional graph: the number of positions is a tensor.
    layer = LAYERS[name](-1)
    layer.build((None, None, None, 3))
    shape = (2, 0, 5, 3)
    y, grads = harness.traced_outputs_and_gradients(
        layer, np.zeros(shape, np.float32), np.ones(shape), "function",
        shape=(None, None, None, 3))
    _assert_empty_output_and_zero_gradients(layer, shape, y, grads)
