"""Cameras: model space to image pixels and to the rasterizer's clip space.

Image space is OpenCV's camera frame in pixel units: u to the right, v down,
depth away from the camera (right-handed). A model (+y up, +z towards the
viewer) seen frontally therefore has rotation ``FRONTAL = diag(1, -1, -1)``,
a proper rotation, so the pose of a face in an image is always a similarity
transform without reflection, the form ``similarity_align`` returns.

- Weak perspective (the PGN case): ``p = s R x + t``, p = (u, v, depth).
- Pinhole perspective: ``X = R x + t`` in the camera frame (metres, mm, any
  unit), ``u = fx X/Z + cx``, ``v = fy Y/Z + cy``.

Both produce clip-space positions for ``pgnface.ops.rasterize`` whose depth
(z/w) grows with the distance from the camera (smaller is nearer) and whose
pixel coordinates follow the rasterizer's convention (pixel centres at
integer + 0.5).
"""

from dataclasses import dataclass
from typing import Tuple, Union

import torch

from pgnface import ops

FRONTAL = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def _resolution(resolution) -> Tuple[int, int]:
    return (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)


@dataclass
class WeakPerspectiveCamera:
    """p = s R x + t: model points to (u, v, depth) image coordinates.

    Attributes:
        scale: [B] pixels per model unit.
        rotation: [B, 3, 3] proper rotation (model to image frame).
        translation: [B, 3] (u, v, depth) of the model origin; the depth part
            only shifts depth values.
        depth_range: the depth span (pixels) mapped onto the rasterizer's
            depth; anything works as long as it exceeds the face's depth.
    """

    scale: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    depth_range: float = 1e4

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Applies ``s R x + t``.

        Args:
            points: [B, N, 3] model points.

        Returns:
            [B, N, 3] image (u, v, depth), u and v in pixels.
        """
        return self.scale[:, None, None] * points @ self.rotation.transpose(1, 2) + self.translation[:, None, :]

    def clip(self, points: torch.Tensor, resolution: Union[int, Tuple[int, int]]) -> torch.Tensor:
        """Projects model points to clip space for the rasterizer.

        Args:
            points: [B, N, 3] model points.
            resolution: (height, width) of the image, or one int.

        Returns:
            [B, N, 4] clip-space positions.
        """
        return self.clip_from_image(self.project(points), resolution)

    def clip_from_image(self, image_points: torch.Tensor, resolution) -> torch.Tensor:
        """Clip-space positions of already projected points.

        Args:
            image_points: [B, N, 3] image (u, v, depth).
            resolution: (height, width) of the image, or one int.

        Returns:
            [B, N, 4] clip-space positions, depth scaled by 1 / depth_range.
        """
        return ops.clip_from_pixels(image_points, _resolution(resolution), depth_scale=1.0 / self.depth_range)


@dataclass
class PerspectiveCamera:
    """Pinhole camera: X = R x + t (camera frame, OpenCV axes), u = fx X/Z + cx, v = fy Y/Z + cy.

    Attributes:
        focal: [B, 2] (fx, fy) in pixels.
        principal: [B, 2] (cx, cy) in pixels.
        rotation: [B, 3, 3] model to camera frame.
        translation: [B, 3] in model units.
        near: camera depth mapped to the rasterizer's depth 0; points in front of
            it are still drawn while Z > 0.
        far: camera depth mapped to the rasterizer's depth 1.
    """

    focal: torch.Tensor
    principal: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    near: float = 1.0
    far: float = 1e4

    def camera_points(self, points: torch.Tensor) -> torch.Tensor:
        """Applies ``R x + t``.

        Args:
            points: [B, N, 3] model points.

        Returns:
            [B, N, 3] camera-frame points (OpenCV axes: x right, y down, z forward).
        """
        return points @ self.rotation.transpose(1, 2) + self.translation[:, None, :]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Projects model points through the pinhole.

        Args:
            points: [B, N, 3] model points.

        Returns:
            [B, N, 3] (u, v, Z): pixel coordinates and camera-frame depth.
        """
        cam = self.camera_points(points)
        z = cam[..., 2:3]
        uv = cam[..., :2] / z * self.focal[:, None, :] + self.principal[:, None, :]
        return torch.cat([uv, z], -1)

    def clip(self, points: torch.Tensor, resolution: Union[int, Tuple[int, int]]) -> torch.Tensor:
        """Projects model points to clip space for the rasterizer.

        Args:
            points: [B, N, 3] model points.
            resolution: (height, width) of the image, or one int.

        Returns:
            [B, N, 4] clip-space positions: w = Z, and depth z/w in [0, 1] over [near, far].
        """
        height, width = _resolution(resolution)
        cam = self.camera_points(points)
        X, Y, Z = cam.unbind(-1)
        fx, fy = self.focal[:, 0:1], self.focal[:, 1:2]
        cx, cy = self.principal[:, 0:1], self.principal[:, 1:2]
        # x/w = 2u/W - 1 with u = fx X/Z + cx, so x = (2 fx X + (2 cx - W) Z) / W.
        x = (2 * fx * X + (2 * cx - width) * Z) / width
        y = (2 * fy * Y + (2 * cy - height) * Z) / height
        z = (Z - self.near) * (self.far / (self.far - self.near))
        return torch.stack([x, y, z, Z], -1)
