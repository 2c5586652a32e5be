"""FRN's sums over positions in two stages under XLA:CPU.

XLA:CPU splits a sum over an axis longer than 32 into sums of windows of 32
and a sum of the window sums (its tree reduction rewriter), and does not
fuse the op that produces the summed tensor into the window sums. So FRN's
`sum(x^2)` and its gradient's `sum(dy * x)` over the positions of the
(batch, positions, channels) view wrote `x^2` and `dy * x` to memory and
read them back: two activation-sized tensors per forward + backward pass
that need not exist.

Summed here in groups of at most 32 positions, then over the groups, each
square or product is formed in the loop that sums it. The group sums are
multiplied by a runtime 1, or XLA's simplifier merges the two sums back
into one (and the rewriter splits it again). The 1 is read from the group
sums, as `isnan(v) | 1` in integers, which is 1 for NaN as well. Only XLA
traces for the CPU take it; elsewhere the sum is one reduction.
(benchmarks/README.md, "Layer pairs": FRN + TLU's forward + backward at
16x16x16x32 went from 0.91-0.98x to 0.75-0.77x BN + ReLU's time.)
"""

from keras import ops

from frn_keras.layers._xla_context import compiled_by_xla_for_cpu

# The window of XLA:CPU's tree reduction rewriter: sums over at most this
# many elements are left as one loop.
XLA_CPU_REDUCTION_WINDOW = 32


def staged_sum(t, axes):
    """`sum(t, axis=axes, keepdims=True)`, in two stages under XLA:CPU when
    `axes` is a single axis longer than `XLA_CPU_REDUCTION_WINDOW`.

    Args:
        t: Tensor with static sizes except, possibly, its first axis.
        axes: Tuple of the axes to sum over.
    """
    group = _group_size(t.shape, axes)
    if group == 1 or not compiled_by_xla_for_cpu():
        return ops.sum(t, axis=axes, keepdims=True)
    (axis,) = axes
    shape = [-1 if size is None else size for size in t.shape]
    grouped = shape[:axis] + [shape[axis] // group, group] + shape[axis + 1:]
    group_sums = ops.sum(ops.reshape(t, grouped), axis=axis + 1)
    first = ops.reshape(group_sums, (-1,))[:1]
    one = ops.bitwise_or(ops.cast(ops.isnan(first), "int32"), 1)
    group_sums = group_sums * ops.cast(ops.stop_gradient(one), t.dtype)
    return ops.sum(group_sums, axis=axis, keepdims=True)


def _group_size(shape, axes):
    """The largest divisor of the summed axis' size that is at most the
    window, or 1 where one stage suffices (or the shape does not allow
    two)."""
    if len(axes) != 1 or None in shape[1:]:
        return 1
    size = shape[axes[0]]
    if axes[0] == 0 or size <= XLA_CPU_REDUCTION_WINDOW:
        return 1
    return max(d for d in range(1, XLA_CPU_REDUCTION_WINDOW + 1)
               if size % d == 0)
