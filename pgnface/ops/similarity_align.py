"""Differentiable weighted similarity alignment (Umeyama / Procrustes with scale).

The op is ``torch.ops.pgnface.similarity_align`` (CPU: csrc/similarity_align/similarity_align_cpu.cpp,
CUDA: csrc/similarity_align/similarity_align_cuda.cu, math: csrc/similarity_align/similarity_align_kernel.h).
This module validates arguments and registers the fake kernel and the autograd
formula: an analytic backward op that solves each item again from the sums over
its points that the forward op returns (``sums`` [B, 17], saved for backward), so
the backward reads the points only to form their gradients.
"""

from typing import Optional, Tuple

import torch

from pgnface.ops._autocast import float32_under_autocast
from pgnface.ops._checks import (
    check_mode,
    require_float,
    require_like,
    require_shape,
    require_supported_device,
    require_tensor,
)
from pgnface.ops._first_order import first_order_only
from pgnface.ops._no_autograd import call

_FLOAT_DTYPES = (torch.float32, torch.float64)
_similarity_align_op = torch.ops.pgnface.similarity_align.default


def similarity_align(
    src: torch.Tensor,
    dst: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    estimate_scale: bool = True,
    *,
    check_values: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fits ``dst ~ scale * R @ src + t`` per batch item by weighted least squares.

    Minimises ``sum_i w_i |scale R src_i + t - dst_i|^2`` over rotations R
    (det +1: reflections are fixed by flipping the last singular vector),
    scale > 0 and translation t (Umeyama 1991). One fused pass per item:
    weighted centroids, the 3x3 cross-covariance over centred points,
    ``svd3x3``, the reflection fix, the scale and t; on CUDA one warp per
    item and no host synchronisation (CUDA-graph capturable).

    Degenerate items have a defined result: when the weights of an item sum to
    0, or its src points all coincide (no spread to fit a rotation or scale),
    the result is ``R = I``, ``scale = 1``, ``t = mu_dst - mu_src`` (the
    weighted centroids, taken as 0 when the weights sum to 0), with the
    matching gradients (zero when the weights sum to 0). When the points
    are collinear or dst collapses to a point, R is one of the equally good
    rotations and the gradient stays finite (see ``svd3x3``).

    Gradient: analytic, to src, dst and weights, through ``svd3x3``'s
    backward (regularised for repeated singular values).

    Args:
        src: [B, P, 3] source points (e.g. the model's landmarks), P >= 3.
        dst: [B, P, 3] target points (e.g. predicted landmarks).
        weights: [B, P] non-negative point weights, or None for all ones.
        estimate_scale: fit the scale; with False, scale is 1.
        check_values: refuse NaN/Inf in src, dst, weights and negative
            weights. The kernel checks them in its first pass over the
            points: on CPU a ValueError is raised, on CUDA an asynchronous
            device-side assertion fails (no host synchronisation); on under
            torch.compile and CUDA graph capture too.

    Returns:
        (scale [B], R [B, 3, 3], t [B, 3]), dtype and device of src.

    Raises:
        TypeError: non-tensors, dtypes other than float32/float64, mixed dtypes.
        ValueError: wrong shapes, P < 3, mixed devices, and (with check_values)
            non-finite values or negative weights.
        RuntimeError: CUDA tensors with a CPU-only build of pgnface.
    """
    if _plain_cpu_call(src, dst, weights, estimate_scale):
        scale, R, t, _, _ = call(
            _similarity_align_op,
            (src, dst, weights),
            src,
            dst,
            weights,
            estimate_scale,
            check_mode(check_values),
        )
        return scale, R, t
    src, dst, weights = float32_under_autocast(src, dst, weights)
    require_tensor(src, "src")
    require_tensor(dst, "dst")
    require_float(src, "src")
    require_supported_device(src, "src")
    sizes = {}
    require_shape(src, "src", ("B", "P", 3), sizes)
    if sizes["P"] < 3:
        raise ValueError(
            f"src must have at least 3 points to fix a rotation (shape [B, P, 3] with P >= 3), got {list(src.shape)}"
        )
    require_shape(dst, "dst", ("B", "P", 3), sizes)
    require_like(dst, "dst", src, "src")
    if weights is not None:
        require_tensor(weights, "weights")
        require_like(weights, "weights", src, "src")
        require_shape(weights, "weights", ("B", "P"), sizes)
    if not isinstance(estimate_scale, bool):
        raise TypeError(f"estimate_scale must be a bool, got {type(estimate_scale).__name__}")
    scale, R, t, _, _ = call(
        _similarity_align_op, (src, dst, weights), src, dst, weights, estimate_scale, check_mode(check_values)
    )
    return scale, R, t


def _plain_cpu_call(src, dst, weights, estimate_scale) -> bool:
    """Whether the arguments pass every structural check and autocast leaves them alone.

    Plain CPU float32/float64 tensors of one dtype, src and dst [B, P, 3] with P >= 3, weights None
    or [B, P], estimate_scale a bool: tested directly, this keeps the per-call cost of small batches
    low. Anything else goes through autocast and the checks that explain.
    """
    if not (
        type(src) is torch.Tensor
        and type(dst) is torch.Tensor
        and type(estimate_scale) is bool
        and src.is_cpu
        and dst.is_cpu
        and src.dtype in _FLOAT_DTYPES
        and dst.dtype == src.dtype
        and src.dim() == 3
        and src.shape[2] == 3
        and src.shape[1] >= 3
        and dst.shape == src.shape
    ):
        return False
    if weights is None:
        return True
    return (
        type(weights) is torch.Tensor
        and weights.is_cpu
        and weights.dtype == src.dtype
        and weights.shape == src.shape[:2]
    )


# Sums per item that the forward op returns for its backward (csrc/similarity_align/similarity_align_kernel.h:
# kSums): W, sum w src (3), sum w dst (3), then over centred points the cross-covariance sum (9) and sum w |src|^2.
_SUMS = 17


@torch.library.register_fake("pgnface::similarity_align")
def _similarity_align_fake(src, dst, weights, estimate_scale, check=2):
    B = src.shape[0]
    status = src.new_empty((1,), dtype=torch.int32)
    return src.new_empty((B,)), src.new_empty((B, 3, 3)), src.new_empty((B, 3)), src.new_empty((B, _SUMS)), status


@torch.library.register_fake("pgnface::similarity_align_backward")
def _similarity_align_backward_fake(grad_scale, grad_R, grad_t, src, dst, weights, sums, estimate_scale):
    B, P = src.shape[0], src.shape[1]
    grad_w = src.new_empty((B, P)) if weights is not None else src.new_empty((0,))
    return src.new_empty((B, P, 3)), src.new_empty((B, P, 3)), grad_w


def _setup_context(ctx, inputs, output):
    src, dst, weights, estimate_scale, _ = inputs
    _, _, _, sums, status = output
    ctx.mark_non_differentiable(sums, status)
    ctx.save_for_backward(src, dst, weights, sums)
    ctx.estimate_scale = estimate_scale


def _backward(ctx, grad_scale, grad_R, grad_t, grad_sums, grad_status):
    src, dst, weights, sums = ctx.saved_tensors
    B = src.shape[0]
    # Outputs that took no part in the loss may arrive as None.
    grad_scale = src.new_zeros((B,)) if grad_scale is None else grad_scale
    grad_R = src.new_zeros((B, 3, 3)) if grad_R is None else grad_R
    grad_t = src.new_zeros((B, 3)) if grad_t is None else grad_t
    grad_src, grad_dst, grad_w = torch.ops.pgnface.similarity_align_backward(
        grad_scale, grad_R, grad_t, src, dst, weights, sums, ctx.estimate_scale
    )
    if weights is None:
        grad_w = None
    sources = (grad_scale, grad_R, grad_t, src, dst, weights)
    return (*first_order_only("similarity_align", (grad_src, grad_dst, grad_w), sources), None, None)


torch.library.register_autograd("pgnface::similarity_align", _backward, setup_context=_setup_context)
