"""Finishing the PGN pose solve outside PyTorch: NumPy Umeyama on the exported graph's outputs."""

import json
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def umeyama(
    src: np.ndarray, dst: np.ndarray, weights: Optional[np.ndarray] = None, estimate_scale: bool = True
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The similarity minimising sum_i w_i |scale R src_i + t - dst_i|^2 (no reflection), per batch item.

    The NumPy twin of ``pgnface.ops.similarity_align`` (Umeyama 1991), with the
    op's rules for degenerate items: when an item's weights sum to 0 or its src
    points coincide (weighted spread at the rounding level of the centroid),
    the result is ``R = I``, ``scale = 1``, ``t = mu_dst - mu_src`` (centroids
    taken as 0 when the weights sum to 0). An item with NaN or Inf inputs gets
    NaN results; the other items are unaffected.

    Args:
        src: [B, P, 3] source points, P >= 3.
        dst: [B, P, 3] target points corresponding to `src`.
        weights: optional [B, P] non-negative weights (all ones if None).
        estimate_scale: fit the scale; with False, scale is 1.

    Returns:
        (scale [B], R [B, 3, 3] with det +1, t [B, 3]), float64.

    Raises:
        ValueError: src is not [B, P, 3] with P >= 3, or dst / weights do not match it.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.ndim != 3 or src.shape[2] != 3 or src.shape[1] < 3:
        raise ValueError(f"src must have shape [B, P, 3] with P >= 3, got {list(src.shape)}")
    if dst.shape != src.shape:
        raise ValueError(f"dst must have the shape of src {list(src.shape)}, got {list(dst.shape)}")
    w = np.ones(src.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    if w.shape != src.shape[:2]:
        raise ValueError(f"weights must have shape [B, P] = {list(src.shape[:2])}, got {list(w.shape)}")
    with np.errstate(invalid="ignore"):  # non-finite items become NaN below
        total = w.sum(1)
        w = w / np.where(total > 0, total, 1.0)[:, None]  # all zero stays zero: centroids 0
        mu_s, mu_d = (w[..., None] * src).sum(1), (w[..., None] * dst).sum(1)
        cs, cd = src - mu_s[:, None], dst - mu_d[:, None]
        cov = np.einsum("bp,bpi,bpj->bij", w, cd, cs)  # sum_i w_i dst_i src_i^T
        var = (w * (cs**2).sum(-1)).sum(1)
        finite = np.isfinite(cov).all((1, 2)) & np.isfinite(var) & np.isfinite(mu_s).all(1) & np.isfinite(mu_d).all(1)
        # Coinciding src points leave a spread at the rounding level of |mu_src| (the op's threshold).
        noise = 256 * np.finfo(np.float64).eps ** 2 * (mu_s**2).sum(1)
        degenerate = finite & ~((total > 0) & (var > noise) & (var > 0))
        solve = finite & ~degenerate
        U, S, Vt = np.linalg.svd(np.where(solve[:, None, None], cov, np.eye(3)))
        D = np.ones((len(src), 3))
        D[:, 2] = np.where(np.linalg.det(U) * np.linalg.det(Vt) < 0, -1.0, 1.0)
        R = U @ (D[..., None] * Vt)
        scale = (S * D).sum(1) / np.where(solve, var, 1.0) if estimate_scale else np.ones(len(src))
        R[degenerate], scale[degenerate] = np.eye(3), 1.0
        t = mu_d - scale[:, None] * np.einsum("bij,bj->bi", R, mu_s)
        t[degenerate] = mu_d[degenerate] - mu_s[degenerate]
        R[~finite], scale[~finite], t[~finite] = np.nan, np.nan, np.nan
        return scale, R, t


def finish_pose(
    outputs: Dict[str, np.ndarray], landmark_ids: Sequence[int]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PGN pose from an exported graph's outputs: scale [B], R [B, 3, 3], t [B, 3] (crop = s R x + t).

    Args:
        outputs: the graph's outputs by name (needs landmarks and model_landmarks).
        landmark_ids: the iBUG index of each model landmark (the graph's
            ``landmark_ids`` metadata; a JSON string is accepted).

    Returns:
        (scale [B], R [B, 3, 3], t [B, 3]) as :func:`umeyama` returns them.
    """
    if isinstance(landmark_ids, str):
        landmark_ids = json.loads(landmark_ids)
    target = np.asarray(outputs["landmarks"])[:, list(landmark_ids)]
    return umeyama(outputs["model_landmarks"], target)
