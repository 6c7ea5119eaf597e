"""Refusing second derivatives of the ops instead of returning zeros.

Each op's backward is a fused kernel (``torch.ops.pgnface.<op>_backward``)
without a derivative of its own. Differentiated again (``create_graph=True``,
e.g. for a gradient penalty or a Hessian-vector product), its result would
silently count as a constant: a zero second derivative. ``first_order_only``
marks the backward's results so that differentiating them raises an error
instead; first-order use, with or without ``create_graph``, is unchanged.
"""

from typing import Iterable, Optional, Sequence, Tuple

import torch


def _message(op: str) -> str:
    return (
        f"pgnface.ops.{op} has no second derivative: its backward is a fused kernel, so a gradient "
        f"taken with create_graph=True cannot be differentiated again. For higher-order gradients use "
        f"the pure-PyTorch pgnface.ops.reference.{op}"
    )


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on tensors whose own gradient is refused with a clear error."""

    @staticmethod
    def forward(ctx, op: str, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        ctx.op = op
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(_message(ctx.op))


def first_order_only(
    op: str, grads: Sequence[Optional[torch.Tensor]], sources: Iterable[Optional[torch.Tensor]]
) -> Tuple[Optional[torch.Tensor], ...]:
    """Returns `grads` unchanged, or marked as not differentiable when a graph of them is being built.

    Args:
        op: the op's name, for the error message.
        grads: the backward's results (None for inputs without a gradient).
        sources: every tensor the results were computed from (incoming
            gradients and saved tensors); a graph is built when grad mode is on
            (create_graph=True) and one of them requires grad.
    """
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in sources):
        return tuple(grads)
    present = [i for i, g in enumerate(grads) if g is not None]
    marked = _FirstOrderOnly.apply(op, *(grads[i] for i in present))
    out = list(grads)
    for i, g in zip(present, marked):
        out[i] = g
    return tuple(out)
