"""Pose helpers around similarity_align: apply a similarity, rotation to angles, landmarks to pose.

Angle convention (the one AFLW2000-3D / 3DDFA pose labels use):
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` with right-handed elementary rotations
``Rx(a) = [[1, 0, 0], [0, cos a, -sin a], [0, sin a, cos a]]`` and likewise
about y and z; R maps model coordinates to the target frame. So
``yaw = -asin(R[2, 0])`` lies in [-90, 90] degrees, ``pitch = atan2(R[2, 1], R[2, 2])``
and ``roll = atan2(R[1, 0], R[0, 0])`` in (-180, 180]. At yaw = +-90 exactly
(gimbal lock) only pitch - roll (or pitch + roll) is defined; roll is then
reported as 0.
"""

from typing import NamedTuple, Optional

import torch

from pgnface.ops._checks import require_shape, require_tensor
from pgnface.ops.similarity_align import similarity_align


class Pose(NamedTuple):
    """A similarity pose: ``points_out = scale * R @ points + t``, and R's angles."""

    scale: torch.Tensor  # [B]
    R: torch.Tensor  # [B, 3, 3]
    t: torch.Tensor  # [B, 3]
    angles: torch.Tensor  # [B, 3] yaw, pitch, roll in degrees


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Returns ``scale[b] * R[b] @ points[b, i] + t[b]`` for every point.

    Args:
        points: [B, P, 3] points.
        scale: [B] scales.
        R: [B, 3, 3] rotations.
        t: [B, 3] translations.

    Returns:
        [B, P, 3] (differentiable in all arguments).
    """
    for name, x in (("points", points), ("scale", scale), ("R", R), ("t", t)):
        require_tensor(x, name)
    sizes = {}
    require_shape(points, "points", ("B", "P", 3), sizes)
    require_shape(scale, "scale", ("B",), sizes)
    require_shape(R, "R", ("B", 3, 3), sizes)
    require_shape(t, "t", ("B", 3), sizes)
    return scale[:, None, None] * (points @ R.mT) + t[:, None, :]


def rotation_to_angles(R: torch.Tensor) -> torch.Tensor:
    """Yaw, pitch, roll in degrees of rotations ``R = Rz(roll) Ry(yaw) Rx(pitch)``.

    See the module docstring for the convention. Differentiable away from
    yaw = +-90 degrees.

    Args:
        R: [B, 3, 3] rotation matrices.

    Returns:
        [B, 3]: yaw in [-90, 90], pitch and roll in (-180, 180].
    """
    require_tensor(R, "R")
    require_shape(R, "R", ("B", 3, 3), {})
    r00, r10, r20 = R[:, 0, 0], R[:, 1, 0], R[:, 2, 0]
    r21, r22 = R[:, 2, 1], R[:, 2, 2]
    cos_yaw = torch.sqrt(r00 * r00 + r10 * r10)
    yaw = torch.atan2(-r20, cos_yaw)
    locked = cos_yaw < 1e-6
    pitch_free = torch.atan2(r21, r22)
    # Gimbal lock: R[0, 1] = sin(yaw) sin(pitch), R[1, 1] = cos(pitch) with roll = 0.
    pitch_locked = torch.atan2(torch.sign(-r20) * R[:, 0, 1], R[:, 1, 1])
    pitch = torch.where(locked, pitch_locked, pitch_free)
    roll = torch.where(locked, torch.zeros_like(yaw), torch.atan2(r10, r00))
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=1))


def landmarks_to_pose(
    model_landmarks: torch.Tensor,
    landmarks: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    estimate_scale: bool = True,
    **kwargs,
) -> Pose:
    """Solves the head pose that maps 3D model landmarks onto observed 3D landmarks.

    The pose is the similarity ``landmarks ~ scale * R @ model_landmarks + t``
    from :func:`similarity_align`; its angles follow the module's convention.

    Args:
        model_landmarks: [B, P, 3] landmarks of the (posed-to-identity) model.
        landmarks: [B, P, 3] observed / predicted landmarks.
        weights: optional [B, P] non-negative weights (0 for missing landmarks).
        estimate_scale: fit the scale (else 1).
        **kwargs: passed on to similarity_align (e.g. check_values).

    Returns:
        Pose(scale [B], R [B, 3, 3], t [B, 3], angles [B, 3] yaw/pitch/roll degrees).
    """
    scale, R, t = similarity_align(model_landmarks, landmarks, weights, estimate_scale, **kwargs)
    return Pose(scale, R, t, rotation_to_angles(R))


def rotation_from_angles(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Model-space rotations ``Rz(roll) Ry(yaw) Rx(pitch)`` from angles in degrees.

    The inverse of ``pgnface.ops.rotation_to_angles`` (see the module docstring).

    Args:
        yaw: [B] degrees about y.
        pitch: [B] degrees about x.
        roll: [B] degrees about z.

    Returns:
        [B, 3, 3] rotations, dtype and device of the angles, differentiable.
    """
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    zero, one = torch.zeros_like(y), torch.ones_like(y)

    def mat(rows):
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    rx = mat([[one, zero, zero], [zero, p.cos(), -p.sin()], [zero, p.sin(), p.cos()]])
    ry = mat([[y.cos(), zero, y.sin()], [zero, one, zero], [-y.sin(), zero, y.cos()]])
    rz = mat([[r.cos(), -r.sin(), zero], [r.sin(), r.cos(), zero], [zero, zero, one]])
    return rz @ ry @ rx
