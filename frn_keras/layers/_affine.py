"""The per-channel `gamma` (scale) and `beta` (offset) weights, with their
arguments and config keys, shared by FRN and ProxyNormalization."""

from keras import constraints
from keras import initializers
from keras import regularizers

from frn_keras.layers._arguments import check_bool


def set_affine_arguments(layer, center, scale, beta_initializer,
                         gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint,
                         gamma_constraint):
    """Checks and stores the constructor arguments on `layer`."""
    layer.center = check_bool("center", center)
    layer.scale = check_bool("scale", scale)
    layer.beta_initializer = initializers.get(beta_initializer)
    layer.gamma_initializer = initializers.get(gamma_initializer)
    layer.beta_regularizer = regularizers.get(beta_regularizer)
    layer.gamma_regularizer = regularizers.get(gamma_regularizer)
    layer.beta_constraint = constraints.get(beta_constraint)
    layer.gamma_constraint = constraints.get(gamma_constraint)


def add_affine_weights(layer, channels):
    """Sets `layer.gamma` and `layer.beta` (in that order), each of shape
    `(channels,)`, or `None` where `scale` / `center` is off."""
    layer.gamma = None
    if layer.scale:
        layer.gamma = layer.add_weight(
            shape=(channels,),
            name="gamma",
            initializer=layer.gamma_initializer,
            regularizer=layer.gamma_regularizer,
            constraint=layer.gamma_constraint,
        )
    layer.beta = None
    if layer.center:
        layer.beta = layer.add_weight(
            shape=(channels,),
            name="beta",
            initializer=layer.beta_initializer,
            regularizer=layer.beta_regularizer,
            constraint=layer.beta_constraint,
        )


def affine_config(layer):
    """The config entries of the arguments `set_affine_arguments` stored."""
    return {
        "center": layer.center,
        "scale": layer.scale,
        "beta_initializer": initializers.serialize(layer.beta_initializer),
        "gamma_initializer": initializers.serialize(layer.gamma_initializer),
        "beta_regularizer": regularizers.serialize(layer.beta_regularizer),
        "gamma_regularizer": regularizers.serialize(layer.gamma_regularizer),
        "beta_constraint": constraints.serialize(layer.beta_constraint),
        "gamma_constraint": constraints.serialize(layer.gamma_constraint),
    }
