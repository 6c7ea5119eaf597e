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
