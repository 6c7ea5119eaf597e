"""Batched 3x3 singular value decomposition with a gradient that survives repeated values.

The op is ``torch.ops.pgnface.svd3x3`` (CPU: csrc/svd3x3/svd3x3_cpu.cpp,
CUDA: csrc/svd3x3/svd3x3_cuda.cu, math: csrc/svd3x3/svd3x3_kernel.h). This
module validates arguments and registers the fake kernel and the autograd formula.
"""

from typing import Tuple

import torch

from pgnface.ops._autocast import float32_under_autocast
from pgnface.ops._checks import (
    CHECK_OFF,
    CHECK_RAISE,
    require_float,
    require_shape,
    require_supported_device,
    require_tensor,
)
from pgnface.ops._first_order import first_order_only
from pgnface.ops._no_autograd import call

_FLOAT_DTYPES = (torch.float32, torch.float64)
_svd3x3_op = torch.ops.pgnface.svd3x3.default
_MATRIX = (3, 3)


def svd3x3(M: torch.Tensor, *, check_values: bool = True) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Singular value decomposition of a batch of 3x3 matrices, ``M = U diag(S) V^T``.

    One-sided Jacobi in registers (one CUDA thread per matrix), a bounded
    number of sweeps and no host synchronisation, so it can be captured in a
    CUDA graph (unlike ``torch.linalg.svd`` on CUDA). Each matrix is first
    divided by its largest absolute entry, so 1e-20 and 1e20 scales are as
    accurate as unit ones; U is completed by cross products, so it is
    orthonormal for rank-1, rank-2 and zero matrices too.

    Gradient: the standard SVD derivative (as ``torch.linalg.svd``'s), with
    ``1/(s_k^2 - s_j^2)`` split into ``1/(s_k - s_j)`` and ``1/(s_k + s_j)``
    parts and each ``1/x`` replaced by ``x / (x^2 + eps^2)`` with
    ``eps = 1e-5 * S[0]`` (float32) or ``1e-8 * S[0]`` (float64). For
    well-separated singular values this is the exact derivative; for losses
    that do not depend on the free rotation within a repeated singular value
    (such as ``U @ V^T``, ``S``, or ``U diag(S) V^T``) it stays exact at
    repeated values; otherwise it is damped to a finite value instead of
    becoming Inf/NaN.

    Args:
        M: [B, 3, 3] float32 or float64 matrices, CPU or CUDA, any strides.
        check_values: refuse NaN/Inf in M. The kernel checks M as it reads
            it: on CPU a ValueError is raised, on CUDA an asynchronous
            device-side assertion fails (no host synchronisation); on under
            torch.compile and CUDA graph capture too. Without the check, a
            non-finite matrix gives NaN in its own U, S, V only.

    Returns:
        (U [B, 3, 3], S [B, 3], V [B, 3, 3]): S descending and non-negative;
        U and V orthogonal (each of determinant +1 or -1). A zero matrix gives
        U = V = I and S = 0.

    Raises:
        TypeError: M is not a tensor or not float32/float64.
        ValueError: M is not [B, 3, 3], or holds NaN/Inf (with check_values).
        RuntimeError: CUDA tensors with a CPU-only build of pgnface.
    """
    # A plain CPU [B, 3, 3] float32/float64 tensor passes every structural check and autocast
    # leaves it alone; testing that directly keeps the per-call cost of small batches low.
    # Anything else goes through autocast and the checks that explain.
    if not (type(M) is torch.Tensor and M.dtype in _FLOAT_DTYPES and M.is_cpu and M.shape[1:] == _MATRIX):
        (M,) = float32_under_autocast(M)
        require_tensor(M, "M")
        require_float(M, "M")
        require_supported_device(M, "M")
        require_shape(M, "M", ("B", 3, 3), {})
    U, S, V, _ = call(_svd3x3_op, (M,), M, CHECK_RAISE if check_values else CHECK_OFF)
    return U, S, V


@torch.library.register_fake("pgnface::svd3x3")
def _svd3x3_fake(M, check=2):
    B = M.shape[0]
    status = M.new_empty((1,), dtype=torch.int32)
    return M.new_empty((B, 3, 3)), M.new_empty((B, 3)), M.new_empty((B, 3, 3)), status


@torch.library.register_fake("pgnface::svd3x3_backward")
def _svd3x3_backward_fake(grad_U, grad_S, grad_V, U, S, V):
    return U.new_empty((U.shape[0], 3, 3))


def _setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output[3])
    ctx.save_for_backward(*output[:3])


def _backward(ctx, grad_U, grad_S, grad_V, grad_status):
    U, S, V = ctx.saved_tensors
    # Outputs that took no part in the loss may arrive as None.
    grad_U = torch.zeros_like(U) if grad_U is None else grad_U
    grad_S = torch.zeros_like(S) if grad_S is None else grad_S
    grad_V = torch.zeros_like(V) if grad_V is None else grad_V
    grad_M = torch.ops.pgnface.svd3x3_backward(grad_U, grad_S, grad_V, U, S, V)
    return first_order_only("svd3x3", (grad_M,), (grad_U, grad_S, grad_V, U, S, V))[0], None


torch.library.register_autograd("pgnface::svd3x3", _backward, setup_context=_setup_context)
