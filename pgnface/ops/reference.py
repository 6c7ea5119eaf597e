"""Readable pure-PyTorch versions of every pgnface op.

These are the ground truth the tests hold the CPU and CUDA kernels against
(values and gradients, via ordinary autograd) and the baselines the
benchmarks compare with. They favour clarity over speed and memory.
"""

from typing import Optional

import torch


def synthesize(
    mean: torch.Tensor,
    basis: torch.Tensor,
    coeffs: torch.Tensor,
    rotation: Optional[torch.Tensor] = None,
    scale: Optional[torch.Tensor] = None,
    translation: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reference of pgnface.ops.synthesize: s * R (mean + basis @ c) + t.

    Args:
        mean: [N, 3]. basis: [N, 3, K]. coeffs: [B, K].
        rotation: [B, 3, 3] or None. scale: [B] or None. translation: [B, 3] or None.

    Returns:
        [B, N, 3].
    """
    shape = mean + torch.einsum("ndk,bk->bnd", basis, coeffs)  # [B, N, 3]
    if rotation is not None:
        shape = shape @ rotation.transpose(1, 2)
    if scale is not None:
        shape = shape * scale[:, None, None]
    if translation is not None:
        shape = shape + translation[:, None, :]
    return shape


def svd3x3(M: torch.Tensor):
    """Reference of pgnface.ops.svd3x3 via torch.linalg.svd.

    Args:
        M: [B, 3, 3].

    Returns:
        (U [B, 3, 3], S [B, 3], V [B, 3, 3]) with M = U diag(S) V^T. The signs
        of matching columns of U and V may differ from pgnface's.
    """
    U, S, Vh = torch.linalg.svd(M)
    return U, S, Vh.mT


def similarity_align(
    src: torch.Tensor,
    dst: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    estimate_scale: bool = True,
):
    """Reference of pgnface.ops.similarity_align (weighted Umeyama, torch.linalg.svd).

    Args:
        src, dst: [B, P, 3]. weights: [B, P] non-negative, or None for all ones.
        estimate_scale: fit the scale (else it is 1).

    Returns:
        (scale [B], R [B, 3, 3], t [B, 3]) minimising
        sum_i w_i |scale R src_i + t - dst_i|^2, with the same conventions as
        the op for degenerate items (R = I, scale = 1, t = mu_dst - mu_src).
    """
    if weights is None:
        weights = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device)
    W = weights.sum(1)  # [B]
    inv_w = torch.where(W > 0, 1.0 / torch.where(W > 0, W, torch.ones_like(W)), torch.zeros_like(W))
    mu_x = torch.einsum("bp,bpd->bd", weights, src) * inv_w[:, None]
    mu_y = torch.einsum("bp,bpd->bd", weights, dst) * inv_w[:, None]
    xc = src - mu_x[:, None]
    yc = dst - mu_y[:, None]
    cov = torch.einsum("bp,bpi,bpj->bij", weights, yc, xc) * inv_w[:, None, None]
    var_x = torch.einsum("bp,bpd->b", weights, xc * xc) * inv_w
    eps = torch.finfo(src.dtype).eps
    degenerate = (W <= 0) | ~(var_x > 256 * eps * eps * (mu_x * mu_x).sum(1)) | ~(var_x > 0)
    U, D, Vh = torch.linalg.svd(cov)
    d = torch.where(torch.det(U) * torch.det(Vh) < 0, -1.0, 1.0).to(src.dtype)
    flip = torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=1)  # [B, 3]
    R = (U * flip[:, None, :]) @ Vh
    if estimate_scale:
        safe_var = torch.where(degenerate, torch.ones_like(var_x), var_x)
        scale = (D * flip).sum(1) / safe_var
    else:
        scale = torch.ones_like(var_x)
    eye = torch.eye(3, dtype=src.dtype, device=src.device).expand_as(R)
    R = torch.where(degenerate[:, None, None], eye, R)
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    t = mu_y - scale[:, None] * (R @ mu_x[:, :, None])[..., 0]
    return scale, R, t
