"""Face detection with the Haar cascade shipped in opencv-python (4.x), and crop boxes."""

import functools
from pathlib import Path
from typing import List

import cv2
import numpy as np


@functools.lru_cache(maxsize=2)
def _cascade(name: str = "haarcascade_frontalface_default.xml"):
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(
            f"OpenCV's face cascade is missing ({path}); install opencv-python-headless<5, "
            "or give face boxes with --boxes"
        )
    return cascade


def detect_faces(image_rgb: np.ndarray, min_size: int = 40) -> List[np.ndarray]:
    """Faces found by OpenCV's frontal-face cascade.

    Args:
        image_rgb: [H, W, 3] uint8 RGB.
        min_size: smallest face side in pixels.

    Returns:
        Boxes [4] (x0, y0, x1, y1) in pixels, largest first.

    Raises:
        RuntimeError: OpenCV's cascade file is missing.
    """
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
    boxes = [np.array([x, y, x + w, y + h], np.float64) for (x, y, w, h) in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def detect_profile_faces(image_rgb: np.ndarray, min_size: int = 40) -> List[np.ndarray]:
    """Faces in profile (either way), by OpenCV's profile cascade.

    Tuned for recall (fewer neighbours than detect_faces): it finds faces to paint out of
    background photos, where a miss costs more than a false face.

    Args:
        image_rgb: [H, W, 3] uint8 RGB.
        min_size: smallest face side in pixels.

    Returns:
        Boxes [4] (x0, y0, x1, y1) in pixels.

    Raises:
        RuntimeError: OpenCV's cascade file is missing.
    """
    gray = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
    W = gray.shape[1]
    boxes = []
    for flipped in (False, True):
        found = _cascade("haarcascade_profileface.xml").detectMultiScale(
            gray[:, ::-1] if flipped else gray, scaleFactor=1.1, minNeighbors=3, minSize=(min_size, min_size)
        )
        for x, y, w, h in np.asarray(found).reshape(-1, 4):
            x0 = W - (x + w) if flipped else x
            boxes.append(np.array([x0, y, x0 + w, y + h], np.float64))
    return boxes
