"""Batched differentiable rasterizer: ``rasterize`` and the clip-space helper.

The op is ``torch.ops.pgnface.rasterize`` (CPU: csrc/rasterize/rasterize_cpu.cpp,
CUDA: csrc/rasterize/rasterize_cuda.cu). Conventions (pixel centres, fill rule,
depth test, culling) are documented in docs/ops/rasterize.md.
"""

from typing import NamedTuple, Sequence, Tuple, Union

import torch

from pgnface.ops._autocast import float32_under_autocast
from pgnface.ops._checks import (
    assert_index_async,
    check_mode,
    host_values_readable,
    index_range_message,
    require_float,
    require_index,
    require_shape,
    require_supported_device,
    require_tensor,
)
from pgnface.ops._first_order import first_order_only

CULL_MODES = {"none": 0, "back": 1, "front": 2}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class Fragments(NamedTuple):
    """Per-pixel output of :func:`rasterize`.

    Attributes:
        tri_id: [B, H, W] int32 index of the visible triangle, -1 where empty.
            Not differentiable.
        bary: [B, H, W, 3] perspective-correct barycentrics; bary[..., k]
            weighs vertex tris[tri_id, k]. 0 where empty. Differentiable w.r.t. pos.
        depth: [B, H, W] z/w of the visible surface (smaller is nearer), +inf
            where empty. Differentiable w.r.t. pos.
    """

    tri_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """[B, H, W] bool, True where a triangle is visible."""
        return self.tri_id >= 0


def _resolution(resolution) -> Tuple[int, int]:
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    if not isinstance(resolution, Sequence) or len(resolution) != 2 or not all(isinstance(r, int) for r in resolution):
        raise TypeError(f"resolution must be an int or a (height, width) pair of ints, got {resolution!r}")
    height, width = resolution
    if height <= 0 or width <= 0 or height > 32768 or width > 32768:
        raise ValueError(f"resolution must lie in [1, 32768] x [1, 32768], got {height} x {width}")
    return height, width


def check_triangles(tris: torch.Tensor, num_vertices: int, device: torch.device, check_values: bool) -> torch.Tensor:
    """Validates a triangle list and returns it as the kernels take it.

    The kernels index vertices with int32, so an int64 list must fit int32
    whatever `check_values` says: converting it would otherwise turn 2**32 + 3
    into vertex 3. A CPU list is read here (no synchronisation); elsewhere
    (CUDA, torch.compile) an asynchronous assertion refuses such a list and
    its out-of-range entries become -1, which the kernels skip (and, with
    check_values, report). The range [0, N - 1] itself is checked by the
    kernels (see :func:`rasterize`).

    Args:
        tris: [T, 3] int32 or int64 vertex indices.
        num_vertices: N, the number of vertices the triangles index.
        device: the device of the vertex tensor.
        check_values: check the index range (of an int64 CPU list here, else in the kernels).

    Returns:
        [T, 3] contiguous int32.

    Raises:
        TypeError: tris is not an int32 / int64 tensor.
        ValueError: tris is not [T, 3], not on `device`, holds int64 values beyond int32,
            or (with check_values) indexes outside [0, N - 1].
    """
    tris = require_index(tris, "tris", num_vertices, device, False, shape=("T", 3), of="vertices")
    if tris.dtype == torch.int64:
        if not host_values_readable(tris):
            return _narrow_traced(tris)
        if tris.numel():
            # The int64 values, before narrowing, name what is wrong.
            lo, hi = int(tris.min()), int(tris.max())
            if check_values and (lo < 0 or hi >= num_vertices):
                raise ValueError(index_range_message("tris", num_vertices, lo, hi, "vertices"))
            if lo < INT32_MIN or hi > INT32_MAX:
                raise ValueError(_int32_message(lo, hi))
    # Skipping the no-op conversions saves their dispatch on every call.
    if tris.dtype != torch.int32:
        tris = tris.to(torch.int32)
    return tris if tris.is_contiguous() else tris.contiguous()


def check_unread_triangles(tris: torch.Tensor, num_vertices: int) -> None:
    """Range-checks tris where the kernels read nothing (an empty batch or image), so no status bit is set.

    Args:
        tris: [T, 3] int32 indices, as check_triangles returns them.
        num_vertices: N.

    Raises:
        ValueError: (CPU) an index outside [0, N - 1]; elsewhere an asynchronous assertion fails instead.
    """
    if not tris.numel():
        return
    if host_values_readable(tris):
        lo, hi = int(tris.min()), int(tris.max())
        if lo < 0 or hi >= num_vertices:
            raise ValueError(index_range_message("tris", num_vertices, lo, hi, "vertices"))
    else:
        assert_index_async(tris, "tris", num_vertices)


def _int32_message(lo, hi) -> str:
    found = "" if lo is None else f", got indices in [{lo}, {hi}]"
    return f"tris must hold int32 vertex indices (the kernels index at most 2**31 - 1 vertices){found}"


def _narrow_traced(tris: torch.Tensor) -> torch.Tensor:
    fits = (tris >= INT32_MIN) & (tris <= INT32_MAX)
    torch._assert_async(fits.all(), _int32_message(None, None))
    return torch.where(fits, tris, -1).to(torch.int32).contiguous()


def rasterize(
    pos: torch.Tensor,
    tris: torch.Tensor,
    resolution: Union[int, Tuple[int, int]],
    *,
    cull: str = "none",
    check_values: bool = True,
) -> Fragments:
    """Rasterizes a batch of triangle meshes that share one triangle list.

    A clip-space vertex (x, y, z, w) lands at pixel coordinates
    ((x/w + 1) W/2, (y/w + 1) H/2); pixel (col, row) has its centre at
    (col + 0.5, row + 0.5) and row 0 is y/w = -1, the top of the image as
    OpenCV shows it. Coverage is exact (fixed point, 1/256 pixel) with a
    deterministic fill rule: a pixel centre on an edge shared by two triangles
    belongs to exactly one. The depth test keeps the smallest z/w (compared
    at float32 precision) and breaks ties by the lower triangle id, the same on
    CPU and GPU. There is no clipping: a triangle is culled when one of its
    vertices is non-finite, has w < 2**-32 (float32; 2**-256 in float64),
    which includes w <= 0 and the eye plane, where neither the screen position
    nor its gradient is representable, or lands outside [-2**20, 2**20]
    pixels (the guard band that keeps the fixed-point coverage exact). So a
    near-zero w never draws pixels or gives NaN gradients.
    Zero-area triangles never draw.

    Args:
        pos: [B, N, 4] clip-space positions (x, y, z, w), float32 or float64.
        tris: [T, 3] int32 (or int64) vertex indices, shared by the batch.
        resolution: (height, width), or one int for a square image.
        cull: "none", "back" or "front". Front-facing triangles are
            counter-clockwise as seen in the output image (row 0 at the top).
        check_values: refuse out-of-range triangle indices and non-finite
            positions. The kernels check them as they read them: on CPU a
            ValueError is raised, on CUDA an asynchronous device-side
            assertion fails (no host synchronisation); on under torch.compile
            and CUDA graph capture too. Without the check, triangles with
            out-of-range indices or non-finite vertices are skipped; the
            kernels never read out of bounds. int64 indices beyond int32 are
            refused either way (see check_triangles).

    Returns:
        Fragments(tri_id, bary, depth). Gradients flow from bary and depth to
        pos (inside triangles; coverage itself is not differentiable).

    Raises:
        TypeError: non-tensors, pos not float32/float64, tris not integer, a bad resolution type.
        ValueError: wrong shapes, mixed devices, a resolution outside [1, 32768], an
            unknown cull mode, and (with check_values) out-of-range indices or
            non-finite positions.
        RuntimeError: CUDA tensors with a CPU-only build of pgnface.
    """
    (pos,) = float32_under_autocast(pos)
    require_tensor(pos, "pos")
    require_float(pos, "pos")
    require_supported_device(pos, "pos")
    require_shape(pos, "pos", ("B", "N", 4), {})
    height, width = _resolution(resolution)
    if cull not in CULL_MODES:
        raise ValueError(f"cull must be one of {sorted(CULL_MODES)}, got {cull!r}")
    tris = check_triangles(tris, pos.shape[1], pos.device, check_values)
    if check_values and pos.shape[0] == 0:
        check_unread_triangles(tris, pos.shape[1])
    bary, depth, tri_id, _ = torch.ops.pgnface.rasterize(
        pos, tris, height, width, CULL_MODES[cull], check_mode(check_values)
    )
    return Fragments(tri_id, bary, depth)


def clip_from_pixels(
    points: torch.Tensor, resolution: Union[int, Tuple[int, int]], depth_scale: float = 1.0
) -> torch.Tensor:
    """Clip-space positions for orthographic / weak-perspective pixel coordinates.

    Maps (u, v, z) with u, v in pixels (OpenCV convention: (0, 0) is the top-left
    corner of the image, pixel centres at integer + 0.5) to (x, y, z, w) with
    w = 1, so that ``rasterize`` draws the vertex at (u, v). Depth z/w is
    ``z * depth_scale``: pass a negative scale when larger z means nearer (e.g.
    a model whose +z points towards the camera).

    Args:
        points: [..., 3] (u, v, z).
        resolution: (height, width) of the image, or one int.
        depth_scale: factor applied to z.

    Returns:
        [..., 4] clip-space positions, differentiable in points.

    Raises:
        TypeError: points is not a tensor, or a bad resolution type.
        ValueError: points is not [..., 3], or a resolution outside [1, 32768].
    """
    require_tensor(points, "points")
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape [..., 3], got {list(points.shape)}")
    height, width = _resolution(resolution)
    x = points[..., 0] * (2.0 / width) - 1.0
    y = points[..., 1] * (2.0 / height) - 1.0
    z = points[..., 2] * depth_scale
    return torch.stack([x, y, z, torch.ones_like(x)], dim=-1)


@torch.library.register_fake("pgnface::rasterize")
def _rasterize_fake(pos, tris, height, width, cull, check=2):
    B = pos.shape[0]
    return (
        pos.new_empty((B, height, width, 3)),
        pos.new_empty((B, height, width)),
        pos.new_empty((B, height, width), dtype=torch.int32),
        pos.new_empty((1,), dtype=torch.int32),
    )


@torch.library.register_fake("pgnface::rasterize_backward")
def _rasterize_backward_fake(grad_bary, grad_depth, pos, tris, tri_id):
    return pos.new_empty(pos.shape)


def _setup_context(ctx, inputs, output):
    pos, tris = inputs[:2]
    _, _, tri_id, status = output
    ctx.mark_non_differentiable(tri_id, status)
    ctx.save_for_backward(pos, tris, tri_id)


def _backward(ctx, grad_bary, grad_depth, grad_tri_id, grad_status):
    pos, tris, tri_id = ctx.saved_tensors
    B, H, W = tri_id.shape
    if grad_bary is None:
        grad_bary = pos.new_zeros((B, H, W, 3))
    if grad_depth is None:
        grad_depth = pos.new_zeros((B, H, W))
    grad_pos = torch.ops.pgnface.rasterize_backward(grad_bary, grad_depth, pos, tris, tri_id)
    (grad_pos,) = first_order_only("rasterize", (grad_pos,), (grad_bary, grad_depth, pos))
    return grad_pos, None, None, None, None, None


torch.library.register_autograd("pgnface::rasterize", _backward, setup_context=_setup_context)
