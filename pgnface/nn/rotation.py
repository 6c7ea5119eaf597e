"""Rotation parameterisations for the regressed-pose variant."""

import torch


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """Continuous 6D rotation representation -> rotation matrices (Gram-Schmidt).

    The 6 numbers are two 3-vectors a, b; the columns of R are
    ``c1 = a/|a|``, ``c2 = normalised(b - (c1.b) c1)``, ``c3 = c1 x c2``, so
    R is a proper rotation for any input with a, b not parallel. Unlike
    Euler angles or quaternions this map has no discontinuity, which is why
    it regresses better.

    Args:
        x: [..., 6] (a, b).

    Returns:
        [..., 3, 3] rotation matrices (det +1).

    Raises:
        TypeError: x is not a tensor.
        ValueError: x is not [..., 6].
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.shape[-1] != 6:
        raise ValueError(f"x must have shape [..., 6], got {list(x.shape)}")
    a, b = x[..., :3], x[..., 3:]
    c1 = torch.nn.functional.normalize(a, dim=-1, eps=1e-8)
    c2 = torch.nn.functional.normalize(b - (c1 * b).sum(-1, keepdim=True) * c1, dim=-1, eps=1e-8)
    c3 = torch.cross(c1, c2, dim=-1)
    return torch.stack([c1, c2, c3], dim=-1)


def rotation_to_6d(R: torch.Tensor) -> torch.Tensor:
    """The 6D representation of rotations (their first two columns): the inverse of rotation_from_6d.

    Args:
        R: [..., 3, 3] rotations.

    Returns:
        [..., 6] (column 0, column 1).
    """
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)
