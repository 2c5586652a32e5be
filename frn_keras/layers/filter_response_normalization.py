"""The `FilterResponseNormalization` layer."""

import math
import numbers
import warnings

import keras
import numpy as np
from keras import constraints
from keras import initializers
from keras import ops

from frn_keras.layers._affine import add_affine_weights
from frn_keras.layers._affine import affine_config
from frn_keras.layers._affine import set_affine_arguments
from frn_keras.layers._arguments import check_positive_float
from frn_keras.layers._channel_axis import broadcast_shape
from frn_keras.layers._channel_axis import check_axis_argument
from frn_keras.layers._channel_axis import per_channel
from frn_keras.layers._channel_axis import resolve_channel_axis
from frn_keras.layers._dtypes import check_float_policy
from frn_keras.layers._dtypes import statistics_dtype
from frn_keras.layers._frn_math import filter_response_normalize


@keras.saving.register_keras_serializable(package="frn_keras")
class FilterResponseNormalization(keras.layers.Layer):
    """Filter Response Normalization (FRN) layer.

    FRN normalizes each channel of each sample by the root mean square of
    its responses over the spatial axes, with no mean subtraction and no
    batch statistics:

    ```
    nu2 = mean(x ** 2, axis=spatial_axes)       # per sample, per channel
    y = gamma * x / sqrt(nu2 + eps) + beta
    ```

    Every axis except the batch axis `0` and the channel `axis` is averaged
    over. Because nothing is shared between the samples of a batch, the
    output of each sample is independent of the rest of its batch, there are
    no moving averages, and training and inference compute the same
    function. This makes FRN a drop-in replacement for BatchNormalization
    when the per-device batch is small (detection, segmentation, video,
    large models). Follow it with `TLU`, which the paper pairs with it in
    place of ReLU, or use `FilterResponseNormalizationTLU`, the two in one
    layer.

    For inputs with one value per channel (rank 2, e.g. after `Dense`, the
    paper's `N = 1` case) `nu2 = x ** 2` and the output is close to
    `gamma * sign(x) + beta` unless `eps` is large enough; the paper's advice
    there is `learned_epsilon=True`, which learns
    `eps = epsilon + |eps_learned|`. `learned_epsilon="auto"` learns it
    exactly where the layer is built on such an input (rank 2, or every
    spatial size 1); built there with `learned_epsilon=False`, the layer
    warns.

    Under mixed precision (`"mixed_float16"`, `"mixed_bfloat16"`) the weights
    stay in float32, the statistics and the normalization are computed in
    float32, and the output is cast to the layer's compute dtype, so large
    float16 activations (where a float16 `mean(x ** 2)` would overflow) give
    finite, accurate results.

    With a mask (from `Embedding(mask_zero=True)`, `Masking`, or passed as
    `mask=`), the statistics count only the positions where the mask is
    true, as BatchNormalization's do: padding leaves the output at the other
    positions unchanged. Every position is still normalized with those
    statistics (a sample with no position left gets `nu2 = 0`), and the
    mask passes on to the next layer.

    Example:

    >>> x = np.random.rand(2, 8, 8, 16).astype("float32")
    >>> frn = frn_keras.FilterResponseNormalization()
    >>> y = frn_keras.TLU()(frn(x))
    >>> y.shape
    TensorShape([2, 8, 8, 16])

    Args:
        axis: Integer, the channel axis. Statistics are taken over every
            axis except the batch axis `0` and `axis`. Use `1` for
            channels-first data. Defaults to `-1`.
        epsilon: Small float > 0 added to `nu2` to avoid dividing by zero.
            Defaults to `1e-6`.
        learned_epsilon: If `True`, add a trainable scalar `eps_learned` and
            use `eps = epsilon + |eps_learned|`. Recommended for rank-2 inputs.
            `"auto"`: `True` if the layer is built on one value per sample
            and channel (rank 2, or every spatial size 1), else `False`.
            Defaults to `False`.
        learned_epsilon_initializer: Float > 0 (the initial value) or
            initializer for `eps_learned`; not zero, where
            `|eps_learned|` has no gradient. Defaults to `1e-4`.
        learned_epsilon_constraint: Optional constraint for `eps_learned`.
            Defaults to `None`.
        center: If `True`, add the offset `beta`. Defaults to `True`.
        scale: If `True`, multiply by `gamma`. Defaults to `True`.
        beta_initializer: Initializer for `beta`. Defaults to `"zeros"`.
        gamma_initializer: Initializer for `gamma`. Defaults to `"ones"`.
        beta_regularizer: Optional regularizer for `beta`. Defaults to `None`.
        gamma_regularizer: Optional regularizer for `gamma`.
            Defaults to `None`.
        beta_constraint: Optional constraint for `beta`. Defaults to `None`.
        gamma_constraint: Optional constraint for `gamma`. Defaults to `None`.
        **kwargs: Base layer keyword arguments (e.g. `name` and `dtype`).

    Call arguments:
        inputs: Input tensor.
        mask: Optional boolean tensor of the input's shape without its
            channel axis (e.g. `(batch, steps)` for `(batch, steps, C)`):
            the positions that count in the statistics.

    Input shape:
        Arbitrary, of rank >= 2 with a known channel dimension: e.g.
        `(batch, channels)`, `(batch, steps, channels)`,
        `(batch, height, width, channels)` or
        `(batch, depth, height, width, channels)`, or channels-first with
        `axis=1`.

    Output shape:
        Same shape as input.

    Weights:
        `gamma` and `beta` of shape `(channels,)` (when `scale` / `center`),
        and `learned_epsilon` of shape `(1,)` (when `learned_epsilon`, or
        `"auto"` on one value per sample and channel).

    Reference:

    - [Singh & Krishnan, 2020](https://arxiv.org/abs/1911.09737), "Filter
      Response Normalization Layer: Eliminating Batch Dependence in the
      Training of Deep Neural Networks".
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-6,
        learned_epsilon=False,
        learned_epsilon_initializer=1e-4,
        learned_epsilon_constraint=None,
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
        if not isinstance(learned_epsilon, bool) and not (
                isinstance(learned_epsilon, str) and learned_epsilon == "auto"):
            raise ValueError(
                "Argument `learned_epsilon` must be a bool or \"auto\". "
                f"Received: learned_epsilon={learned_epsilon!r}")
        super().__init__(**kwargs)
        check_float_policy(self)
        # Statistics are computed in float32 (or wider) whatever the policy.
        self.autocast = False
        self.supports_masking = True
        self.axis = axis
        self.epsilon = epsilon
        self.learned_epsilon = learned_epsilon
        self.learned_epsilon_initializer = _epsilon_initializer(
            learned_epsilon_initializer, learned_epsilon
        )
        self.learned_epsilon_constraint = constraints.get(
            learned_epsilon_constraint
        )
        set_affine_arguments(
            self, center, scale, beta_initializer, gamma_initializer,
            beta_regularizer, gamma_regularizer, beta_constraint,
            gamma_constraint)

    def build(self, input_shape):
        axis, channels = resolve_channel_axis(
            self.axis, input_shape, self.name
        )
        rank = len(input_shape)
        self.input_spec = keras.layers.InputSpec(
            ndim=rank, axes={axis: channels}
        )
        # Channels-last / channels-first inputs are folded to
        # (batch, positions, C) / (batch, C, positions): one reduction axis,
        # which XLA compiles to faster loops than several spatial axes.
        self._folded_shape = None
        self._spatial_axes = tuple(i for i in range(1, rank) if i != axis)
        if rank > 3 and axis == rank - 1:
            self._folded_shape, rank, axis = (-1, channels), 3, 2
        elif rank > 3 and axis == 1:
            self._folded_shape, rank, axis = (channels, -1), 3, 1
        self._reduction_axes = tuple(
            i for i in range(1, rank) if i != axis
        )
        # The channel axis of the tensor normalized (the folded view, if any).
        self._folded_axis = axis
        self._broadcast_shape = broadcast_shape(rank, axis, channels)

        single_position = all(input_shape[i] == 1 for i in self._spatial_axes)
        if self.learned_epsilon is False and single_position:
            warnings.warn(
                f"Layer '{self.name}' normalizes a single value per sample "
                f"and channel (input_shape={tuple(input_shape)}: N = 1), "
                "where FRN computes about gamma * sign(x) + beta and passes "
                "almost no gradient to x unless epsilon is large. The "
                "paper learns epsilon there: pass learned_epsilon=True (or "
                "\"auto\").",
                UserWarning, stacklevel=2)
        add_affine_weights(self, channels)
        self.eps_learned = None
        if self.learned_epsilon is True or (
                self.learned_epsilon == "auto" and single_position):
            self.eps_learned = self.add_weight(
                shape=(1,),
                name="learned_epsilon",
                initializer=self.learned_epsilon_initializer,
                constraint=self.learned_epsilon_constraint,
            )

    def call(self, inputs, mask=None):
        return self._normalize(inputs, mask=mask)

    def _normalize(self, inputs, tau=None, mask=None):
        """FRN of `inputs`, followed by `max(., tau)` when `tau` (a weight
        of shape `(channels,)`) is given; with a `mask`, the statistics
        count only its true positions."""
        if mask is not None:
            self._check_mask(mask, inputs)
        # float16 would overflow in x ** 2 for |x| > 256: compute in float32.
        dtype = statistics_dtype(inputs.dtype)
        x = ops.cast(inputs, dtype)
        if self._folded_shape is not None:
            x = ops.reshape(x, self._folded(inputs))
        if mask is not None:
            mask = self._folded_mask(mask, inputs)
        outputs = filter_response_normalize(
            x,
            gamma=per_channel(self.gamma, dtype, self._broadcast_shape),
            beta=per_channel(self.beta, dtype, self._broadcast_shape),
            eps_learned=(None if self.eps_learned is None
                         else ops.cast(self.eps_learned, dtype)),
            epsilon=self.epsilon,
            axes=self._reduction_axes,
            tau=per_channel(tau, dtype, self._broadcast_shape),
            mask=mask,
        )
        if self._folded_shape is not None:
            # -1 stands for the batch size, which a reshape cannot infer
            # from an empty tensor (PyTorch raises).
            static = None not in inputs.shape[1:] and 0 not in inputs.shape
            outputs = ops.reshape(outputs, (-1, *inputs.shape[1:]) if static
                                  else ops.shape(inputs))
        return ops.cast(outputs, self.compute_dtype)

    def _check_mask(self, mask, inputs):
        """A mask has the input's shape without its channel axis, as Keras
        masks of sequences do (`(batch, steps)` for `(batch, steps, C)`)."""
        axis = self.axis % len(inputs.shape)
        expected = tuple(d for i, d in enumerate(inputs.shape) if i != axis)
        if len(mask.shape) != len(expected) or any(
                m is not None and e is not None and m != e
                for m, e in zip(mask.shape, expected)):
            raise ValueError(
                f"Layer '{self.name}': argument `mask` must have the input's "
                "shape without its channel axis, "
                f"{tuple(expected)}. Received: mask.shape="
                f"{tuple(mask.shape)}, inputs.shape={tuple(inputs.shape)}"
            )

    def _folded_mask(self, mask, inputs):
        """`mask` as booleans shaped like the (folded) input with a size-1
        channel axis."""
        mask = ops.cast(mask, "bool")
        if self._folded_shape is not None:
            mask = ops.reshape(mask, tuple(
                d for i, d in enumerate(self._folded(inputs))
                if i != self._folded_axis))
        return ops.expand_dims(mask, self._folded_axis)

    def _folded(self, inputs):
        """The folded shape of `inputs`: constant (one op in a graph) when
        its spatial sizes are known, else read at run time."""
        positions = 1
        for i in self._spatial_axes:
            if inputs.shape[i] is None:
                return (ops.shape(inputs)[0], *self._folded_shape)
            positions *= inputs.shape[i]
        folded = tuple(positions if d == -1 else d
                       for d in self._folded_shape)
        # As in `_normalize`: -1 cannot be inferred for an empty tensor.
        batch = ops.shape(inputs)[0] if 0 in inputs.shape else -1
        return (batch, *folded)

    def compute_output_shape(self, input_shape):
        resolve_channel_axis(self.axis, input_shape, self.name)
        return tuple(input_shape)

    def get_config(self):
        config = {
            "axis": self.axis,
            "epsilon": self.epsilon,
            "learned_epsilon": self.learned_epsilon,
            "learned_epsilon_initializer": initializers.serialize(
                self.learned_epsilon_initializer
            ),
            "learned_epsilon_constraint": constraints.serialize(
                self.learned_epsilon_constraint
            ),
            **affine_config(self),
        }
        base_config = super().get_config()
        return {**base_config, **config}


def _epsilon_initializer(value, learned):
    """A float initial value becomes a `Constant`; anything else a keras
    initializer. When `learned`, a zero start is refused: `|eps_learned|`
    has no gradient at 0, so `eps_learned` would stay at 0 and never train."""
    if isinstance(value, bool):
        raise ValueError(
            "Argument `learned_epsilon_initializer` must be a float > 0 or "
            f"an initializer. Received: learned_epsilon_initializer={value!r}"
        )
    if isinstance(value, numbers.Real):
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                "Argument `learned_epsilon_initializer` must be a finite "
                "float > 0 or an initializer. "
                f"Received: learned_epsilon_initializer={value!r}"
            )
        initializer = initializers.Constant(float(value))
    else:
        initializer = initializers.get(value)
    if learned and _starts_at_zero(initializer):
        raise ValueError(
            "Argument `learned_epsilon_initializer` must not start "
            "`eps_learned` at 0: `eps = epsilon + |eps_learned|` has no "
            "gradient there, so it would never train. Use a small value "
            "such as the default 1e-4, or `learned_epsilon=False` for a "
            "fixed epsilon. "
            f"Received: learned_epsilon_initializer={value!r}"
        )
    return initializer


def _starts_at_zero(initializer):
    if isinstance(initializer, initializers.Zeros):
        return True
    return isinstance(initializer, initializers.Constant) and bool(
        np.all(np.asarray(initializer.value) == 0))
