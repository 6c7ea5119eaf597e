"""Landmark error metrics: normalised mean errors (NME) in percent."""

import math
from typing import Dict

import numpy as np


def nme(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """2D and 3D NME (%) of [68, 3] predictions (z away from camera) vs AFLW ground truth (z towards)."""
    lo, hi = gt[:, :2].min(0), gt[:, :2].max(0)
    norm = math.sqrt(float((hi[0] - lo[0]) * (hi[1] - lo[1])))
    err2d = np.linalg.norm(pred[:, :2] - gt[:, :2], axis=1).mean() / norm
    p, g = pred.copy(), gt.copy()
    p[:, 2] = -(p[:, 2] - p[:, 2].mean())
    g[:, 2] = g[:, 2] - g[:, 2].mean()
    err3d = np.linalg.norm(p - g, axis=1).mean() / norm
    return {"nme2d": 100.0 * err2d, "nme3d": 100.0 * err3d}


def landmark_nme(pred: np.ndarray, gt: np.ndarray) -> float:
    """2D NME (%) of [L, 2] landmarks over sqrt(w * h) of the ground-truth box."""
    lo, hi = gt.min(0), gt.max(0)
    return 100.0 * float(np.linalg.norm(pred - gt, axis=1).mean() / np.sqrt((hi - lo).prod()))
