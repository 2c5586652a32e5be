"""The `ProxyNormalization` layer (PN-Act)."""

import statistics

import keras
import numpy as np
from keras import activations
from keras import ops

from frn_keras.layers._affine import add_affine_weights
from frn_keras.layers._affine import affine_config
from frn_keras.layers._affine import set_affine_arguments
from frn_keras.layers._arguments import check_bool
from frn_keras.layers._arguments import check_positive_float
from frn_keras.layers._channel_axis import broadcast_shape
from frn_keras.layers._channel_axis import check_axis_argument
from frn_keras.layers._channel_axis import resolve_channel_axis
from frn_keras.layers._dtypes import check_float_policy
from frn_keras.layers._dtypes import statistics_dtype

# Activations that mix positions or channels: the proxy is per channel, so
# only elementwise activations are meaningful.
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


@keras.saving.register_keras_serializable(package="frn_keras")
class ProxyNormalization(keras.layers.Layer):
    """Proxy Normalization (PN-Act): an activation that keeps its output
    normalized, for use after LayerNorm or GroupNorm with few groups.

    Patent notice: Graphcore holds a patent on this training method
    (US 12,430,552, granted 2025-09-30; WO2023052547A1). frn_keras never uses
    this layer unless you ask for it (`ProxyNormalization(...)` or the model
    registry's `"ln_pn"` / `"gn_pn"`); check the patent's status and terms for
    your use before you do.

    LayerNorm and GroupNorm normalize over groups of channels, so a single
    channel of their output is not centered or scaled, and after the
    activation the channels drift further from zero mean and unit variance.
    PN-Act applies the affine and the activation, then normalizes each
    channel by the mean and variance that the same affine + activation give
    on a *proxy* input that is exactly normal:

    ```
    y_proxy = (1 + proxy_scale) * r + proxy_shift     # r ~ N(0, 1)
    m, v = mean, variance of activation(gamma * y_proxy + beta)
    z = (activation(gamma * y + beta) - m) / sqrt(v + epsilon)
    ```

    `m` and `v` are computed per channel from `num_quantiles` fixed points,
    the midpoint quantiles `r_i = Phi^-1((i + 1/2) / n)` of N(0, 1) (as in
    the authors' implementation, with n = 200), so they are deterministic,
    differentiable in `gamma`, `beta` and the proxy weights, identical on
    every replica, and independent of the batch. They are computed in
    float32 (or wider) whatever the dtype policy.

    Use it in place of the activation, after a LayerNorm / GroupNorm whose
    own `center` and `scale` are off (this layer holds `gamma` and `beta`):

    >>> x = keras.Input((8, 8, 16))
    >>> y = keras.layers.GroupNormalization(4, center=False, scale=False)(x)
    >>> z = frn_keras.layers.ProxyNormalization(activation="relu")(y)

    Args:
        axis: Integer, the channel axis; every weight holds one value per
            channel. Use `1` for channels-first data. Defaults to `-1`.
        activation: An elementwise activation (name or callable), e.g.
            `"relu"`, `"gelu"`, `"silu"`. Defaults to `"relu"`.
        epsilon: Float > 0 added to the proxy variance. Defaults to `0.03`,
            the authors' value.
        num_quantiles: Integer >= 2, the number of normal quantiles the
            proxy moments are computed from. Defaults to `200`.
        proxy_affine: If `True`, learn `proxy_scale` and `proxy_shift`
            (initialized to zero), as the authors do. Defaults to `True`.
        center: If `True`, add the offset `beta` before the activation.
            Defaults to `True`.
        scale: If `True`, multiply by `gamma` before the activation.
            Defaults to `True`.
        beta_initializer: Initializer for `beta`. Defaults to `"zeros"`.
        gamma_initializer: Initializer for `gamma`. Defaults to `"ones"`.
        beta_regularizer: Optional regularizer for `beta`. Defaults to `None`.
        gamma_regularizer: Optional regularizer for `gamma`.
            Defaults to `None`.
        beta_constraint: Optional constraint for `beta`. Defaults to `None`.
        gamma_constraint: Optional constraint for `gamma`. Defaults to `None`.
        **kwargs: Base layer keyword arguments (e.g. `name` and `dtype`).

    Input shape:
        Arbitrary, of rank >= 2 with a known channel dimension.

    Output shape:
        Same shape as input.

    Weights:
        `gamma`, `beta` (when `scale` / `center`) and `proxy_scale`,
        `proxy_shift` (when `proxy_affine`), each of shape `(channels,)`.

    Reference:

    - [Labatie et al., 2021](https://arxiv.org/abs/2106.03743), "Proxy-
      Normalizing Activations to Match Batch Normalization while Removing
      Batch Dependence" (NeurIPS 2021).
    """

    def __init__(
        self,
        axis=-1,
        activation="relu",
        epsilon=0.03,
        num_quantiles=200,
        proxy_affine=True,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        axis = check_axis_argument(axis)
        epsilon = check_positive_float("epsilon", epsilon)
        if (
            isinstance(num_quantiles, bool)
            or not isinstance(num_quantiles, int)
            or num_quantiles < 2
        ):
            raise ValueError(
                "Argument `num_quantiles` must be an integer >= 2. "
                f"Received: num_quantiles={num_quantiles!r}"
            )
        check_bool("proxy_affine", proxy_affine)
        activation_fn = _elementwise_activation(activation)
        super().__init__(**kwargs)
        check_float_policy(self)
        # The proxy moments are computed in float32 (or wider).
        self.autocast = False
        self.supports_masking = True
        self.axis = axis
        self.activation = activation_fn
        self.epsilon = epsilon
        self.num_quantiles = num_quantiles
        self.proxy_affine = proxy_affine
        set_affine_arguments(
            self, center, scale, beta_initializer, gamma_initializer,
            beta_regularizer, gamma_regularizer, beta_constraint,
            gamma_constraint)
        self._quantiles = normal_quantiles(num_quantiles)

    def build(self, input_shape):
        axis, channels = resolve_channel_axis(
            self.axis, input_shape, self.name
        )
        rank = len(input_shape)
        self.input_spec = keras.layers.InputSpec(
            ndim=rank, axes={axis: channels}
        )
        self._channels = channels
        self._broadcast_shape = broadcast_shape(rank, axis, channels)
        add_affine_weights(self, channels)
        self.proxy_scale = self.proxy_shift = None
        if self.proxy_affine:
            self.proxy_scale = self.add_weight(
                shape=(channels,), name="proxy_scale", initializer="zeros"
            )
            self.proxy_shift = self.add_weight(
                shape=(channels,), name="proxy_shift", initializer="zeros"
            )

    def call(self, inputs):
        dtype = statistics_dtype(inputs.dtype)
        mean, variance = self.proxy_moments(dtype)
        x = self._affine(ops.cast(inputs, dtype), self._broadcast_shape, dtype)
        mean = ops.reshape(mean, self._broadcast_shape)
        inv_std = ops.rsqrt(ops.reshape(variance, self._broadcast_shape)
                            + self.epsilon)
        outputs = (self.activation(x) - mean) * inv_std
        return ops.cast(outputs, self.compute_dtype)

    def proxy_moments(self, dtype="float32"):
        """Returns `(mean, variance)`, each of shape `(channels,)`: the
        moments of `activation(gamma * y_proxy + beta)` over the proxy's
        quantiles (population variance)."""
        proxy = ops.reshape(ops.convert_to_tensor(self._quantiles, dtype),
                            (-1, 1))
        if self.proxy_affine:
            scale = 1.0 + ops.cast(self.proxy_scale, dtype)
            proxy = scale * proxy + ops.cast(self.proxy_shift, dtype)
        proxy = self.activation(
            self._affine(proxy, (1, self._channels), dtype))
        # sum / n, not ops.mean: under JAX and PyTorch ops.mean reduces
        # float64 in float32.
        n = float(self.num_quantiles)
        mean = ops.sum(proxy, axis=0) / n
        variance = ops.sum(ops.square(proxy - mean), axis=0) / n
        # Without per-channel weights every channel has the same moments.
        shape = (self._channels,)
        return ops.broadcast_to(mean, shape), ops.broadcast_to(variance, shape)

    def _affine(self, x, shape, dtype):
        if self.gamma is not None:
            x = x * ops.reshape(ops.cast(self.gamma, dtype), shape)
        if self.beta is not None:
            x = x + ops.reshape(ops.cast(self.beta, dtype), shape)
        return x

    def compute_output_shape(self, input_shape):
        resolve_channel_axis(self.axis, input_shape, self.name)
        return tuple(input_shape)

    def get_config(self):
        config = {
            "axis": self.axis,
            "activation": activations.serialize(self.activation),
            "epsilon": self.epsilon,
            "num_quantiles": self.num_quantiles,
            "proxy_affine": self.proxy_affine,
            **affine_config(self),
        }
        base_config = super().get_config()
        return {**base_config, **config}


def normal_quantiles(n):
    """The `n` midpoint quantiles `Phi^-1((i + 1/2) / n)` of N(0, 1), float64."""
    dist = statistics.NormalDist()
    return np.array([dist.inv_cdf((i + 0.5) / n) for i in range(n)])


def _elementwise_activation(activation):
    try:
        fn = activations.get(activation)
    except ValueError as error:
        raise ValueError(
            "Argument `activation` must be the name of a keras activation or "
            f"a callable. Received: activation={activation!r}"
        ) from error
    if getattr(fn, "__name__", None) in _NOT_ELEMENTWISE:
        raise ValueError(
            "Argument `activation` must be elementwise; the proxy moments are "
            f"per channel. Received: activation={activation!r}"
        )
    return fn
