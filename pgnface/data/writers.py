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

from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import scipy.io
import torch


def to_uint8_bgr(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] RGB in [0, 1] -> [H, W, 3] uint8 BGR (OpenCV)."""
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(array[..., ::-1])


def draw_landmarks(image_bgr: np.ndarray, landmarks: np.ndarray, visible: Optional[np.ndarray] = None,
                   radius: int = 1) -> np.ndarray:
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
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return sheet


def write_300wlp(sample: Dict[str, torch.Tensor], out_dir, prefix: str = "synthetic", start: int = 0,
                 model_name: str = "", landmark_ids: Optional[torch.Tensor] = None) -> List[Path]:
    """Writes every face of a :meth:`SyntheticFaces.sample` batch; returns the image paths.

    Args:
        landmark_ids: the model's iBUG-68 indices of the sample's L landmarks. When
            L < 68 (e.g. the Surrey model), ``pt3d_68`` still has 68 columns, NaN
            for the points the model does not define, so files stay 68-point files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    B = sample["image"].shape[0]
    for i in range(B):
        name = f"{prefix}_{start + i:06d}"
        image_path = out_dir / f"{name}.jpg"
        if not cv2.imwrite(str(image_path), to_uint8_bgr(sample["image"][i]), [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {image_path}")
        lm = sample["landmarks3d"][i].cpu().double().numpy()
        visible = sample["landmark_visible"][i].cpu().numpy().astype(np.uint8)
        if landmark_ids is not None and len(lm) != 68:
            ids = np.asarray(landmark_ids.cpu())
            full, full_visible = np.full((68, 3), np.nan), np.zeros(68, np.uint8)
            full[ids], full_visible[ids] = lm, visible
            lm, visible = full, full_visible
        angles = np.deg2rad([float(sample["pitch"][i]), float(sample["yaw"][i]), float(sample["roll"][i])])
        t = sample["translation"][i].cpu().double().numpy()
        pose = np.concatenate([angles, t, [float(sample["scale"][i])]])[None, :]
        scipy.io.savemat(out_dir / f"{name}.mat", {
            "pt3d_68": lm.T, "pt2d": lm[:, :2].T, "Pose_Para": pose,
            "Shape_Para": sample["id"][i].cpu().double().numpy()[:, None],
            "Exp_Para": sample["exp"][i].cpu().double().numpy()[:, None],
            "Tex_Para": sample["albedo"][i].cpu().double().numpy()[:, None],
            "Illum_Para": sample["gamma"][i].cpu().double().numpy(),
            "visible": visible[None, :],
            "model": model_name,
        })
        paths.append(image_path)
    return paths
