"""Square face crops: the boxes that frame a face and the resampling that cuts it out.

Boxes are (sx, sy, ex, ey) in image pixels with pixel centres at integer + 0.5;
a crop of size S maps crop position u to image position sx + u (ex - sx) / S.
"""

import math
from typing import Tuple

import cv2
import numpy as np


def landmark_crop_box(landmarks_2d: np.ndarray) -> np.ndarray:
    """[68, 2] landmarks -> [4] (sx, sy, ex, ey): the standard AFLW2000-3D crop box."""
    lo, hi = landmarks_2d.min(0), landmarks_2d.max(0)
    centre = (lo + hi) / 2
    side = math.sqrt(2.0) * float((hi - lo).max())
    # Integer corner and integer side, which reproduces 3DDFA's roi_box exactly.
    sx, sy, side = np.round(centre[0] - side / 2), np.round(centre[1] - side / 2), np.round(side)
    return np.array([sx, sy, sx + side, sy + side])


def crop(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Resamples the box (sx, sy, ex, ey) of an [H, W, 3] image to [size, size, 3] (zeros outside).

    Continuous coordinates: crop position u maps to image position sx + u (ex - sx) / size.
    """
    sx, sy, ex, ey = (float(v) for v in box)
    kx, ky = (ex - sx) / size, (ey - sy) / size
    # Destination pixel centre i + 0.5 -> source position; OpenCV's pixel centres are integers.
    matrix = np.array([[kx, 0.0, sx + 0.5 * kx - 0.5], [0.0, ky, sy + 0.5 * ky - 0.5]])
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def crop_to_image(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Maps points from the pixels of a crop of `box` to image pixels (z, if given, scales like x).

    Args:
        points: [..., 2] (x, y) or [..., 3] (x, y, z) in crop pixels.
        box: [4] (sx, sy, ex, ey) the crop was cut from.
        size: crop side S in pixels.

    Returns:
        [..., 2] or [..., 3] image pixels.
    """
    extent, offset = _box_frame(box, points.shape[-1])
    return points * (extent / size) + offset


def image_to_crop(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Maps points from image pixels to the pixels of a crop of `box`: the inverse of :func:`crop_to_image`.

    Args:
        points: [..., 2] (x, y) or [..., 3] (x, y, z) in image pixels.
        box: [4] (sx, sy, ex, ey) the crop is cut from.
        size: crop side S in pixels.

    Returns:
        [..., 2] or [..., 3] crop pixels.
    """
    extent, offset = _box_frame(box, points.shape[-1])
    return (points - offset) * (size / extent)


def _box_frame(box: np.ndarray, dims: int) -> Tuple[np.ndarray, np.ndarray]:
    """The box's per-axis extent (w, h, w for z) and image offset (sx, sy, 0), cut to `dims` coordinates."""
    if dims not in (2, 3):
        raise ValueError(f"points must have shape [..., 2] or [..., 3], got last dimension {dims}")
    sx, sy, ex, ey = (float(v) for v in box)
    return np.array([ex - sx, ey - sy, ex - sx])[:dims], np.array([sx, sy, 0.0])[:dims]


def face_crop_box(box: np.ndarray, enlarge: float = 1.45, shift_down: float = 0.08) -> np.ndarray:
    """Square crop [sx, sy, ex, ey] around a detector box, framed like the training crops.

    The Haar box spans roughly brows to mouth; the crop is centred slightly
    lower and enlarged to take in the chin and the face outline, about the
    standard AFLW2000-3D framing (landmark box x sqrt(2)).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = enlarge * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + shift_down * (y1 - y0)
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def landmark_square(landmarks_xy: np.ndarray, crop_scale: float) -> Tuple[float, float, float]:
    """(x0, y0, side) of the square crop around [L, 2] landmarks: side = crop_scale * the box's longer side."""
    lo, hi = landmarks_xy.min(0), landmarks_xy.max(0)
    centre = (lo + hi) / 2
    side = float(max(hi - lo)) * crop_scale
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def jittered_box(box: np.ndarray, r: np.ndarray, scale: float = 0.08, shift: float = 0.05) -> np.ndarray:
    """The crop box (sx, sy, ex, ey) scaled by 1 +- scale and shifted by +- shift of its side."""
    side = (box[2] - box[0]) * (1 + scale * (2 * r[0] - 1))
    cx = (box[0] + box[2]) / 2 + shift * (box[2] - box[0]) * (2 * r[1] - 1)
    cy = (box[1] + box[3]) / 2 + shift * (box[3] - box[1]) * (2 * r[2] - 1)
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
