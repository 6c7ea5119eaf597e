"""Fused 3DMM vertex synthesis: ``s * R (mean + basis @ c) + t`` for a batch.

The op is ``torch.ops.pgnface.synthesize`` (CPU: csrc/synthesize/synthesize_cpu.cpp,
CUDA: csrc/synthesize/synthesize_cuda.cu, math: csrc/synthesize/synthesize_kernel.h). This
module validates arguments, fills the optional pose, and registers the fake kernel and the
autograd formula.
"""

from typing import Optional, Union

import torch

from pgnface.ops._autocast import float32_under_autocast
from pgnface.ops._checks import (
    assert_index_async,
    check_mode,
    host_values_readable,
    require_float,
    require_index,
    require_like,
    require_shape,
    require_supported_device,
    require_tensor,
)
from pgnface.ops._first_order import first_order_only


def synthesize(
    mean: torch.Tensor,
    basis: torch.Tensor,
    coeffs: torch.Tensor,
    rotation: Optional[torch.Tensor] = None,
    scale: Optional[Union[torch.Tensor, float]] = None,
    translation: Optional[torch.Tensor] = None,
    *,
    index: Optional[torch.Tensor] = None,
    check_values: bool = True,
) -> torch.Tensor:
    """Synthesizes posed 3DMM vertices in one fused pass.

    ``out[b, n] = scale[b] * rotation[b] @ (mean[n] + basis[n] @ coeffs[b]) + translation[b]``

    The basis is read once per tile of batch items (never once per item) and the
    mean add and pose transform are fused into the same pass. Differentiable in
    coeffs, rotation, scale and translation, and in mean and basis when they
    require grad. The backward reads the pose gradients off the returned tensor,
    which autograd saves: modify a clone of it, not the tensor itself, before
    the backward.

    Args:
        mean: [N, 3] mean shape.
        basis: [N, 3, K] shape basis (identity and expression components
            concatenated along K, already scaled by their standard deviations if
            coefficients are in units of std).
        coeffs: [B, K] coefficients.
        rotation: [B, 3, 3] rotations (any 3x3 matrices work); identity if None.
        scale: [B] scales, or a Python float for all items; 1 if None.
        translation: [B, 3] translations; 0 if None.
        index: optional [L] int vertex indices: synthesize only those vertices
            (e.g. the 68 landmarks) without touching the rest of the mesh. The
            result is then [B, L, 3].
        check_values: refuse NaN/Inf in coeffs and the pose and out-of-range
            indices. The kernel checks the values as it reads them: on CPU a
            ValueError is raised, on CUDA an asynchronous device-side
            assertion fails (no host synchronisation); on under torch.compile
            and CUDA graph capture too. With False, non-finite inputs
            propagate NaN/Inf into the affected batch items only.

    Returns:
        [B, N, 3] (or [B, L, 3] with ``index``) tensor with the dtype and device of mean.

    Raises:
        TypeError: a non-tensor argument, a dtype other than float32/float64, or
            arguments whose dtypes differ.
        ValueError: wrong shapes, arguments on different devices, non-finite
            values or out-of-range indices (with check_values).
        RuntimeError: CUDA tensors with a CPU-only build of pgnface.
    """
    mean, basis, coeffs, rotation, scale, translation = float32_under_autocast(
        mean, basis, coeffs, rotation, scale, translation
    )
    for name, x in (("mean", mean), ("basis", basis), ("coeffs", coeffs)):
        require_tensor(x, name)
    require_float(mean, "mean")
    require_supported_device(mean, "mean")
    sizes = {}
    require_shape(mean, "mean", ("N", 3), sizes)
    require_shape(basis, "basis", ("N", 3, "K"), sizes)
    if coeffs.dim() == 1:
        raise ValueError(
            f"coeffs must have shape [B, K] = [B, {sizes['K']}], got {list(coeffs.shape)}; "
            "for a single face pass coeffs[None]"
        )
    require_shape(coeffs, "coeffs", ("B", "K"), sizes)
    batch = sizes["B"]
    require_like(basis, "basis", mean, "mean")
    require_like(coeffs, "coeffs", mean, "mean")

    if rotation is None:
        rotation = torch.eye(3, dtype=mean.dtype, device=mean.device).expand(batch, 3, 3)
    if scale is None:
        scale = torch.ones((), dtype=mean.dtype, device=mean.device).expand(batch)
    elif isinstance(scale, (int, float)):
        scale = torch.full((batch,), float(scale), dtype=mean.dtype, device=mean.device)
    if translation is None:
        translation = torch.zeros((), dtype=mean.dtype, device=mean.device).expand(batch, 3)
    for name, x in (("rotation", rotation), ("scale", scale), ("translation", translation)):
        require_tensor(x, name)
        require_like(x, name, mean, "mean")
    require_shape(rotation, "rotation", ("B", 3, 3), sizes)
    require_shape(scale, "scale", ("B",), sizes)
    require_shape(translation, "translation", ("B", 3), sizes)

    if index is not None:
        # CPU indices are read in Python (no sync); elsewhere the check is an asynchronous
        # assertion (index_select would otherwise fail without naming the argument).
        readable = host_values_readable(index)
        index = require_index(index, "index", sizes["N"], mean.device, check_values and readable)
        if check_values and not readable:
            assert_index_async(index, "index", sizes["N"])
        index = index.long()
        mean = mean.index_select(0, index)
        basis = basis.index_select(0, index)
    out, _ = torch.ops.pgnface.synthesize(mean, basis, coeffs, rotation, scale, translation, check_mode(check_values))
    return out


@torch.library.register_fake("pgnface::synthesize")
def _synthesize_fake(mean, basis, coeffs, rotation, scale, translation, check=2):
    return mean.new_empty((coeffs.shape[0], mean.shape[0], 3)), mean.new_empty((1,), dtype=torch.int32)


@torch.library.register_fake("pgnface::synthesize_backward")
def _synthesize_backward_fake(grad_out, out, mean, basis, coeffs, rotation, scale, translation, need_model_grad):
    # The kernels return contiguous tensors whatever the inputs' strides.
    def empty(like):
        return like.new_empty(like.shape)

    if need_model_grad:
        grad_mean, grad_basis = empty(mean), empty(basis)
    else:
        grad_mean, grad_basis = mean.new_empty((0,)), mean.new_empty((0,))
    return (grad_mean, grad_basis, empty(coeffs), empty(rotation), empty(scale), empty(translation))


def _setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    # The output gives the backward the posed shapes s R (mean + basis c) without a recompute;
    # it is returned to the caller anyway, so saving it costs no memory.
    ctx.save_for_backward(*inputs[:6], output[0])
    ctx.need_model_grad = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[1])


def _backward(ctx, grad_out, grad_status):
    mean, basis, coeffs, rotation, scale, translation, out = ctx.saved_tensors
    # The kernel makes grad_out contiguous itself where it is not.
    grads = torch.ops.pgnface.synthesize_backward(
        grad_out, out, mean, basis, coeffs, rotation, scale, translation, ctx.need_model_grad
    )
    grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation = grads
    if not ctx.need_model_grad:
        grad_mean = grad_basis = None
    grads = (grad_mean, grad_basis, grad_coeffs, grad_rotation, grad_scale, grad_translation)
    return (*first_order_only("synthesize", grads, (grad_out, *ctx.saved_tensors)), None)


torch.library.register_autograd("pgnface::synthesize", _backward, setup_context=_setup_context)
