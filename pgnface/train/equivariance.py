"""Equivariance self-supervision: the landmark head must move with the image.

On an unlabelled real crop nothing says where the landmarks are, but one thing
is known: if the crop is rotated, scaled, shifted or mirrored, the landmarks
must be rotated, scaled, shifted or mirrored (and, when mirrored, renamed left
for right) in the same way. ``equivariance_loss`` compares the head's
landmarks on a warped crop with the warped landmarks of the original crop.
It trains the head on the real-photo domain without labels; the synthetic
labels keep it from drifting (an equivariant answer is not necessarily the
right one).

Transforms act on crop pixels p (pixel centres at i + 0.5, as the landmarks):
``p' = A (p - c) + c + b`` with c the crop centre, A = s R (times a mirror in
x when flipped) and b a shift in pixels.

    warp = random_warps(n, size, generator)
    warped = warp_images(images, warp)
    loss = equivariance_loss(head(images), head(warped), warp, size)
"""

from dataclasses import dataclass

import torch

from pgnface.morphable.ibug68 import IBUG68_MIRROR
from pgnface.train.losses import landmark_loss


@dataclass
class Warp:
    """A batch of similarity transforms of crop pixels (see the module docstring).

    Attributes:
        matrix: [n, 2, 2] A (rotation x scale, with the x mirror when flipped).
        shift: [n, 2] b, pixels.
        flipped: [n] bool, mirrored images (landmark names swap left/right).
    """

    matrix: torch.Tensor
    shift: torch.Tensor
    flipped: torch.Tensor


def random_warps(
    n: int,
    size: int,
    generator: torch.Generator,
    rotation: float = 20.0,
    scale: float = 0.1,
    shift: float = 0.05,
    flip_prob: float = 0.5,
) -> Warp:
    """Random similarity transforms of square crops about their centre.

    Args:
        n: how many.
        size: crop side S in pixels.
        generator: the random generator (CPU).
        rotation: largest rotation in degrees.
        scale: largest relative scale change.
        shift: largest shift as a fraction of S.
        flip_prob: probability of mirroring (applied first).

    Returns:
        Warp(matrix [n, 2, 2], shift [n, 2] pixels, flipped [n] bool).
    """
    r = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    angle = torch.deg2rad((2 * r[:, 0] - 1) * rotation)
    s = 1 + (2 * r[:, 1] - 1) * scale
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    flipped = r[:, 4] < flip_prob
    matrix[flipped, :, 0] = -matrix[flipped, :, 0]  # mirror x first, then rotate and scale
    offset = (2 * r[:, 2:4] - 1) * shift * size
    return Warp(matrix.float(), offset.float(), flipped)


def warp_points(points: torch.Tensor, warp: Warp, size: int) -> torch.Tensor:
    """Points of the crops, moved by the warps (extra columns, e.g. depth, kept).

    Args:
        points: [n, P, 2+] crop pixels.
        warp: the n transforms.
        size: crop side S.

    Returns:
        [n, P, 2+] warped points.
    """
    centre = size / 2
    uv = points[..., :2] - centre
    moved = uv @ warp.matrix.to(points).transpose(1, 2) + centre + warp.shift.to(points)[:, None]
    return torch.cat([moved, points[..., 2:]], -1)


def warp_images(images: torch.Tensor, warp: Warp) -> torch.Tensor:
    """Crops warped by the transforms (bilinear, zeros outside).

    Args:
        images: [n, C, S, S] crops.
        warp: the n transforms.

    Returns:
        [n, C, S, S] warped crops.
    """
    n, _, S, _ = images.shape
    A = warp.matrix.to(images)
    # affine_grid maps output to input in [-1, 1] coordinates (pixel centres, align_corners=False):
    # q_in = A^-1 (q_out - b'), with b' the shift in those units.
    inverse = torch.linalg.inv(A)
    offset = warp.shift.to(images) * (2.0 / S)
    theta = torch.cat([inverse, -(inverse @ offset[:, :, None])], -1)
    grid = torch.nn.functional.affine_grid(theta, [n, images.shape[1], S, S], align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def equivariance_loss(original: torch.Tensor, warped: torch.Tensor, warp: Warp, size: int) -> torch.Tensor:
    """Mean 2D distance / S between the landmarks of warped crops and the warped landmarks.

    Both sides get gradients: the loss asks the two predictions to agree.

    Args:
        original: [n, 68, 2+] the head's iBUG-68 landmarks on the crops (crop pixels).
        warped: [n, 68, 2+] the head's landmarks on warp_images(crops, warp).
        warp: the transforms.
        size: crop side S.

    Returns:
        [] the mean distance over S (mirrored warps swap left and right points).

    Raises:
        ValueError: original or warped is not [n, 68, 2+].
    """
    if original.shape[1] != 68 or warped.shape[:2] != original.shape[:2]:
        raise ValueError(
            f"original and warped must both be [n, 68, 2+] iBUG-68 landmarks, got "
            f"{list(original.shape)} and {list(warped.shape)}"
        )
    target = warp_points(original[..., :2], warp, size)
    mirror = torch.tensor(IBUG68_MIRROR, device=target.device)
    flipped = warp.flipped.to(target.device)[:, None, None]
    target = torch.where(flipped, target[:, mirror], target)
    return landmark_loss(warped[..., :2], target, size)
