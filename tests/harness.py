"""A small public-API harness for the layer tests (keras.src.testing is
private): shapes to test, and outputs and gradients on the active Keras
backend (TensorFlow, JAX or PyTorch), so that the same float64 reference
tests run on each (`tests/test_backends.py`)."""

import keras
import numpy as np

# (input shape, channel axis): every supported rank, both data formats. The
# channel count (6) differs from every other dimension so that a wrong axis
# cannot pass by accident.
SHAPES_AND_AXES = [
    ((4, 6), -1),  # after Dense: N = 1
    ((4, 6), 1),
    ((3, 5, 6), -1),  # Conv1D, channels-last
    ((3, 6, 5), 1),  # Conv1D, channels-first
    ((2, 5, 4, 6), -1),  # Conv2D NHWC
    ((2, 6, 5, 4), 1),  # Conv2D NCHW
    ((2, 3, 4, 5, 6), -1),  # Conv3D NDHWC
    ((2, 6, 3, 4, 5), 1),  # Conv3D NCDHW
    # Channels neither first nor last: not folded, two spatial axes.
    ((2, 5, 6, 4), 2),
]


def ids(shapes_and_axes):
    return [f"{shape}-axis{axis}" for shape, axis in shapes_and_axes]


def outputs_and_gradients(layer, x, upstream, key="name", **call_kwargs):
    """Returns the layer's output and the gradients of
    `sum(upstream * layer(x, **call_kwargs))` w.r.t. `x` and each trainable
    weight (by weight name, or by path with `key="path"`: a model's weights
    share names), as NumPy arrays, on the active backend."""
    backend = keras.backend.backend()
    gradients = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients,
                 "torch": _torch_gradients}[backend]
    y, grad_x, grad_weights = gradients(layer, x, upstream, call_kwargs)
    by_name = {"x": np.asarray(grad_x)}
    for w, g in zip(layer.trainable_weights, grad_weights):
        by_name[getattr(w, key)] = np.asarray(g)
    return keras.ops.convert_to_numpy(y), by_name


def penalty_gradients(layer, x, w, v, **call_kwargs):
    """The gradients of `P = sum(v * d/dx sum(w * layer(x)))`, a
    gradient penalty's form, w.r.t. `x` and each trainable weight (by
    name), as NumPy arrays, on the active backend: second-order gradients
    through the layer's backward pass. Where P does not depend on a weight
    (FRN's beta), its gradient is zeros."""
    backend = keras.backend.backend()
    gradients = {"tensorflow": _tensorflow_penalty_gradients,
                 "jax": _jax_penalty_gradients,
                 "torch": _torch_penalty_gradients}[backend]
    names = ["x"] + [weight.name for weight in layer.trainable_weights]
    values = [np.asarray(x)] + [keras.ops.convert_to_numpy(weight.value)
                                for weight in layer.trainable_weights]
    grads = gradients(layer, x, w, v, call_kwargs)
    return {name: np.zeros_like(value) if g is None else np.asarray(g)
            for name, value, g in zip(names, values, grads)}


def assert_penalty_gradients_match(layer, shape, seed, reference_grad_x,
                                   params, keys, **call_kwargs):
    """`penalty_gradients` of `layer` at random `x`, `w` and `v` of `shape`
    against central differences of P, with `reference_grad_x(x, params, w)`
    (float64 NumPy) as the layer's `d/dx sum(w * layer(x))`. `keys` maps
    each trainable weight's name to its key in `params`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 0.05  # small, so that eps matters
    w, v = rng.normal(size=shape), rng.normal(size=shape)

    def penalty(x, **changed):
        return np.sum(v * reference_grad_x(x, {**params, **changed}, w))

    got = penalty_gradients(layer, x, w, v, **call_kwargs)
    want = {"x": numerical_gradient(penalty, x)}
    for name, key in keys.items():
        want[name] = np.reshape(numerical_gradient(
            lambda value, key=key: penalty(x, **{key: value}), params[key]),
            got[name].shape)
    assert sorted(got) == sorted(want)
    for name in want:
        scale = np.abs(want[name]).max()
        assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7 * scale,
                        err_msg=name)


def numerical_gradient(f, value, h=1e-6):
    """Central finite differences of the scalar `f` at `value` (float64)."""
    value = np.array(value, np.float64)
    grad = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = (f(plus) - f(minus)) / (2 * h)
    return grad


def hessian_vector_product(f, x, v, w):
    """d/dx of `<d/dx sum(w * f(x)), v>`, by nested TensorFlow gradient
    tapes: checks that a hand-written gradient is itself differentiable."""
    import tensorflow as tf

    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(w * f(x))
        g = inner.gradient(loss, x)
        gv = tf.reduce_sum(g * v)
    return outer.gradient(gv, x)


def traced_outputs_and_gradients(layer, x, upstream, mode, shape=None,
                                 **call_kwargs):
    """TensorFlow only: as `outputs_and_gradients`, run eagerly
    (`mode="eager"`), in a `tf.function` (`"function"`) or compiled by XLA
    (`"xla"`); `x` reaches the layer in its compute dtype. `shape`: the
    input shape the trace is made for (`None` for a size known only at run
    time); defaults to `x`'s."""
    import tensorflow as tf

    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **call_kwargs)
            loss = tf.reduce_sum(tf.cast(y, tf.float64) * upstream)
        weights = [w.value for w in layer.trainable_weights]
        return y, tape.gradient(loss, [x] + weights)

    if mode != "eager":
        signature = None if shape is None else [
            tf.TensorSpec(shape, layer.compute_dtype)]
        run = tf.function(run, jit_compile=mode == "xla",
                          input_signature=signature)
    y, grads = run(tf.constant(x, layer.compute_dtype))
    names = ["x"] + [w.name for w in layer.trainable_weights]
    return y.numpy(), {n: g.numpy() for n, g in zip(names, grads)}


def assert_same_gradients(actual, desired, rtol, atol, where=""):
    """Two `{name: gradient}` dicts (as `traced_outputs_and_gradients`
    returns) have the same names, and each gradient is close (by
    `assert_allclose`: to float32 accuracy at best outside TensorFlow).
    `where` prefixes the failure messages."""
    assert sorted(actual) == sorted(desired), where
    for name in desired:
        assert_allclose(actual[name], desired[name], rtol=rtol, atol=atol,
                        err_msg=f"{where}, {name}" if where else name)


def to_numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _tensorflow_gradients(layer, x, upstream, call_kwargs):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        loss = tf.reduce_sum(tf.cast(y, tf.float64) * upstream)
    grads = tape.gradient(loss, [x] + [w.value for w in layer.trainable_weights])
    return y, grads[0].numpy(), [g.numpy() for g in grads[1:]]


def _jax_gradients(layer, x, upstream, call_kwargs):
    import jax
    import jax.numpy as jnp

    trainable = [w.value for w in layer.trainable_weights]
    non_trainable = [w.value for w in layer.non_trainable_weights]

    def loss(trainable, x):
        y, _ = layer.stateless_call(trainable, non_trainable, x,
                                    **call_kwargs)
        return jnp.sum(y.astype(jnp.float64) * upstream), y

    (_, y), (grad_w, grad_x) = jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True)(trainable, jnp.asarray(x))
    return y, grad_x, grad_w


def per_example_gradients(layer, x, upstream, mask=None, key="name",
                          **call_kwargs):
    """Each sample's gradients, computed one sample at a time by the active
    backend's vectorizing map (`tf.vectorized_map`, `jax.vmap`,
    `torch.func.vmap`, as per-example gradients for differentially private
    training are): for each `i`, the gradients of
    `sum(upstream[i] * layer(x[i:i + 1], mask=mask[i:i + 1]))` w.r.t.
    `x[i]` and each trainable weight (by name, or by path with
    `key="path"`), stacked over `i`.

    Returns `{way: {name: array}}`, one entry per way of running the map on
    the backend: TensorFlow eagerly, in a `tf.function` and compiled by XLA;
    JAX as it is and under `jax.jit`; PyTorch eagerly."""
    backend = keras.backend.backend()
    gradients = {"tensorflow": _tensorflow_per_example_gradients,
                 "jax": _jax_per_example_gradients,
                 "torch": _torch_per_example_gradients}[backend]
    names = ["x"] + [getattr(w, key) for w in layer.trainable_weights]
    mapped = (x, upstream) if mask is None else (x, upstream, mask)
    return {way: dict(zip(names, (np.asarray(g) for g in grads)))
            for way, grads in gradients(layer, mapped, call_kwargs).items()}


def _sample_loss(call, sample, call_kwargs):
    """`sum(upstream * call(x))` for `sample = (x, upstream[, mask])` of one
    sample, called as a batch of one."""
    x, upstream, *mask = sample
    if mask:
        call_kwargs = dict(call_kwargs, mask=mask[0][None])
    y = call(x[None], **call_kwargs)
    return keras.ops.sum(keras.ops.cast(y, "float64") * upstream[None])


def _tensorflow_per_example_gradients(layer, mapped, call_kwargs):
    import tensorflow as tf

    weights = [w.value for w in layer.trainable_weights]

    def one_sample(sample):
        with tf.GradientTape() as tape:
            tape.watch(sample[0])
            loss = _sample_loss(layer, sample, call_kwargs)
        return tape.gradient(loss, [sample[0]] + weights)

    def run(*mapped):
        return tf.vectorized_map(one_sample, mapped)

    mapped = tuple(tf.constant(t) for t in mapped)
    ways = {"eager": run, "function": tf.function(run),
            "xla": tf.function(run, jit_compile=True)}
    return {way: [g.numpy() for g in f(*mapped)] for way, f in ways.items()}


def _stateless(layer, trainable):
    non_trainable = [w.value for w in layer.non_trainable_weights]

    def call(x, **kwargs):
        return layer.stateless_call(trainable, non_trainable, x, **kwargs)[0]

    return call


def _jax_per_example_gradients(layer, mapped, call_kwargs):
    import jax

    def loss(trainable, *sample):
        return _sample_loss(_stateless(layer, trainable), sample, call_kwargs)

    # The gradients w.r.t. x (argument 1) and the weights (argument 0).
    run = jax.vmap(jax.grad(loss, argnums=(1, 0)),
                   in_axes=(None,) + (0,) * len(mapped))
    trainable = [w.value for w in layer.trainable_weights]
    mapped = tuple(jax.numpy.asarray(t) for t in mapped)
    ways = {"vmap": run, "jit": jax.jit(run)}
    return {way: [g_x, *g_w] for way, f in ways.items()
            for g_x, g_w in [f(trainable, *mapped)]}


def _torch_per_example_gradients(layer, mapped, call_kwargs):
    import torch

    def loss(trainable, *sample):
        return _sample_loss(_stateless(layer, list(trainable)), sample,
                            call_kwargs)

    run = torch.func.vmap(torch.func.grad(loss, argnums=(1, 0)),
                          in_dims=(None,) + (0,) * len(mapped))
    trainable = tuple(w.value.detach() for w in layer.trainable_weights)
    g_x, g_w = run(trainable, *(torch.as_tensor(t) for t in mapped))
    return {"vmap": [g_x.detach(), *(g.detach() for g in g_w)]}


def _tensorflow_penalty_gradients(layer, x, w, v, call_kwargs):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(w * layer(x, **call_kwargs))
        penalty = tf.reduce_sum(v * inner.gradient(loss, x))
    grads = outer.gradient(
        penalty, [x] + [weight.value for weight in layer.trainable_weights])
    return [None if g is None else g.numpy() for g in grads]


def _jax_penalty_gradients(layer, x, w, v, call_kwargs):
    import jax
    import jax.numpy as jnp

    non_trainable = [weight.value for weight in layer.non_trainable_weights]

    def loss(trainable, x):
        y, _ = layer.stateless_call(trainable, non_trainable, x,
                                    **call_kwargs)
        return jnp.sum(w * y)

    def penalty(trainable, x):
        return jnp.sum(v * jax.grad(loss, argnums=1)(trainable, x))

    trainable = [weight.value for weight in layer.trainable_weights]
    grad_w, grad_x = jax.grad(penalty, argnums=(0, 1))(trainable,
                                                       jnp.asarray(x))
    return [grad_x, *grad_w]


def _torch_penalty_gradients(layer, x, w, v, call_kwargs):
    import torch

    x = torch.tensor(x, requires_grad=True)
    loss = torch.sum(torch.tensor(w) * layer(x, **call_kwargs))
    (grad_x,) = torch.autograd.grad(loss, x, create_graph=True)
    penalty = torch.sum(torch.tensor(v) * grad_x)
    weights = [weight.value for weight in layer.trainable_weights]
    grads = torch.autograd.grad(penalty, [x] + weights, allow_unused=True)
    return [None if g is None else g.detach().numpy() for g in grads]


def _torch_gradients(layer, x, upstream, call_kwargs):
    import torch

    # torch cannot read NumPy bfloat16 arrays: go through keras.
    x = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
    y = layer(x, **call_kwargs)
    loss = torch.sum(y.to(torch.float64) * torch.tensor(upstream))
    weights = [w.value for w in layer.trainable_weights]
    grads = torch.autograd.grad(loss, [x] + weights)
    return (y.detach(), keras.ops.convert_to_numpy(grads[0]),
            [g.detach().numpy() for g in grads[1:]])


# Outside TensorFlow, Keras's type promotion maps float64 to float32 in many
# ops (`BIT64_TO_BIT32_DTYPE` in keras/src/backend/common/dtypes.py, "to be
# aligned with JAX's default"), and XLA's float64 tanh on the CPU is accurate
# to ~1e-7: the float64 reference tests then check to float32 accuracy.
_LOOSEST_OUTSIDE_TENSORFLOW = dict(rtol=2e-5, atol=2e-6)


def assert_allclose(actual, desired, rtol=1e-7, atol=0.0, err_msg=""):
    """`np.testing.assert_allclose`, to float32 accuracy at best under the
    JAX and PyTorch backends (see above)."""
    if keras.backend.backend() != "tensorflow":
        rtol = max(rtol, _LOOSEST_OUTSIDE_TENSORFLOW["rtol"])
        atol = max(atol, _LOOSEST_OUTSIDE_TENSORFLOW["atol"])
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol,
                               err_msg=err_msg)


def assert_array_equal(actual, desired, err_msg=""):
    """Exact on TensorFlow; to float32 accuracy under JAX and PyTorch."""
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_array_equal(actual, desired, err_msg=err_msg)
    else:
        assert_allclose(actual, desired, rtol=0.0, err_msg=err_msg)
