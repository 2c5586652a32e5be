"""The model zoo: published sizes, the norm registry, data formats, and the
batch independence that FRN gives a whole network."""

import re
import warnings

import numpy as np
import pytest

import keras

import frn_keras
from frn_keras import models
from frn_keras._graph import producer
from frn_keras._graph import readers_of


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def _assert_keras_file_round_trip(model, x, path):
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x), model(x),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("depth,published", [(20, 0.27e6), (32, 0.46e6),
                                             (56, 0.85e6)])
def test_cifar_resnet_sizes_match_he_et_al(depth, published):
    # He et al. 2016, Table 6: 0.27M, 0.46M, 0.85M parameters.
    model = models.resnet_cifar(depth, norm="bn")
    assert abs(_trainable(model) - published) / published < 0.02


def test_resnet_v2_50_size_matches_keras_applications():
    model = models.resnet_v2_50(norm="bn")
    reference = keras.applications.ResNet50V2(weights=None)
    # Keras's version also has conv biases; both are ~25.6M.
    assert abs(model.count_params() - 25.6e6) / 25.6e6 < 0.005
    assert abs(model.count_params() - reference.count_params()) < 0.001 * (
        reference.count_params())
    assert model.output_shape == (None, 1000)


def _reader(layer):
    """The one layer that takes `layer`'s output."""
    readers = readers_of(layer)
    assert len(readers) == 1, (layer.name, readers)
    return readers[0]


def test_cifar_resnet_blocks_follow_he_et_al():
    # Section 4.2: conv-BN-ReLU-conv-BN, added to the shortcut, then ReLU;
    # stride 2 and a 1x1 projection (option B) where the stage changes;
    # feature maps 32, 16, 8 with 16, 32, 64 filters.
    model = models.resnet_cifar(20, norm="bn")
    bn, relu = keras.layers.BatchNormalization, keras.layers.ReLU
    stem = model.get_layer("stem_conv")
    block_input = _reader(_reader(stem))
    assert isinstance(block_input, relu)
    for stage, (filters, size) in enumerate([(16, 32), (32, 16), (64, 8)]):
        for block in range(3):
            name = f"stage{stage + 1}_block{block + 1}"
            conv1, conv2, add = (model.get_layer(f"{name}_{part}")
                                 for part in ("conv1", "conv2", "add"))
            projected = stage > 0 and block == 0
            assert producer(conv1) is block_input
            assert conv1.strides == ((2, 2) if projected else (1, 1))
            act1 = producer(conv2)
            assert isinstance(act1, relu) and isinstance(producer(act1), bn)
            assert producer(producer(act1)) is conv1
            shortcut, residual = producer(add.input[0]), producer(add.input[1])
            assert isinstance(residual, bn) and producer(residual) is conv2
            if projected:
                assert isinstance(shortcut, bn)
                projection = producer(shortcut)
                assert projection.name == f"{name}_shortcut_conv"
                assert projection.kernel_size == (1, 1)
                assert projection.strides == (2, 2)
                assert producer(projection) is block_input
            else:
                assert shortcut is block_input
            assert tuple(add.output.shape) == (None, size, size, filters)
            block_input = _reader(add)
            assert isinstance(block_input, relu)
    assert isinstance(_reader(block_input),
                      keras.layers.GlobalAveragePooling2D)
    convs = [layer for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 21 and not any(conv.use_bias for conv in convs)


def test_resnet_v2_50_blocks_are_pre_activation():
    # He et al. 2016b: each block takes norm-act of its input once, for the
    # residual branch and for a projection shortcut; an identity shortcut
    # is the block's input itself. Stride 2 in the 3x3 convolution of each
    # stage's first block; feature maps 56, 28, 14, 7.
    model = models.resnet_v2_50(norm="bn")
    bn, relu = keras.layers.BatchNormalization, keras.layers.ReLU
    block_input = model.get_layer("stem_pool")
    for stage, (blocks, size) in enumerate(
            zip((3, 4, 6, 3), (56, 28, 14, 7))):
        filters = 64 * 2**stage
        for block in range(blocks):
            name = f"stage{stage + 1}_block{block + 1}"
            conv1, conv2, conv3, add = (
                model.get_layer(f"{name}_{part}")
                for part in ("conv1", "conv2", "conv3", "add"))
            preact = producer(conv1)
            assert isinstance(preact, relu) and isinstance(producer(preact), bn)
            assert producer(producer(preact)) is block_input
            for conv, source_conv in ((conv2, conv1), (conv3, conv2)):
                act = producer(conv)
                assert isinstance(act, relu) and isinstance(producer(act), bn)
                assert producer(producer(act)) is source_conv
            assert conv2.strides == ((2, 2) if stage > 0 and block == 0
                                     else (1, 1))
            shortcut = producer(add.input[0])
            if block == 0:
                assert shortcut.name == f"{name}_shortcut_conv"
                assert producer(shortcut) is preact
            else:
                assert shortcut is block_input
            assert producer(add.input[1]) is conv3
            assert tuple(add.output.shape) == (None, size, size, 4 * filters)
            block_input = add
    final_norm = _reader(block_input)
    assert isinstance(final_norm, bn)
    assert isinstance(_reader(final_norm), relu)
    assert not any(layer.use_bias for layer in model.layers
                   if isinstance(layer, keras.layers.Conv2D))


# The usual per-channel statistics of CIFAR-10's training set and ImageNet's.
@pytest.mark.parametrize("build,mean,std", [
    (lambda: models.resnet_cifar(8),
     (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # Any size: at 32x32 its last stage would be N = 1 (which warns).
    (lambda: models.resnet_v2_50(input_shape=(None, None, 3)),
     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
], ids=["resnet_cifar", "resnet_v2_50"])
def test_models_standardize_raw_pixels(build, mean, std):
    model = build()
    standardized = keras.Model(model.input,
                               model.get_layer("standardize").output)
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3))
    want = (x / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(standardized(x.astype("float32")), want,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", [
    lambda norm: models.resnet_cifar(20, norm=norm),
    lambda norm: models.resnet_v2_50(norm=norm, input_shape=(64, 64, 3)),
], ids=["resnet20", "resnet_v2_50"])
def test_frn_replaces_every_bn_relu_pair(build):
    bn, frn = _layer_types(build("bn")), _layer_types(build("frn"))
    assert "BatchNormalization" not in frn and "ReLU" not in frn
    assert frn.count("FilterResponseNormalization") == bn.count(
        "BatchNormalization")
    assert frn.count("TLU") == bn.count("ReLU")
    assert len(frn) == len(bn)


@pytest.mark.parametrize("norm", ["frn", "bn", "gn", "ln", "in", "gn_pn"])
def test_channels_first_computes_the_same_function(norm):
    rng = np.random.default_rng(0)
    last = models.resnet_cifar(8, norm=norm)
    first = models.resnet_cifar(8, norm=norm, data_format="channels_first")
    first.set_weights(last.get_weights())
    x = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(first(x), last(x), rtol=1e-4, atol=1e-4)


def test_frn_network_output_is_independent_of_the_batch():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    other = x.copy()
    other[1:] = rng.uniform(0, 255, size=(3, 32, 32, 3))
    frn = models.resnet_cifar(8, norm="frn")
    np.testing.assert_allclose(frn(other, training=True)[0],
                               frn(x, training=True)[0], rtol=1e-5, atol=1e-5)
    # The BatchNorm network in training mode is not: the property is real.
    bn = models.resnet_cifar(8, norm="bn")
    assert not np.allclose(bn(other, training=True)[0],
                           bn(x, training=True)[0], atol=1e-3)


def test_registry_adds_a_norm_by_name_and_refuses_unknown_or_duplicates():
    models.register_norm_act(
        "frn_relu_test",
        norm=lambda axis: frn_keras.FilterResponseNormalization(axis=axis),
        act=lambda axis: keras.layers.ReLU(),
    )
    types = _layer_types(models.resnet_cifar(8, norm="frn_relu_test"))
    assert "FilterResponseNormalization" in types and "TLU" not in types
    assert "frn_relu_test" in models.available_norms()
    relu = models.norm_act("bn").act
    with pytest.raises(ValueError, match="already registered"):
        models.register_norm_act("frn", norm=relu, act=relu)
    assert models.norm_act("frn").act is not relu
    with pytest.raises(ValueError, match=r"Received: norm='nope'"):
        models.resnet_cifar(20, norm="nope")
    for bad, received in [
            (dict(name=""), r"name=''"), (dict(name=3), r"name=3"),
            (dict(norm=None), r"norm=None"),
            (dict(act="relu"), r"act='relu'")]:
        arguments = {"name": "bad_test", "norm": relu, "act": relu, **bad}
        with pytest.raises(ValueError, match=r"Received: " + received):
            models.register_norm_act(**arguments)
    assert "bad_test" not in models.available_norms()


@pytest.mark.parametrize("depth", [19, 6, 2, 20.0, True])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match=r"Received: depth="):
        models.resnet_cifar(depth)


@pytest.mark.parametrize("build", [models.resnet_cifar, models.resnet_v2_50])
def test_bad_num_classes_or_input_shape_raises(build):
    # Each would otherwise fail deep in Keras or TensorFlow (a broadcast of
    # the 3 channel means, a Dense `units`), not naming the argument.
    for num_classes in [0, -3, 2.0, True, None]:
        with pytest.raises(ValueError, match=rf"Received: num_classes="
                           rf"{num_classes!r}"):
            build(num_classes=num_classes)
    for input_shape in [(32, 32), (32, 32, 1), (3, 32, 32), (0, 32, 3),
                        (32.0, 32, 3), None]:
        with pytest.raises(ValueError, match=re.escape(
                f"Received: input_shape={input_shape!r}")):
            build(input_shape=input_shape)


def test_any_image_size_and_numpy_integers_are_accepted():
    model = models.resnet_cifar(8, num_classes=np.int64(4),
                                input_shape=(None, None, 3))
    assert model.input_shape == (None, None, None, 3)
    assert model(np.zeros((2, 40, 24, 3), np.float32)).shape == (2, 4)
    model = models.resnet_v2_50(num_classes=5,
                                input_shape=np.array([64, 48, 3]))
    assert model.input_shape == (None, 64, 48, 3)


def test_bad_data_format_raises():
    with pytest.raises(ValueError, match=r"Received: data_format='NCHW'"):
        models.resnet_v2_50(data_format="NCHW")


def test_frn_learns_epsilon_where_a_stage_is_one_position(tmp_path):
    # ResNetV2-50 at 32x32: its last stage is 1x1 (N = 1), where a fixed
    # small eps would give about sign(x); there, and only there, the "frn"
    # entry learns eps, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = models.resnet_v2_50(num_classes=3, input_shape=(32, 32, 3))
    frn = [layer for layer in model.layers
           if isinstance(layer, frn_keras.FilterResponseNormalization)]
    learned = {layer.name for layer in frn if layer.eps_learned is not None}
    one_position = {layer.name for layer in frn
                    if layer.input.shape[1:3] == (1, 1)}
    assert learned == one_position and len(learned) == 8
    # The fused model and a .keras round trip keep those weights.
    fused = frn_keras.fuse_frn_tlu(model)
    assert fused.count_params() == model.count_params()
    x = np.random.default_rng(19).uniform(0, 255, (2, 32, 32, 3))
    x = x.astype("float32")
    np.testing.assert_allclose(fused(x), model(x), rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "resnet_v2_50_32.keras")
    model.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path)(x), model(x))


def test_batch_norm_entry_has_its_documented_settings():
    # README's model-zoo table: momentum 0.9 and epsilon 1e-5 (the usual
    # ResNet settings, as in PyTorch), not Keras's 0.99 and 1e-3.
    model = models.resnet_cifar(8, norm="bn")
    settings = {(layer.momentum, layer.epsilon) for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)}
    assert settings == {(0.9, 1e-5)}


def test_group_norm_caps_groups_and_round_trips(tmp_path):
    model = models.resnet_cifar(8, norm="gn")
    groups = {layer.groups for layer in model.layers
              if isinstance(layer, models.CappedGroupNormalization)}
    assert groups == {16, 32}  # 16-channel stage: 16 groups; others 32
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("f4")
    _assert_keras_file_round_trip(model, x, tmp_path / "gn.keras")


def test_instance_norm_normalizes_each_sample_and_channel_over_its_positions(
        tmp_path):
    model = models.resnet_cifar(8, norm="in")
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.GroupNormalization)]
    assert len(norms) == _layer_types(
        models.resnet_cifar(8, norm="bn")).count("BatchNormalization")
    assert all(layer.groups == layer.gamma.shape[0] for layer in norms)
    rng = np.random.default_rng(4)
    for layer in norms:
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape)
                           for w in layer.get_weights()])
    x = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    # Each norm against a float64 reference on the activations it receives.
    probe = keras.Model(model.input, [(producer(layer).output, layer.output)
                                      for layer in norms])
    for layer, (h, out) in zip(norms, probe(x)):
        h = np.asarray(h, np.float64)
        mean = h.mean(axis=(1, 2), keepdims=True)
        var = h.var(axis=(1, 2), keepdims=True)
        gamma, beta = (np.asarray(w, np.float64) for w in layer.get_weights())
        want = gamma * (h - mean) / np.sqrt(var + layer.epsilon) + beta
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4,
                                   err_msg=layer.name)
    # No batch statistic: a sample's logits do not depend on its batch.
    other = x.copy()
    other[1:] = rng.uniform(0, 255, (2, 32, 32, 3))
    np.testing.assert_allclose(model(other, training=True)[0],
                               model(x, training=True)[0], rtol=1e-5, atol=1e-5)
    _assert_keras_file_round_trip(model, x, tmp_path / "in.keras")


def test_mixed_precision_model_gives_float32_logits():
    keras.config.set_dtype_policy("mixed_float16")
    model = models.resnet_cifar(8, norm="frn")
    out = model(np.full((1, 32, 32, 3), 128.0, "float32"))
    assert out.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("norm, groups", [("ln_pn", {1}), ("gn_pn", {4})])
def test_proxy_norm_entries_pair_an_affine_free_group_norm_with_pn_act(
        norm, groups, tmp_path):
    model = models.resnet_cifar(8, norm=norm)
    bn = _layer_types(models.resnet_cifar(8, norm="bn"))
    types = _layer_types(model)
    assert types.count("ProxyNormalization") == bn.count("ReLU")
    assert "ReLU" not in types
    norms = [layer for layer in model.layers
             if isinstance(layer, models.CappedGroupNormalization)]
    assert len(norms) == bn.count("BatchNormalization")
    assert {layer.groups for layer in norms} == groups
    assert not any(layer.center or layer.scale for layer in norms)
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("f4")
    _assert_keras_file_round_trip(model, x, tmp_path / "pn.keras")


@pytest.mark.parametrize("norm", ["frn", "bn", "gn", "ln", "in"])
def test_no_model_uses_proxy_normalization_unless_asked(norm):
    # PN is patented (see ProxyNormalization); only the *_pn names use it.
    assert "ProxyNormalization" not in _layer_types(
        models.resnet_cifar(8, norm=norm))
    assert "ProxyNormalization" not in _layer_types(
        frn_keras.convert_to_frn(models.resnet_cifar(8, norm="bn")))
