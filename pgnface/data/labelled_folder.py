"""Labelled training images from a folder in the 300W-LP / AFLW2000-3D layout.

The layout is one image (``NAME.jpg``, or another image format) and one
MATLAB file (``NAME.mat``) per face. The .mat holds:
- ``pt3d_68`` [3, 68]: landmark x, y (image pixels, OpenCV convention: pixel
  centres at integer + 0.5) and z (depth away from the camera, centred); NaN
  for points the model does not define (the Surrey model's face contour);
- ``Pose_Para`` [1, 7]: pitch, yaw, roll (radians; pgnface's convention, see
  pgnface.data.synthetic), tx, ty, tz, scale;
- ``Shape_Para`` [Ki, 1], ``Exp_Para`` [Ke, 1]: the model coefficients;
- pgnface extras (``write_300wlp``): ``pt2d`` [2, 68], ``visible`` [1, 68],
  ``Tex_Para``, ``Illum_Para`` [9, 3], ``model`` (the model's name).
So real and synthetic sets go through the same loaders.

A face is cropped around its landmark box the way the synthetic data frames
faces (box side / crop_scale of the crop) and resized to S x S; its landmarks
move with it and their depth is centred. Only the landmarks are used as labels.
"""

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import scipy.io
import torch

from pgnface.io.crops import bounding_box, square_frame
from pgnface.io.images import IMAGE_SUFFIXES, read_image
from pgnface.io.overlays import to_uint8_bgr


class LabelledFolder:
    """Faces with 3D landmark labels from a 300W-LP-layout folder.

    Args:
        root: the folder (searched recursively for NAME.mat next to an image).
        size: crop size S.
        crop_scale: crop side / the landmark box's longer side.
    """

    def __init__(self, root, size: int, crop_scale: float = 1.4):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.folder {self.root} is not a folder")
        self.size, self.crop_scale = size, crop_scale
        self.items: List[Tuple[Path, Path]] = []
        for mat in sorted(self.root.rglob("*.mat")):
            image = next((mat.with_suffix(s) for s in IMAGE_SUFFIXES if mat.with_suffix(s).is_file()), None)
            if image is not None:
                self.items.append((image, mat))
        if not self.items:
            raise ValueError(f"data.folder {self.root} holds no NAME.jpg/.png + NAME.mat pairs (300W-LP layout)")

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """One face, cropped and resized.

        Args:
            index: which face, in [0, len).

        Returns:
            (image [3, S, S] float in [0, 1], landmarks [L, 3] in crop pixels, depth-centred).

        Raises:
            ValueError: an unreadable image, or a .mat without a [3, L] pt3d_68 array.
        """
        image_path, mat_path = self.items[index]
        rgb = read_image(image_path)
        try:
            pts = np.asarray(scipy.io.loadmat(mat_path)["pt3d_68"], dtype=np.float64)
        except (KeyError, ValueError, OSError) as err:
            raise ValueError(f"{mat_path} has no readable pt3d_68 [3, L] array: {err}") from None
        if pts.ndim != 2 or pts.shape[0] != 3:
            raise ValueError(f"{mat_path}: pt3d_68 must have shape [3, L], got {list(pts.shape)}")
        lm = pts.T
        cx, cy, side = square_frame(bounding_box(lm[:, :2]), self.crop_scale)
        x0, y0 = cx - side / 2, cy - side / 2
        k = self.size / side
        # Continuous coordinates (centres at +0.5) map as q = k (p - origin); OpenCV's warp
        # works on integer pixel centres, hence the half-pixel terms.
        M = np.array([[k, 0.0, k * (0.5 - x0) - 0.5], [0.0, k, k * (0.5 - y0) - 0.5]])
        crop = cv2.warpAffine(
            rgb,
            M,
            (self.size, self.size),
            flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        image = torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0
        out = np.stack([k * (lm[:, 0] - x0), k * (lm[:, 1] - y0), k * (lm[:, 2] - lm[:, 2].mean())], 1)
        return image, torch.from_numpy(out).float()

    def batch(self, indices: List[int], landmark_ids: torch.Tensor, device) -> Dict[str, torch.Tensor]:
        """A training batch of faces.

        Files with 68 landmarks are restricted to the model's landmark_ids;
        files with exactly as many as the model defines are taken as they are.

        Args:
            indices: which faces.
            landmark_ids: [L] the model's iBUG-68 indices.
            device: where the batch goes.

        Returns:
            {"image": [n, 3, S, S], "landmarks3d": [n, L, 3]} on `device`.

        Raises:
            ValueError: a file whose landmark count is neither 68 nor L, or as for load.
        """
        images, marks = [], []
        ids = landmark_ids.cpu()
        for i in indices:
            image, lm = self.load(i)
            if lm.shape[0] == 68:  # iBUG order
                lm = lm[ids]
            elif lm.shape[0] != len(ids):
                raise ValueError(f"{self.items[i][1]}: {lm.shape[0]} landmarks, the model has {len(ids)}")
            images.append(image)
            marks.append(lm)
        return {"image": torch.stack(images).to(device), "landmarks3d": torch.stack(marks).to(device)}


def write_300wlp(
    sample: Dict[str, torch.Tensor],
    out_dir,
    prefix: str = "synthetic",
    start: int = 0,
    morphable_name: str = "",
    landmark_ids: Optional[torch.Tensor] = None,
) -> List[Path]:
    """Writes every face of a :meth:`SyntheticFaces.sample` batch; returns the image paths.

    Args:
        landmark_ids: the model's iBUG-68 indices of the sample's L landmarks. When
            L < 68 (e.g. the Surrey model), ``pt3d_68`` still has 68 columns, NaN
            for the points the model does not define, so files stay 68-point files.

    Returns:
        The written image paths, one per face.

    Raises:
        OSError: an image cannot be written.
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
        scipy.io.savemat(
            out_dir / f"{name}.mat",
            {
                "pt3d_68": lm.T,
                "pt2d": lm[:, :2].T,
                "Pose_Para": pose,
                "Shape_Para": sample["id"][i].cpu().double().numpy()[:, None],
                "Exp_Para": sample["exp"][i].cpu().double().numpy()[:, None],
                "Tex_Para": sample["albedo"][i].cpu().double().numpy()[:, None],
                "Illum_Para": sample["gamma"][i].cpu().double().numpy(),
                "visible": visible[None, :],
                "model": morphable_name,
            },
        )
        paths.append(image_path)
    return paths
