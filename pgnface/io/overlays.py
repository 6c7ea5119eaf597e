"""Writers: synthetic samples to the 300W-LP / AFLW2000-3D on-disk layout, contact sheets.

The 300W-LP / AFLW2000-3D layout is one image (``NAME.jpg``) and one MATLAB
file (``NAME.mat``) per face. The .mat holds:
- ``pt3d_68`` [3, 68]: landmark x, y (image pixels, OpenCV convention: pixel
  centres at integer + 0.5) and z (depth away from the camera, centred); NaN
  for points the model does not define (the Surrey model's face contour);
- ``Pose_Para`` [1, 7]: pitch, yaw, roll (radians; pgnface's convention, see
  pgnface.data.synthetic), tx, ty, tz, scale;
- ``Shape_Para`` [Ki, 1], ``Exp_Para`` [Ke, 1]: the model coefficients;
- pgnface extras: ``pt2d`` [2, 68], ``visible`` [1, 68], ``Tex_Para``,
  ``Illum_Para`` [9, 3], ``model`` (the model's name).
So real and synthetic sets go through the same loaders.
"""

from typing import List, Optional

import cv2
import numpy as np
import torch


def to_uint8_bgr(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] RGB in [0, 1] -> [H, W, 3] uint8 BGR (OpenCV)."""
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(array[..., ::-1])


def draw_landmarks(
    image_bgr: np.ndarray, landmarks: np.ndarray, visible: Optional[np.ndarray] = None, radius: int = 1
) -> np.ndarray:
    """Draws landmarks (green visible, red hidden) on a copy of a uint8 BGR image."""
    out = image_bgr.copy()
    for k, (x, y) in enumerate(landmarks):
        colour = (0, 230, 0) if visible is None or visible[k] else (0, 0, 255)
        cv2.circle(out, (int(round(x - 0.5)), int(round(y - 0.5))), radius, colour, -1, cv2.LINE_AA)
    return out


def contact_sheet(images: List[np.ndarray], columns: int = 8, pad: int = 2) -> np.ndarray:
    """Tiles equally sized uint8 images into one sheet."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (h + pad) + pad, min(columns, len(images)) * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return sheet
