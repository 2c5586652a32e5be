"""frn_keras.fold_frn_offsets: which FRN offsets fold, and that the folded
model computes the original function (against the original model and a
float64 NumPy reference)."""

import numpy as np
import pytest

import keras

import frn_keras
from frn_keras import TLU
from frn_keras import FilterResponseNormalization
from frn_keras import FilterResponseNormalizationTLU
from frn_keras import fold_frn_offsets
from frn_keras._graph import readers_of
from frn_keras.offset_folding import has_frn_offsets_to_fold
from tests import numpy_reference as ref

FRN_TYPES = (FilterResponseNormalization, FilterResponseNormalizationTLU)


def _randomize(model, seed=0):
    """Weights far from their initial values: beta, tau and biases != 0."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0, 0.3, w.shape))


def _centered(model):
    """{name: center} of the model's FRN layers."""
    return {layer.name: layer.center for layer in model.layers
            if isinstance(layer, FRN_TYPES)}


def _assert_same_function(model, folded, x, rtol=1e-5):
    """Equal to float32 rounding, at the scale of the outputs."""
    want = keras.ops.convert_to_numpy(model(x))
    got = keras.ops.convert_to_numpy(folded(x))
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * np.abs(want).max())


def test_fused_pair_before_1x1_conv_matches_float64_reference():
    rng = np.random.default_rng(0)
    model = keras.Sequential([
        keras.Input((5, 6, 4)),
        FilterResponseNormalizationTLU(),
        keras.layers.Conv2D(3, 1, strides=2, padding="same", use_bias=False),
    ])
    _randomize(model)
    folded = fold_frn_offsets(model)

    frn, conv = folded.layers
    assert not frn.center and conv.use_bias
    x = rng.normal(0, 2, (2, 5, 6, 4))
    gamma, beta, tau = (model.layers[0].gamma.numpy(),
                        model.layers[0].beta.numpy(),
                        model.layers[0].tau.numpy())
    kernel = model.layers[1].kernel.numpy()[0, 0]
    z = ref.frn_tlu_forward(x, -1, gamma, beta, 1e-6, None, tau)
    want = z[:, ::2, ::2] @ kernel
    got = keras.ops.convert_to_numpy(folded(x.astype("float32")))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The folded weights: tau - beta, and K^T beta as the bias.
    np.testing.assert_allclose(frn.tau.numpy(), tau - beta, rtol=1e-6)
    np.testing.assert_allclose(conv.bias.numpy(), beta @ kernel, rtol=1e-5,
                               atol=1e-6)
    assert [w.name for w in frn.weights] == ["gamma", "tau"]


# dense_rank2 is FRN at N = 1 without a learned epsilon, which warns.
@pytest.mark.filterwarnings("ignore:.*single value per sample:UserWarning")
@pytest.mark.parametrize("case", [
    "frn_tlu_conv", "fused_conv_with_bias_and_relu", "frn_conv",
    "two_readers", "channels_first", "conv1d", "conv3d", "dense_rank2",
    "dense_rank3", "learned_epsilon",
])
def test_foldable_chains_fold_to_the_same_function(case):
    rng = np.random.default_rng(1)
    shape = {"channels_first": (4, 6, 6), "conv1d": (7, 4),
             "conv3d": (3, 4, 5, 4), "dense_rank2": (4,),
             "dense_rank3": (7, 4), "learned_epsilon": (4,)}.get(
                 case, (6, 6, 4))
    inputs = keras.Input(shape)
    if case == "channels_first":
        y = TLU(axis=1)(FilterResponseNormalization(axis=1)(inputs))
        outputs = keras.layers.Conv2D(
            3, 1, data_format="channels_first")(y)
    elif case == "conv1d":
        outputs = keras.layers.Conv1D(3, 1)(
            FilterResponseNormalizationTLU()(inputs))
    elif case == "conv3d":
        outputs = keras.layers.Conv3D(3, 1)(
            FilterResponseNormalizationTLU()(inputs))
    elif case in ("dense_rank2", "dense_rank3"):
        outputs = keras.layers.Dense(3)(
            TLU()(FilterResponseNormalization()(inputs)))
    elif case == "learned_epsilon":
        outputs = keras.layers.Dense(3)(FilterResponseNormalizationTLU(
            learned_epsilon=True)(inputs))
    elif case == "frn_tlu_conv":
        outputs = keras.layers.Conv2D(3, 1, use_bias=False)(
            TLU()(FilterResponseNormalization()(inputs)))
    elif case == "fused_conv_with_bias_and_relu":
        outputs = keras.layers.Conv2D(3, 1, activation="relu")(
            FilterResponseNormalizationTLU()(inputs))
    elif case == "frn_conv":  # no TLU
        outputs = keras.layers.Conv2D(3, 1)(
            FilterResponseNormalization()(inputs))
    elif case == "two_readers":  # e.g. ResNetV2's conv1 and shortcut
        y = FilterResponseNormalizationTLU()(inputs)
        outputs = keras.layers.Concatenate()([
            keras.layers.Conv2D(3, 1, use_bias=False)(y),
            keras.layers.Conv2D(5, 1)(y),
        ])
    model = keras.Model(inputs, outputs)
    _randomize(model)
    folded = fold_frn_offsets(model)

    assert list(_centered(folded).values()) == [False]
    assert list(_centered(model).values()) == [True]  # model is unchanged
    x = rng.normal(0, 2, (3, *shape)).astype("float32")
    _assert_same_function(model, folded, x)


@pytest.mark.parametrize("case", [
    "3x3_conv", "grouped_conv", "other_reader", "model_output",
    "tlu_is_output", "affine_tlu", "channel_axis_mismatch", "no_center",
    "dense_on_other_axis", "depthwise", "quantized_dense",
])
def test_offsets_that_cannot_fold_are_kept(case):
    inputs = keras.Input((6, 6, 4))
    frn = FilterResponseNormalizationTLU(center=case != "no_center")
    y = frn(inputs)
    if case == "3x3_conv":  # its zero padding does not commute with beta
        outputs = keras.layers.Conv2D(3, 3, padding="same")(y)
    elif case == "grouped_conv":
        outputs = keras.layers.Conv2D(4, 1, groups=2)(y)
    elif case == "other_reader":
        outputs = keras.layers.Add()([keras.layers.Conv2D(4, 1)(y), y])
    elif case == "model_output":
        outputs = [keras.layers.Conv2D(3, 1)(y), y]
    elif case == "tlu_is_output":
        frn = FilterResponseNormalization()
        y = TLU()(frn(inputs))
        outputs = [keras.layers.Conv2D(3, 1)(y), y]
    elif case == "affine_tlu":
        frn = FilterResponseNormalization()
        outputs = keras.layers.Conv2D(3, 1)(TLU(affine=True)(frn(inputs)))
    elif case == "channel_axis_mismatch":
        outputs = keras.layers.Conv2D(3, 1, data_format="channels_first")(y)
    elif case == "dense_on_other_axis":
        frn = FilterResponseNormalization(axis=1)
        outputs = keras.layers.Dense(3)(frn(inputs))
    elif case in ("no_center", "depthwise"):
        outputs = keras.layers.DepthwiseConv2D(1)(y)
    elif case == "quantized_dense":  # int8 kernel: K^T beta needs its scale
        dense = keras.layers.Dense(3)
        outputs = dense(y)
    model = keras.Model(inputs, outputs)
    _randomize(model)
    if case == "quantized_dense":
        dense.quantize("int8")

    assert not has_frn_offsets_to_fold(model)
    folded = fold_frn_offsets(model)
    assert _centered(folded) == _centered(model)
    assert folded.get_layer(frn.name).center == frn.center
    x = np.random.default_rng(2).normal(0, 2, (2, 6, 6, 4)).astype("float32")
    for want, got in zip(keras.tree.flatten(model(x)),
                         keras.tree.flatten(folded(x))):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got),
                                      keras.ops.convert_to_numpy(want))


def test_resnet_v2_50_folds_the_offsets_before_1x1_convolutions():
    model = frn_keras.fuse_frn_tlu(frn_keras.models.resnet_v2_50(
        num_classes=10, input_shape=(64, 64, 3)))
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, FRN_TYPES):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.3, layer.beta.shape))
            layer.tau.assign(rng.normal(0, 0.3, layer.tau.shape))
    folded = fold_frn_offsets(model)

    # Per block: the pre-activation FRN (read by conv1 and any projection
    # shortcut, both 1x1) and the FRN before conv3 (1x1) fold; the FRN
    # before the 3x3 conv2 does not. The last FRN feeds global pooling.
    centered = _centered(folded)
    assert sum(not c for c in centered.values()) == 32
    assert len(centered) == 49
    for layer in folded.layers:
        if isinstance(layer, FRN_TYPES) and layer.center:
            assert not any(isinstance(r, keras.layers.Conv2D)
                           and r.kernel_size == (1, 1) for r in readers_of(layer))
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    # 49 FRN layers deep: the two orders of rounding drift apart further.
    _assert_same_function(model, folded, x, rtol=1e-4)


def test_sequential_and_nested_models():
    inner = keras.Sequential([
        keras.Input((6, 6, 4)),
        FilterResponseNormalization(),
        TLU(),
        keras.layers.Conv2D(4, 1),
        FilterResponseNormalizationTLU(),  # the last layer: its output
    ], name="inner")
    inputs = keras.Input((6, 6, 4))
    outputs = keras.layers.Dense(3)(inner(inputs))
    model = keras.Model(inputs, outputs)
    _randomize(model)
    folded = fold_frn_offsets(model)

    folded_inner = folded.get_layer("inner")
    assert isinstance(folded_inner, keras.Sequential)
    assert [getattr(layer, "center", None) for layer in folded_inner.layers
            ] == [False, None, None, True]
    assert has_frn_offsets_to_fold(model)
    assert not has_frn_offsets_to_fold(folded)
    x = np.random.default_rng(4).normal(0, 2, (2, 6, 6, 4)).astype("float32")
    _assert_same_function(model, folded, x)


def test_refuses_subclassed_and_unbuilt_models():
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="fold_frn_offsets.*Subclassed"):
        fold_frn_offsets(Subclassed())
    unbuilt = keras.Sequential([FilterResponseNormalization(),
                                keras.layers.Dense(2)], name="unbuilt")
    with pytest.raises(ValueError, match="built.*'unbuilt'"):
        fold_frn_offsets(unbuilt)
    assert not has_frn_offsets_to_fold(unbuilt)


def test_folded_model_saves_and_loads(tmp_path):
    model = keras.Sequential([
        keras.Input((5,)), FilterResponseNormalizationTLU(
            learned_epsilon=True), keras.layers.Dense(2)])
    _randomize(model)
    folded = fold_frn_offsets(model)
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(5).normal(0, 2, (4, 5)).astype("float32")
    _assert_same_function(model, loaded, x)
