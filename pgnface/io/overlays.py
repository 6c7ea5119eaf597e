"""Drawing on images for inspection: tensor to OpenCV image, landmark dots, contact sheets."""

from typing import List, Optional

import cv2
import numpy as np
import torch


def to_uint8_bgr(image: torch.Tensor) -> np.ndarray:
    """An image tensor as OpenCV wants it.

    Args:
        image: [3, H, W] RGB in [0, 1] (clamped).

    Returns:
        [H, W, 3] uint8 BGR.
    """
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(array[..., ::-1])


def draw_landmarks(
    image_bgr: np.ndarray, landmarks: np.ndarray, visible: Optional[np.ndarray] = None, radius: int = 1
) -> np.ndarray:
    """Draws landmarks (green visible, red hidden) on a copy of an image.

    Args:
        image_bgr: [H, W, 3] uint8 BGR.
        landmarks: [L, 2+] (x, y) in pixels, centres at integer + 0.5.
        visible: optional [L] bool; all visible if None.
        radius: dot radius in pixels.

    Returns:
        [H, W, 3] uint8 BGR copy with the dots.
    """
    out = image_bgr.copy()
    for k, (x, y) in enumerate(landmarks):
        colour = (0, 230, 0) if visible is None or visible[k] else (0, 0, 255)
        cv2.circle(out, (int(round(x - 0.5)), int(round(y - 0.5))), radius, colour, -1, cv2.LINE_AA)
    return out


def contact_sheet(images: List[np.ndarray], columns: int = 8, pad: int = 2) -> np.ndarray:
    """Tiles equally sized images into one sheet on a white background.

    Args:
        images: [h, w, 3] uint8 images.
        columns: tiles per row.
        pad: pixels between tiles.

    Returns:
        [rows (h + pad) + pad, min(columns, n) (w + pad) + pad, 3] uint8.

    Raises:
        ValueError: no images.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (h + pad) + pad, min(columns, len(images)) * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return sheet
