"""Landmark error metrics: normalised mean errors (NME) in percent."""

from typing import Dict, Union

import numpy as np


def box_norm(gt_xy: np.ndarray) -> Union[float, np.ndarray]:
    """The NME normaliser: sqrt(w * h) of the ground-truth landmarks' 2D box.

    Args:
        gt_xy: [..., L, 2] ground-truth landmarks (x, y).

    Returns:
        [...] (a float for [L, 2]).
    """
    lo, hi = gt_xy.min(-2), gt_xy.max(-2)
    norm = np.sqrt((hi - lo).prod(-1))
    return float(norm) if np.ndim(norm) == 0 else norm


def landmark_nme(pred: np.ndarray, gt: np.ndarray) -> Union[float, np.ndarray]:
    """2D NME (%) of landmarks over sqrt(w * h) of the ground-truth landmarks' box.

    Args:
        pred: [..., L, 2] predicted landmarks (x, y).
        gt: [..., L, 2] ground-truth landmarks, the same shape.

    Returns:
        A float for [L, 2] inputs, else an array of the leading shape [...].
    """
    err = np.linalg.norm(pred - gt, axis=-1).mean(-1) / box_norm(gt)
    return 100.0 * (float(err) if np.ndim(err) == 0 else err)


def nme(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """2D and 3D NME (%) of predictions against AFLW2000-3D ground truth.

    Both are normalised by sqrt(w * h) of the ground truth's 2D box. The 3D
    error compares depth-centred points; the predictions' depth points away
    from the camera and AFLW's towards it, so the prediction's z is negated.

    Args:
        pred: [68, 3] predicted landmarks in image pixels (z away from the camera).
        gt: [68, 3] AFLW2000-3D landmarks (z towards the camera).

    Returns:
        {"nme2d": float, "nme3d": float} in percent.
    """
    norm = box_norm(gt[:, :2])
    p, g = pred.copy(), gt.copy()
    p[:, 2] = -(p[:, 2] - p[:, 2].mean())
    g[:, 2] = g[:, 2] - g[:, 2].mean()
    err3d = np.linalg.norm(p - g, axis=1).mean() / norm
    return {"nme2d": landmark_nme(pred[:, :2], gt[:, :2]), "nme3d": 100.0 * err3d}
