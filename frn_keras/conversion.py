"""Conversion of BatchNormalization models to FRN + TLU."""

import keras

from frn_keras._graph import check_graph_model
from frn_keras._graph import producer
from frn_keras.layers import TLU
from frn_keras.layers import FilterResponseNormalization


# A layer's name, dtype policy and `trainable` carry over to its
# replacement; from BatchNorm, also what applies to its gamma and beta.
_KEPT_FROM_EVERY_LAYER = ("name", "dtype", "trainable")
_KEPT_FROM_BATCH_NORM = _KEPT_FROM_EVERY_LAYER + (
    "center", "scale", "beta_regularizer", "gamma_regularizer",
    "beta_constraint", "gamma_constraint")


def convert_to_frn(model):
    """Returns a copy of `model` with every BatchNormalization made FRN.

    Each `BatchNormalization` becomes `FilterResponseNormalization` on the
    same channel axis (keeping its `gamma` and `beta`, their regularizers
    and constraints), and a ReLU layer (`ReLU()` or `Activation("relu")`)
    that directly follows it becomes `TLU`; each keeps the name, dtype
    policy and `trainable` of the layer it replaces. Every other layer, its
    weights and the graph are kept; nested Functional or Sequential models
    are converted too. The moving statistics of BatchNorm have no FRN
    counterpart, so fine-tune the converted model.

    A BatchNorm that sees one value per sample and channel (after `Dense`,
    or on a `(batch, 1, 1, C)` map: the paper's `N = 1` case) becomes an FRN
    with `learned_epsilon=True`, as the paper advises: with a fixed small
    epsilon, `x / sqrt(x ** 2 + eps)` is about `sign(x)` and such a layer
    would pass on little more than the signs of its inputs.

    Args:
        model: A Functional or Sequential `keras.Model`.

    Returns:
        A new model of the same kind; `model` is not changed.

    Raises:
        ValueError: for a subclassed model (its `call` is arbitrary Python,
            so its graph cannot be rebuilt).
    """
    check_graph_model(model, "convert_to_frn")
    # Keras 3's BatchNormalization has a single (int) channel axis.
    bn_axes = {layer.name: layer.axis for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization)}
    relu_axes = {}
    for layer in model.layers:
        source = producer(layer) if _is_relu(layer) else None
        if source is not None and source.name in bn_axes:
            relu_axes[layer.name] = bn_axes[source.name]

    def clone(layer):
        if isinstance(layer, keras.Model):
            return convert_to_frn(layer)
        config = layer.get_config()
        if layer.name in bn_axes:
            return FilterResponseNormalization(
                axis=bn_axes[layer.name],
                learned_epsilon=_one_position_per_channel(layer),
                **{key: config[key] for key in _KEPT_FROM_BATCH_NORM},
            )
        if layer.name in relu_axes:
            return TLU(axis=relu_axes[layer.name],
                       **{key: config[key] for key in _KEPT_FROM_EVERY_LAYER})
        return type(layer).from_config(config)

    def call(layer, *args, **kwargs):
        if isinstance(layer, (FilterResponseNormalization, TLU)):
            # BatchNorm's `training` means nothing here; its `mask` leaves
            # padding out of FRN's statistics as it did of BatchNorm's.
            kwargs.pop("training", None)
            if isinstance(layer, TLU):
                kwargs.pop("mask", None)
        return layer(*args, **kwargs)

    # A Sequential model calls each layer on its input alone.
    replay = {} if isinstance(model, keras.Sequential) else {
        "call_function": call}
    converted = keras.models.clone_model(model, clone_function=clone, **replay)
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.Model):
            continue  # nothing to copy, or copied by the nested conversion
        target = converted.get_layer(layer.name)
        if layer.name in bn_axes:
            for name in ("gamma", "beta"):  # eps_learned keeps its start
                if getattr(layer, name) is not None:
                    getattr(target, name).assign(getattr(layer, name))
        else:
            target.set_weights(layer.get_weights())
    return converted


def _one_position_per_channel(batch_norm):
    """Whether a built BatchNorm's input has one value per sample and
    channel: no axis but the batch and channel axes is longer than 1 (an
    unknown size counts as longer)."""
    shape = (batch_norm.get_build_config() or {}).get("input_shape")
    if not shape:
        return False
    channel_axis = batch_norm.axis % len(shape)
    return all(size == 1 for axis, size in enumerate(shape)
               if axis not in (0, channel_axis))


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return not config.get("max_value") and not config.get(
            "negative_slope") and not config.get("threshold")
    return isinstance(layer, keras.layers.Activation) and (
        layer.get_config()["activation"] == "relu"
    )
