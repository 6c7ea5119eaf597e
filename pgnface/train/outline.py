"""A 2D landmark loss for real labels whose jaw points trace the visible face outline.

In 300-W-style labels (300-W, YouTube Faces) the 17 jaw points (0-16) follow
the silhouette of the face, not the 3D jawline the landmark head predicts. On
the near side of a turned face and at the chin the two coincide; on the far
side the labelled point sits on the cheek's edge, outside the projection of
the hidden 3D jaw, and how far outside grows with the yaw.

So each jaw point is scored by a mix of two penalties, by how visible its
side is (``jaw_visibility``): the full 2D distance where the jaw is visible,
and only the part of the error that lies *outside* the outline (along the
outline's outward normal) where it is hidden, since a hidden 3D jaw point
projects inside the silhouette. The 51 inner points get the full 2D distance.
Lengths are divided by the crop size, like pgnface.train.losses.

Shapes: B faces, 68 iBUG points, 2 coordinates (crop pixels).
"""

from typing import Optional

import torch

JAW = slice(0, 17)
CHIN = 8


def jaw_visibility(target: torch.Tensor, full_turn: float = 0.4) -> torch.Tensor:
    """How visible each jaw point's side is, from the labels alone: [B, 68, 2] -> [B, 17] in [0, 1].

    The yaw is read from the horizontal distances of the nose tip (point 30) to
    the two jaw ends (points 0 and 16): r = (far - near) / (far + near), 0 for a
    frontal face. Points on the side with the shorter distance are on the far
    side and get 1 - |r| / full_turn (clamped at 0); the near side and the chin
    get 1.

    Args:
        target: labelled points.
        full_turn: the |r| at which the far side counts as fully hidden (0.4 is
            about 35 degrees of yaw for an average face).
    """
    nose = target[:, 30, 0]
    right = (nose - target[:, 0, 0]).abs()  # image-left jaw end (the subject's right)
    left = (target[:, 16, 0] - nose).abs()
    r = (left - right) / (left + right).clamp(min=1e-6)  # > 0: the image-left side is the far one
    far_weight = (1 - r.abs() / full_turn).clamp(min=0)
    ones = torch.ones_like(far_weight)
    first = torch.where(r > 0, far_weight, ones)[:, None].expand(-1, CHIN)  # points 0..7
    last = torch.where(r < 0, far_weight, ones)[:, None].expand(-1, 16 - CHIN)  # points 9..16
    return torch.cat([first, ones[:, None], last], 1)


def outline_normals(target: torch.Tensor) -> torch.Tensor:
    """Unit outward normals [B, 17, 2] of the labelled jaw outline (away from the inner points' centroid)."""
    jaw = target[:, JAW]
    ahead = torch.cat([jaw[:, 1:], jaw[:, -1:]], 1)
    behind = torch.cat([jaw[:, :1], jaw[:, :-1]], 1)
    tangent = ahead - behind
    normal = torch.stack([tangent[..., 1], -tangent[..., 0]], -1)
    outward = jaw - target[:, 17:].mean(1, keepdim=True)
    normal = torch.where(((normal * outward).sum(-1, keepdim=True) < 0), -normal, normal)
    return normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-6)


def outline_landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    size: float,
    face_weights: Optional[torch.Tensor] = None,
    full_turn: float = 0.4,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Mean 2D landmark error / crop size, the jaw scored as an outline (see the module docstring).

    Args:
        pred: [B, 68, 2+] predicted points in crop pixels (columns beyond 2 are ignored).
        target: [B, 68, 2] labelled points in crop pixels.
        size: crop size S.
        face_weights: optional [B] per-face weights (label quality).
        full_turn: see jaw_visibility.

    Returns:
        The weighted mean over faces and points.
    """
    if pred.dim() != 3 or pred.shape[1] != 68 or pred.shape[2] < 2:
        raise ValueError(f"pred must be [B, 68, 2+] landmarks, got {list(pred.shape)}")
    if target.shape != (pred.shape[0], 68, 2):
        raise ValueError(f"target must be [{pred.shape[0]}, 68, 2], got {list(target.shape)}")
    if not size > 0:
        raise ValueError(f"size (the crop size in pixels) must be positive, got {size!r}")
    target = target.to(pred)
    error = pred[..., :2] - target
    distance = (error.square().sum(-1) + eps * eps).sqrt()  # [B, 68]
    visible = jaw_visibility(target, full_turn)
    outside = (error[:, JAW] * outline_normals(target)).sum(-1).clamp(min=0)
    jaw = visible * distance[:, JAW] + (1 - visible) * outside
    per_face = torch.cat([jaw, distance[:, 17:]], 1).mean(1)
    if face_weights is None:
        return per_face.mean() / size
    face_weights = face_weights.to(per_face)
    return (per_face * face_weights).sum() / face_weights.sum().clamp(min=1e-12) / size
