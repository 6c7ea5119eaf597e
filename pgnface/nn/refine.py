"""Differentiable shape refinement between pose solves (the optional PGN iterations)."""

from typing import Optional

import torch

from pgnface.morphable import MorphableModel


def refine_shape(
    morphable: MorphableModel,
    coeffs: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    translation: torch.Tensor,
    strength: float = 0.1,
    weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One regularised least-squares update of the shape coefficients with the pose held fixed.

    Solves, per batch item,
    ``min_c sum_l w_l |s R (m_l + B_l c) + t - y_l|^2 + lam |c - c0|^2``
    in closed form (a K x K linear system), where m_l, B_l are the mean and
    identity+expression basis rows of the model's landmark vertices, y the
    target landmarks and c0 the network's coefficients. ``lam = strength *
    mean(diag(A^T A))`` keeps the prior's pull independent of the crop size
    and the model's units. Differentiable in everything (torch.linalg.solve).

    Args:
        morphable: the 3DMM (its landmark_vertices select the rows).
        coeffs: [B, Ki + Ke] identity and expression coefficients c0.
        target: [B, L, 3] landmarks in crop pixels, in morphable.landmark_ids order.
        scale: [B] the current pose's scale.
        rotation: [B, 3, 3] its rotation.
        translation: [B, 3] its translation.
        strength: relative weight of the prior (> 0 keeps the system well posed).
        weights: optional [B, L] non-negative landmark weights.

    Returns:
        [B, Ki + Ke] refined coefficients.

    Raises:
        ValueError: strength is not positive.
    """
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength}")
    B, L = target.shape[:2]
    rows = morphable.landmark_vertices
    basis = morphable.shape_basis[rows]  # [L, 3, K]
    sR = scale[:, None, None] * rotation
    A = torch.einsum("bij,ljk->blik", sR, basis)  # [B, L, 3, K]
    r = target - (morphable.mean[rows] @ sR.transpose(1, 2) + translation[:, None, :])  # [B, L, 3]
    if weights is not None:
        root = weights.clamp(min=0).sqrt()
        A, r = A * root[:, :, None, None], r * root[:, :, None]
    A, r = A.reshape(B, 3 * L, -1), r.reshape(B, 3 * L)
    AtA = A.transpose(1, 2) @ A
    lam = strength * AtA.diagonal(dim1=1, dim2=2).mean(-1).clamp(min=1e-12)
    eye = torch.eye(AtA.shape[-1], dtype=A.dtype, device=A.device)
    lhs = AtA + lam[:, None, None] * eye
    rhs = (A.transpose(1, 2) @ r[..., None])[..., 0] + lam[:, None] * coeffs
    return torch.linalg.solve(lhs, rhs)
