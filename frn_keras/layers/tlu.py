"""The `TLU` (Thresholded Linear Unit) layer."""

import keras
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from frn_keras.layers._arguments import check_bool
from frn_keras.layers._channel_axis import broadcast_shape
from frn_keras.layers._channel_axis import check_axis_argument
from frn_keras.layers._channel_axis import per_channel
from frn_keras.layers._channel_axis import resolve_channel_axis
from frn_keras.layers._dtypes import check_float_policy
from frn_keras.layers._tlu_math import thresholded_linear


@keras.saving.register_keras_serializable(package="frn_keras")
class TLU(keras.layers.Layer):
    """Thresholded Linear Unit, the activation paired with FRN.

    A ReLU with a learned threshold `tau` per channel:

    ```
    z = max(x, tau)                  # affine=False
    z = max(x, alpha * x + tau)      # affine=True ("Affine-TLU")
    ```

    FRN does not subtract the mean, so its output can be shifted away from
    zero arbitrarily; a learned threshold lets the activation follow it. With
    `tau = 0` (the default initial value) `TLU` is exactly ReLU.

    Example:

    >>> x = np.random.randn(2, 8, 8, 16).astype("float32")
    >>> frn_keras.TLU()(x).shape
    TensorShape([2, 8, 8, 16])

    Args:
        axis: Integer, the channel axis; `tau` and `alpha` hold one value per
            channel. Use `1` for channels-first data. Defaults to `-1`.
        affine: If `True`, compute `max(x, alpha * x + tau)` with a learned
            `alpha` per channel. Defaults to `False`.
        tau_initializer: Initializer for `tau`. Defaults to `"zeros"`.
        tau_regularizer: Optional regularizer for `tau`. Defaults to `None`.
        tau_constraint: Optional constraint for `tau`. Defaults to `None`.
        alpha_initializer: Initializer for `alpha` (when `affine`).
            Defaults to `"zeros"`.
        alpha_regularizer: Optional regularizer for `alpha`.
            Defaults to `None`.
        alpha_constraint: Optional constraint for `alpha`. Defaults to `None`.
        **kwargs: Base layer keyword arguments (e.g. `name` and `dtype`).

    Input shape:
        Arbitrary, of rank >= 2 with a known channel dimension.

    Output shape:
        Same shape as input. Integer inputs give outputs in the layer's
        compute dtype (`tau` is not truncated to an integer).

    Weights:
        `tau` (and `alpha` when `affine`) of shape `(channels,)`.

    Reference:

    - [Singh & Krishnan, 2020](https://arxiv.org/abs/1911.09737), "Filter
      Response Normalization Layer: Eliminating Batch Dependence in the
      Training of Deep Neural Networks".
    """

    def __init__(
        self,
        axis=-1,
        affine=False,
        tau_initializer="zeros",
        tau_regularizer=None,
        tau_constraint=None,
        alpha_initializer="zeros",
        alpha_regularizer=None,
        alpha_constraint=None,
        **kwargs,
    ):
        axis = check_axis_argument(axis)
        check_bool("affine", affine)
        super().__init__(**kwargs)
        check_float_policy(self)
        self.supports_masking = True
        self.axis = axis
        self.affine = affine
        self.tau_initializer = initializers.get(tau_initializer)
        self.tau_regularizer = regularizers.get(tau_regularizer)
        self.tau_constraint = constraints.get(tau_constraint)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)

    def build(self, input_shape):
        axis, channels = resolve_channel_axis(
            self.axis, input_shape, self.name
        )
        rank = len(input_shape)
        self._channel_axis = axis
        self.input_spec = keras.layers.InputSpec(
            ndim=rank, axes={axis: channels}
        )
        self._broadcast_shape = broadcast_shape(rank, axis, channels)
        self.tau = self.add_weight(
            shape=(channels,),
            name="tau",
            initializer=self.tau_initializer,
            regularizer=self.tau_regularizer,
            constraint=self.tau_constraint,
        )
        self.alpha = None
        if self.affine:
            self.alpha = self.add_weight(
                shape=(channels,),
                name="alpha",
                initializer=self.alpha_initializer,
                regularizer=self.alpha_regularizer,
                constraint=self.alpha_constraint,
            )

    def call(self, inputs):
        if not keras.backend.is_float_dtype(inputs.dtype):
            # Keras casts only float inputs to the compute dtype; in an
            # integer dtype, tau and alpha would be truncated.
            inputs = ops.cast(inputs, self.compute_dtype)
        tau = per_channel(self.tau, inputs.dtype, self._broadcast_shape)
        if self.alpha is None:
            outputs = thresholded_linear(inputs, tau, self._channel_axis)
        else:
            alpha = per_channel(self.alpha, inputs.dtype,
                                self._broadcast_shape)
            outputs = ops.maximum(inputs, alpha * inputs + tau)
        # Keras' `maximum` under PyTorch returns float32 for float64
        # (keras-team/keras#23704); elsewhere this cast adds no op.
        return ops.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        resolve_channel_axis(self.axis, input_shape, self.name)
        return tuple(input_shape)

    def get_config(self):
        config = {
            "axis": self.axis,
            "affine": self.affine,
            "tau_initializer": initializers.serialize(self.tau_initializer),
            "tau_regularizer": regularizers.serialize(self.tau_regularizer),
            "tau_constraint": constraints.serialize(self.tau_constraint),
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
        }
        base_config = super().get_config()
        return {**base_config, **config}
