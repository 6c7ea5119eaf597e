"""Per-vertex attribute interpolation over rasterized fragments.

The op is ``torch.ops.pgnface.interpolate`` (kernels next to the rasterizer's
in csrc/rasterize/). Gradients flow to the attributes and, through the
barycentrics, back into ``rasterize`` and so to the vertex positions.
"""

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
from pgnface.ops.rasterize import Fragments, check_triangles, check_unread_triangles


def interpolate(
    attr: torch.Tensor, fragments: Fragments, tris: torch.Tensor, *, check_values: bool = True
) -> torch.Tensor:
    """Interpolates per-vertex attributes at every pixel with the fragments' barycentrics.

    ``out[b, h, w] = sum_k bary[b, h, w, k] * attr[b, tris[tri_id[b, h, w], k]]``,
    and 0 where no triangle is visible.

    Args:
        attr: [B, N, C] per-vertex attributes, or [N, C] shared by the batch.
        fragments: the output of :func:`pgnface.ops.rasterize` for the same tris.
        tris: [T, 3] int32/int64 triangle list used for rasterizing.
        check_values: refuse triangle indices outside [0, N - 1], checked by
            the kernel as for :func:`rasterize` (CPU: ValueError; CUDA: an
            asynchronous device-side assertion, no host synchronisation).

    Returns:
        [B, H, W, C], differentiable w.r.t. attr and fragments.bary.

    Raises:
        TypeError: non-tensors, non-float attr, fragments not from rasterize, mixed dtypes.
        ValueError: wrong shapes or devices, and (with check_values) out-of-range triangle indices.
        RuntimeError: CUDA tensors with a CPU-only build of pgnface.
    """
    (attr,) = float32_under_autocast(attr)
    if isinstance(fragments, tuple) and len(fragments) == 3:
        fragments = float32_under_autocast(*fragments)
    require_tensor(attr, "attr")
    require_float(attr, "attr")
    require_supported_device(attr, "attr")
    if not isinstance(fragments, tuple) or len(fragments) != 3:
        raise TypeError("fragments must be the Fragments(tri_id, bary, depth) returned by rasterize")
    tri_id, bary, _ = fragments
    require_tensor(tri_id, "fragments.tri_id")
    require_tensor(bary, "fragments.bary")
    sizes = {}
    require_shape(tri_id, "fragments.tri_id", ("B", "H", "W"), sizes)
    require_shape(bary, "fragments.bary", ("B", "H", "W", 3), sizes)
    if tri_id.dtype != torch.int32:
        raise TypeError(f"fragments.tri_id must be int32, got {tri_id.dtype}")
    require_like(bary, "fragments.bary", attr, "attr")
    if tri_id.device != attr.device:
        raise ValueError(f"fragments.tri_id must be on {attr.device} like attr, got {tri_id.device}")
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    elif attr.dim() != 3 or attr.shape[0] not in (1, sizes["B"]):
        raise ValueError(f"attr must have shape [N, C] or [B, N, C] with B = {sizes['B']}, got {list(attr.shape)}")
    tris = check_triangles(tris, attr.shape[1], attr.device, check_values)
    if check_values and tri_id.numel() == 0:
        check_unread_triangles(tris, attr.shape[1])
    out, _ = torch.ops.pgnface.interpolate(attr, tri_id, bary, tris, check_mode(check_values))
    return out


@torch.library.register_fake("pgnface::interpolate")
def _interpolate_fake(attr, tri_id, bary, tris, check=2):
    B, H, W = tri_id.shape
    return attr.new_empty((B, H, W, attr.shape[2])), attr.new_empty((1,), dtype=torch.int32)


@torch.library.register_fake("pgnface::interpolate_backward")
def _interpolate_backward_fake(grad_out, attr, tri_id, bary, tris):
    return attr.new_empty(attr.shape), bary.new_empty(bary.shape)


def _setup_context(ctx, inputs, output):
    attr, tri_id, bary, tris, _ = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(attr, tri_id, bary, tris)


def _backward(ctx, grad_out, grad_status):
    attr, tri_id, bary, tris = ctx.saved_tensors
    grad_attr, grad_bary = torch.ops.pgnface.interpolate_backward(grad_out, attr, tri_id, bary, tris)
    grad_attr, grad_bary = first_order_only("interpolate", (grad_attr, grad_bary), (grad_out, attr, bary))
    return grad_attr, None, grad_bary, None, None


torch.library.register_autograd("pgnface::interpolate", _backward, setup_context=_setup_context)
