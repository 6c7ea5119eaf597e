"""Finishing the PGN pose solve outside PyTorch: NumPy Umeyama on the exported graph's outputs."""

import json
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def umeyama(
    src: np.ndarray, dst: np.ndarray, weights: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The similarity minimising sum_i w_i |scale R src_i + t - dst_i|^2 (no reflection), per batch item.

    The NumPy twin of ``pgnface.ops.similarity_align`` (Umeyama 1991).

    Args:
        src, dst: [B, P, 3] corresponding points, P >= 3.
        weights: optional [B, P] non-negative weights.

    Returns:
        scale [B], R [B, 3, 3] (det +1), t [B, 3].
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(src.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum(1, keepdims=True)
    mu_s, mu_d = (w[..., None] * src).sum(1), (w[..., None] * dst).sum(1)
    cs, cd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = np.einsum("bp,bpi,bpj->bij", w, cd, cs)  # sum_i w_i dst_i src_i^T
    U, S, Vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(U @ Vt))
    sign[sign == 0] = 1.0
    D = np.ones((len(src), 3))
    D[:, 2] = sign
    R = U @ (D[..., None] * Vt)
    var = (w * (cs**2).sum(-1)).sum(1)
    scale = (S * D).sum(1) / np.where(var > 0, var, 1.0)
    t = mu_d - scale[:, None] * np.einsum("bij,bj->bi", R, mu_s)
    return scale, R, t


def finish_pose(
    outputs: Dict[str, np.ndarray], landmark_ids: Sequence[int]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PGN pose from an exported graph's outputs: scale [B], R [B, 3, 3], t [B, 3] (crop = s R x + t).

    Args:
        outputs: the graph's outputs by name (needs landmarks and model_landmarks).
        landmark_ids: the iBUG index of each model landmark (the graph's
            ``landmark_ids`` metadata; a JSON string is accepted).
    """
    if isinstance(landmark_ids, str):
        landmark_ids = json.loads(landmark_ids)
    target = np.asarray(outputs["landmarks"])[:, list(landmark_ids)]
    return umeyama(outputs["model_landmarks"], target)
