"""Folding FRN offsets into the layers that read them, for serving."""

import keras
import numpy as np

from frn_keras._graph import check_graph_model
from frn_keras._graph import is_graph_model
from frn_keras._graph import producer
from frn_keras._graph import readers_of
from frn_keras.fusion import _same_channel_axis
from frn_keras.layers import TLU
from frn_keras.layers import FilterResponseNormalization
from frn_keras.layers import FilterResponseNormalizationTLU

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def fold_frn_offsets(model):
    """Returns a copy of `model` for inference with FRN offsets folded away.

    FRN's offset `beta` costs a full pass over the activations (`y + beta`),
    and a served graph cannot fuse it into anything. When an FRN's output
    (or that of the plain TLU that follows it) goes only to layers that mix
    channels position by position, the offset can move past them: a `Dense`
    on the channel axis, or a 1-D/2-D/3-D convolution with a kernel of size
    1 (which pads nothing) and `groups=1`. For such a layer `L` with kernel
    `K`,

    ```
    L(max(x * s + beta, tau)) = L'(max(x * s, tau - beta)),
    L' = L with bias + K^T beta
    ```

    so the copy's FRN has `center=False`, its TLU (fused or not) has
    `tau - beta`, and the readers have `use_bias=True` and the new bias.
    That removes one elementwise pass per folded FRN from the served graph
    (in ResNetV2-50, 32 of its 49 FRN layers feed 1x1 convolutions only),
    the way BatchNorm folds into the convolution before it. FRN layers whose
    output goes anywhere else (a 3x3 convolution, whose zero padding the
    offset cannot cross; an addition; the model's outputs) keep `beta`.

    The copy computes `model`'s function up to float rounding. It is meant
    to be served, not trained: `beta` is gone and weight decay on the new
    biases would differ. Nested Functional or Sequential models are folded
    too. `frn_keras.export.export_for_serving` serves this copy by default.

    Args:
        model: A built Functional or Sequential `keras.Model`.

    Returns:
        A new model of the same kind, not compiled; `model` is not changed.

    Raises:
        ValueError: for a subclassed model (its `call` is arbitrary Python,
            so its graph cannot be rebuilt) or a model that is not built
            (it has no weights to fold).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 16)),
    ...     frn_keras.FilterResponseNormalizationTLU(),
    ...     keras.layers.Conv2D(32, 1),
    ... ])
    >>> served = frn_keras.fold_frn_offsets(model)
    >>> served.layers[0].center
    False
    """
    check_graph_model(model, "fold_frn_offsets")
    if not model.built:
        raise ValueError(
            "fold_frn_offsets needs a built model (it folds weights). "
            f"Received: model={model.name!r}, which is not built"
        )
    folds = _offset_folds(model)
    tlus = {chain.tlu.name: chain.frn for chain in folds.values()
            if chain.tlu is not None}
    readers = {reader.name: chain.frn for chain in folds.values()
               for reader in chain.readers}

    def clone(layer):
        if isinstance(layer, keras.Model):
            return fold_frn_offsets(layer)
        config = layer.get_config()
        if layer.name in folds:
            config["center"] = False
        if layer.name in readers:
            config["use_bias"] = True
        return type(layer).from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.Model):
            continue  # nothing to copy, or copied by the nested call
        values = {w.name: keras.ops.convert_to_numpy(w)
                  for w in layer.weights}
        if layer.name in folds:
            beta = values.pop("beta")
            if "tau" in values:  # FilterResponseNormalizationTLU
                values["tau"] = values["tau"] - beta
        elif layer.name in tlus:
            values["tau"] = values["tau"] - _beta(tlus[layer.name])
        elif layer.name in readers:
            values["bias"] = _folded_bias(layer, _beta(readers[layer.name]))
        target = folded.get_layer(layer.name)
        target.set_weights([values[w.name] for w in target.weights])
    return folded


def has_frn_offsets_to_fold(model):
    """Whether `fold_frn_offsets(model)` would fold anything: `model` (or a
    model nested in it) is a built Functional or Sequential model with an
    FRN whose offset can fold."""
    if not (is_graph_model(model) and model.built):
        return False
    return bool(_offset_folds(model)) or any(
        has_frn_offsets_to_fold(layer) for layer in model.layers
        if isinstance(layer, keras.Model))


class _Chain:
    """An FRN layer, the plain TLU after it (or None) and the layers that
    read their output."""

    def __init__(self, frn, tlu, readers):
        self.frn, self.tlu, self.readers = frn, tlu, readers


def _offset_folds(model):
    """`{frn name: _Chain}` for the FRN offsets of `model` that can fold."""
    if isinstance(model, keras.Sequential):
        following = {
            id(layer): [after]
            for layer, after in zip(model.layers, model.layers[1:])
        }
        outputs = {id(model.layers[-1])} if model.layers else set()
    else:
        in_model = {id(layer) for layer in model.layers}
        following = {id(layer): _readers(layer, in_model)
                     for layer in model.layers}
        outputs = {id(producer(t)) for t in model.outputs}
    folds = {}
    for frn in model.layers:
        if not (type(frn) in (FilterResponseNormalization,
                              FilterResponseNormalizationTLU)
                and frn.center and len(frn._inbound_nodes) == 1
                and id(frn) not in outputs):
            continue
        rank = frn.input_spec.ndim
        channel_axis = frn.axis % rank
        chain = _Chain(frn, None, following.get(id(frn), []))
        if (type(frn) is FilterResponseNormalization
                and len(chain.readers) == 1
                and _plain_tlu_after(frn, chain.readers[0])):
            chain.tlu = chain.readers[0]
            if id(chain.tlu) in outputs:
                continue
            chain.readers = following.get(id(chain.tlu), [])
        if chain.readers and all(
                _reads_channels_linearly(reader, rank, channel_axis)
                for reader in chain.readers):
            folds[frn.name] = chain
    return folds


def _readers(layer, in_model):
    """The layers of a Functional model (`in_model`: their ids) that take
    `layer`'s output; none when another model's layer takes it too."""
    if len(layer._inbound_nodes) != 1:
        return []  # a layer called more than once is left as it is
    readers = readers_of(layer)
    if any(id(reader) not in in_model for reader in readers):
        return []  # read by a layer of another model: leave it as it is
    return readers


def _plain_tlu_after(frn, layer):
    return (type(layer) is TLU and not layer.affine
            and len(layer._inbound_nodes) == 1
            and _same_channel_axis(frn, layer))


def _reads_channels_linearly(layer, rank, channel_axis):
    """Whether `layer` is `bias + K^T v` at each position `v` of its input's
    channel axis `channel_axis` (a Dense, or a convolution with a kernel of
    size 1), so that a per-channel offset of its input folds into its bias."""
    if len(layer._inbound_nodes) != 1 or (
            layer.dtype_policy.quantization_mode is not None):
        return False
    if type(layer) is keras.layers.Dense:
        return channel_axis == rank - 1
    if type(layer) in _CONVOLUTIONS:
        layer_axis = rank - 1 if layer.data_format == "channels_last" else 1
        return (all(k == 1 for k in layer.kernel_size) and layer.groups == 1
                and layer_axis == channel_axis)
    return False


def _beta(frn):
    return keras.ops.convert_to_numpy(frn.beta)


def _folded_bias(layer, beta):
    """`layer`'s bias plus `K^T beta`, in float64 then the bias's dtype."""
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    bias = (keras.ops.convert_to_numpy(layer.bias) if layer.use_bias
            else np.zeros(kernel.shape[-1]))
    return (bias + beta.astype(np.float64) @ kernel).astype(layer.variable_dtype)
