"""Keep XLA:CPU from recomputing a TLU's output in each of its readers.

XLA fuses cheap elementwise ops into every op that reads them, computing
them again in each. In a residual network trained under `jit_compile=True`
on a CPU, the readers of a block's output include the transposes that feed
the convolutions' weight gradients, and the residual stream chains each
block's addition and activation to the one before. So each such transpose
recomputes its stage's whole chain up to that block, reading every
convolution output of the stage with the transpose's stride (one cache
line per element): in ResNet-20's XLA training step (TensorFlow 2.21,
batch 128) these transposes took about 80% of the step, BatchNorm + ReLU's
as much as FRN + TLU's (benchmarks/README.md, "Training step").

XLA's fusion does not duplicate a division (its cost model counts it as
expensive), so the TLU's output divided by a runtime 1 is computed once,
written to memory, and read by every reader. The division is exact
(`z / 1 == z`, also for infinities and NaN), the gradient is the TLU's own
(the division sits inside its custom gradient), and only XLA traces for the
CPU take it: other targets (GPU, TPU) fuse differently, and TensorFlow's own
kernels run each op once anyway.
"""

from keras import ops

from frn_keras.layers._xla_context import compiled_by_xla_for_cpu


def computed_once(z, tau):
    """`z`, written to memory once under XLA:CPU instead of recomputed in
    each reader.

    Args:
        z: The activation (a TLU's output).
        tau: The TLU's threshold, which broadcasts against `z`: the runtime
            source of the 1 (a constant 1 would be folded away).
    """
    if not compiled_by_xla_for_cpu():
        return z
    # sign(|tau| + 1) is 1 for every tau but NaN, where max(x, tau) is NaN
    # already.
    one = ops.stop_gradient(ops.sign(ops.abs(tau) + 1))
    return z / ops.cast(one, z.dtype)
