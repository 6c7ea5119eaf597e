"""Differentiable face renderer: a 3DMM instance to an image, mask, depth and visibility.

Per-vertex Lambertian shading with SH lighting (Gouraud: colours are computed
at the vertices and interpolated with perspective-correct barycentrics), then
composited over a background. Everything is differentiable w.r.t. the shape,
pose, albedo and lighting (inside the face; coverage itself is not).
"""

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from pgnface import ops
from pgnface.morphable.camera import PerspectiveCamera, WeakPerspectiveCamera
from pgnface.morphable.shading import sh_irradiance, vertex_normals

# Image frame (u right, v down, depth away) -> view frame (x right, y up, z to the camera).
_IMAGE_TO_VIEW = torch.tensor([1.0, -1.0, -1.0])


@dataclass
class Rendering:
    """Output of :func:`render`. Shapes: B images of H x W, N vertices.

    Attributes:
        image: [B, H, W, 3] RGB, composited over the background.
        mask: [B, H, W] float, 1 where the face covers the pixel.
        depth: [B, H, W] rasterizer depth (z/w, smaller is nearer; +inf off the face).
        visible: [B, N] bool, vertices not hidden by the surface (depth test at
            the vertex's own pixel) and inside the image.
        image_points: [B, N, 3] projected vertices (u, v, depth or Z).
        fragments: the rasterizer's Fragments.
        shaded: [B, N, 3] per-vertex colours before interpolation.
    """

    image: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    visible: torch.Tensor
    image_points: torch.Tensor
    fragments: ops.Fragments
    shaded: torch.Tensor


def vertex_visibility(
    image_points: torch.Tensor,
    clip: torch.Tensor,
    fragments: ops.Fragments,
    triangles: torch.Tensor,
    tolerance: float = 0.02,
) -> torch.Tensor:
    """Which vertices a render shows.

    A vertex is visible when it lies in the image and the depth buffer at its
    pixel is not nearer than the vertex by more than `tolerance` times the depth
    extent of the drawn surface, or the triangle drawn there uses the vertex.

    Args:
        image_points: [B, N, 3] projected vertices (u, v in pixels).
        clip: [B, N, 4] their clip-space positions.
        fragments: the rasterizer's output for the same vertices.
        triangles: [T, 3] the triangle list that was rasterized.
        tolerance: depth slack as a fraction of the drawn depth range.

    Returns:
        [B, N] bool.
    """
    B, N, _ = image_points.shape
    H, W = fragments.tri_id.shape[1:]
    u, v = image_points[..., 0], image_points[..., 1]
    col, row = torch.floor(u).long(), torch.floor(v).long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H) & (clip[..., 3] > 0)
    col, row = col.clamp(0, W - 1), row.clamp(0, H - 1)
    flat = row * W + col
    depth_buffer = fragments.depth.reshape(B, -1).gather(1, flat)
    tri_buffer = fragments.tri_id.reshape(B, -1).gather(1, flat)
    vertex_depth = clip[..., 2] / clip[..., 3]
    finite = torch.isfinite(depth_buffer)
    drawn = fragments.depth[torch.isfinite(fragments.depth)]
    span = (drawn.max() - drawn.min()) if drawn.numel() else drawn.new_tensor(1.0)
    not_hidden = ~finite | (vertex_depth <= depth_buffer + tolerance * span)
    tris = triangles.long()
    drawn_tri = tris[tri_buffer.clamp(min=0)]  # [B, N, 3]
    owns = (tri_buffer >= 0) & (drawn_tri == torch.arange(N, device=flat.device)[None, :, None]).any(-1)
    return inside & (not_hidden | owns)


def render(
    vertices: torch.Tensor,
    triangles: torch.Tensor,
    albedo: torch.Tensor,
    gamma: torch.Tensor,
    camera: Union[WeakPerspectiveCamera, PerspectiveCamera],
    resolution: Union[int, Tuple[int, int]],
    background: Optional[torch.Tensor] = None,
    cull: str = "back",
) -> Rendering:
    """Renders posed-model-space meshes.

    Args:
        vertices: [B, N, 3] model-space vertices (e.g. MorphableModel.vertices(id, exp)).
        triangles: [T, 3] int32, counter-clockwise seen from outside.
        albedo: [B, N, 3] or [N, 3] per-vertex RGB albedo.
        gamma: [B, 9, 3] SH lighting in the view frame (see pgnface.morphable.shading).
        camera: a WeakPerspectiveCamera or PerspectiveCamera with batch B.
        resolution: (H, W) or one int.
        background: [B, H, W, 3] image or [3] colour; black if None.
        cull: rasterizer culling ("back" skips the inside of the head).

    Returns:
        Rendering(image, mask, depth, visible, image_points, fragments, shaded).
    """
    H, W = (resolution, resolution) if isinstance(resolution, int) else resolution
    B = vertices.shape[0]
    clip = camera.clip(vertices, (H, W))
    image_points = camera.project(vertices)
    normals = vertex_normals(vertices, triangles)
    view_normals = (normals @ camera.rotation.transpose(1, 2)) * _IMAGE_TO_VIEW.to(normals)
    if albedo.dim() == 2:
        albedo = albedo.expand(B, -1, -1)
    shaded = albedo * sh_irradiance(view_normals, gamma)
    fragments = ops.rasterize(clip, triangles, (H, W), cull=cull)
    colour = ops.interpolate(shaded, fragments, triangles)
    mask = fragments.mask.to(colour.dtype)
    if background is None:
        background = colour.new_zeros(3)
    image = colour + (1 - mask[..., None]) * background.to(colour)
    visible = vertex_visibility(image_points, clip.detach(), fragments, triangles)
    return Rendering(
        image=image,
        mask=mask,
        depth=fragments.depth,
        visible=visible,
        image_points=image_points,
        fragments=fragments,
        shaded=shaded,
    )
