"""A custom gradient given as a forward and a backward function, as
`jax.custom_vjp` takes it, on every Keras backend.

Under TensorFlow and JAX this is `keras.ops.custom_gradient`. Under PyTorch,
Keras's `custom_gradient` is a `torch.autograd.Function` in the old style
(the forward pass writes to `ctx`), which `torch.func`'s transforms refuse
(`vmap`, `grad`, `jacrev`: per-example gradients, as in differentially
private training), and which runs the forward pass unrecorded, so that values
saved from it cannot be differentiated again. Here the forward pass returns
its residuals (the values the backward pass reads) as outputs, so that the
`Function` can take `setup_context` and let PyTorch generate its `vmap`
rule; the tensors it reads are all arguments (a tensor captured from the
caller would be a tensor that `vmap` maps over, which it cannot see); and
when PyTorch records the backward pass (`create_graph=True`, or
`torch.func.grad` of a gradient), the residuals are recomputed from the saved
inputs, so that they carry their dependence on the inputs.
"""

import functools

from keras import backend
from keras import ops


def custom_gradient(forward, backward):
    """Returns `f(inputs, constants)`: `forward`'s output, differentiated
    by `backward`.

    Args:
        forward: `forward(inputs, constants) -> (output, residuals)`.
            `inputs` is the tuple of tensors to differentiate, `constants`
            a tuple of tensors not to differentiate (a mask), and
            `residuals` a tuple of new tensors (not `output`, not an input)
            that `backward` reads.
        backward: `backward(upstream, inputs, constants, residuals) ->
            gradients`: the gradients of `sum(upstream * output)` w.r.t.
            each of `inputs`, in order.
    """
    if backend.backend() == "torch":
        return functools.partial(_torch_custom_gradient, forward, backward)

    def f(inputs, constants):
        @ops.custom_gradient
        def differentiated(*inputs):
            output, residuals = forward(inputs, constants)

            def grad(*args, upstream=None):
                return backward(args[-1] if upstream is None else upstream,
                                inputs, constants, residuals)

            return output, grad

        return differentiated(*inputs)

    return f


def _torch_custom_gradient(forward, backward, inputs, constants):
    return _torch_function().apply(forward, backward, len(inputs), *inputs,
                                   *constants)[0]


@functools.cache
def _torch_function():
    import torch

    class CustomGradient(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(forward, backward, num_inputs, *tensors):
            output, residuals = forward(tensors[:num_inputs],
                                        tensors[num_inputs:])
            return (output, *residuals)

        @staticmethod
        def setup_context(ctx, inputs, outputs):
            forward, backward, num_inputs, *tensors = inputs
            ctx.functions = forward, backward
            ctx.num_inputs, ctx.num_tensors = num_inputs, len(tensors)
            ctx.mark_non_differentiable(*outputs[1:])
            # No gradients of zeros for the residuals (a pass over memory).
            ctx.set_materialize_grads(False)
            ctx.save_for_backward(*tensors, *outputs[1:])

        @staticmethod
        def backward(ctx, upstream, *unused_residual_gradients):
            forward, backward = ctx.functions
            saved = ctx.saved_tensors
            if upstream is None:  # the output takes no part in the loss
                return (None,) * (3 + ctx.num_tensors)
            inputs = saved[:ctx.num_inputs]
            constants = saved[ctx.num_inputs:ctx.num_tensors]
            residuals = saved[ctx.num_tensors:]
            if torch.is_grad_enabled():
                # The backward pass is recorded to be differentiated again:
                # the saved residuals are constants, recomputed ones are not.
                _, residuals = forward(inputs, constants)
            grads = backward(upstream, inputs, constants, residuals)
            # None for forward, backward, num_inputs and the constants.
            return (None, None, None, *grads, *(None,) * len(constants))

    return CustomGradient
