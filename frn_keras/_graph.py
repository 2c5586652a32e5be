"""What the model rewrites (`convert_to_frn`, `fuse_frn_tlu`,
`fold_frn_offsets`) need to read a Functional or Sequential model's graph."""

import keras


def check_graph_model(model, rewrite):
    """Raises a ValueError naming `rewrite` unless `model` is Functional or
    Sequential: a subclassed model's `call` is arbitrary Python, so its graph
    cannot be rebuilt."""
    if is_graph_model(model):
        return
    raise ValueError(
        f"{rewrite} needs a Functional or Sequential model; a subclassed "
        "model's custom `call` cannot be rebuilt. Received: model of type "
        f"{type(model).__name__}"
    )


def is_graph_model(model):
    """Whether `model` is Functional or Sequential (its graph can be read
    and rebuilt)."""
    # keras.Model(inputs, outputs) builds a `Functional` instance.
    return isinstance(model, keras.Sequential) or (
        type(model).__name__ == "Functional")


def producer(tensor_or_layer):
    """The layer that made a symbolic tensor, or the layer whose output a
    layer takes (None when it takes several inputs or was never called)."""
    tensor = tensor_or_layer
    if isinstance(tensor_or_layer, keras.layers.Layer):
        try:
            tensor = tensor_or_layer.input
        except (AttributeError, ValueError):
            return None
    if isinstance(tensor, (list, tuple)):
        return None
    return tensor._keras_history.operation


def readers_of(layer):
    """The layers that take `layer`'s output (from every call of it)."""
    return [node.operation for node in layer._outbound_nodes]
