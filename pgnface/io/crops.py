"""Square face crops: the boxes that frame a face and the resampling that cuts it out.

Boxes are (sx, sy, ex, ey) in image pixels with pixel centres at integer + 0.5;
a crop of size S maps crop position u to image position sx + u (ex - sx) / S.
"""

import math
from typing import Tuple

import cv2
import numpy as np


def bounding_box(points_xy: np.ndarray) -> np.ndarray:
    """The axis-aligned box of points.

    Args:
        points_xy: [L, 2] (x, y) image pixels.

    Returns:
        [4] (min x, min y, max x, max y).
    """
    return np.concatenate([points_xy.min(0), points_xy.max(0)]).astype(np.float64)


def square_frame(box: np.ndarray, scale: float, shift_down: float = 0.0) -> Tuple[float, float, float]:
    """The square that frames a box: every crop box of pgnface is one, with its own constants.

    Args:
        box: [4] (x0, y0, x1, y1) a landmark or detector box.
        scale: the square's side over the box's longer side.
        shift_down: how far the square's centre lies below the box's, as a fraction of the box's height.

    Returns:
        (cx, cy, side): the square's centre and side in the box's pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = scale * max(x1 - x0, y1 - y0)
    return (x0 + x1) / 2, (y0 + y1) / 2 + shift_down * (y1 - y0), side


def landmark_crop_box(landmarks_2d: np.ndarray) -> np.ndarray:
    """The standard AFLW2000-3D crop box: sqrt(2) x the landmark box's longer side, on its centre.

    Args:
        landmarks_2d: [L, 2] landmarks in image pixels.

    Returns:
        [4] (sx, sy, ex, ey) with integer corner and integer side, which reproduces 3DDFA's roi_box exactly.
    """
    cx, cy, side = square_frame(bounding_box(landmarks_2d), math.sqrt(2.0))
    sx, sy, side = np.round(cx - side / 2), np.round(cy - side / 2), np.round(side)
    return np.array([sx, sy, sx + side, sy + side])


def crop(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Resamples a box of an image to a square crop (zeros outside the image).

    Continuous coordinates: crop position u maps to image position sx + u (ex - sx) / size.

    Args:
        image: [H, W, C] image (any dtype OpenCV warps).
        box: [4] (sx, sy, ex, ey) in image pixels.
        size: crop side S.

    Returns:
        [S, S, C] crop, the image's dtype (bilinear).
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
    """Maps [..., 2] or [..., 3] image-pixel points to crop pixels: the inverse of :func:`crop_to_image`.

    Args:
        points: image pixels, shaped as for :func:`crop_to_image`.
        box: the crop's [4] box.
        size: the crop's side S.

    Returns:
        The points in crop pixels, shaped like `points`.
    """
    extent, offset = _box_frame(box, points.shape[-1])
    return (points - offset) * (size / extent)


def _box_frame(box: np.ndarray, dims: int) -> Tuple[np.ndarray, np.ndarray]:
    """The box's per-axis extent (w, h, w for z) and image offset (sx, sy, 0), cut to `dims` coordinates."""
    if dims not in (2, 3):
        raise ValueError(f"points must have shape [..., 2] or [..., 3], got last dimension {dims}")
    sx, sy, ex, ey = (float(v) for v in box)
    return np.array([ex - sx, ey - sy, ex - sx])[:dims], np.array([sx, sy, 0.0])[:dims]


def face_crop_box(box: np.ndarray, enlarge: float = 1.11, shift_down: float = 0.13) -> np.ndarray:
    """Square crop around a detector box, framed like the training crops.

    The crop is the standard AFLW2000-3D framing (square, centred on the 68-point
    box, side sqrt(2) x its longer side) as predicted from a RetinaFace box
    (pgnface.io.detect): RetinaFace's box reaches higher above the brows than
    below the chin, so the crop is centred lower. The constants are the medians
    over the 300-W training faces (afw and helen_train, 1,207 faces;
    scripts/calibrate_face_crop.py: side ratio 1.112, spread 7 %; centre 0.133 box
    heights down); the held-out helen_test gives 1.102 and 0.132.

    Args:
        box: [4] (x0, y0, x1, y1) detector box in image pixels.
        enlarge: crop side over the box's longer side.
        shift_down: crop centre below the box's, as a fraction of its height.

    Returns:
        [4] (sx, sy, ex, ey) square crop box.
    """
    return _centred_box(*square_frame(box, enlarge, shift_down))


def jittered_box(box: np.ndarray, r: np.ndarray, scale: float = 0.08, shift: float = 0.05) -> np.ndarray:
    """The crop box scaled by 1 +- scale and shifted by +- shift of its side.

    Args:
        box: [4] (sx, sy, ex, ey) crop box.
        r: [>=3] uniform numbers in [0, 1): r[0] draws the scale, r[1] and r[2] the x and y shift.
        scale: largest relative change of the side.
        shift: largest shift as a fraction of the side.

    Returns:
        [4] (sx, sy, ex, ey) jittered square box.
    """
    side = (box[2] - box[0]) * (1 + scale * (2 * r[0] - 1))
    cx = (box[0] + box[2]) / 2 + shift * (box[2] - box[0]) * (2 * r[1] - 1)
    cy = (box[1] + box[3]) / 2 + shift * (box[3] - box[1]) * (2 * r[2] - 1)
    return _centred_box(cx, cy, side)


def _centred_box(cx: float, cy: float, side: float) -> np.ndarray:
    """[4] (sx, sy, ex, ey) of the square of `side` centred on (cx, cy)."""
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
