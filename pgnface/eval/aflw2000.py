"""The AFLW2000-3D protocol: 68-point NME by yaw bin.

Protocol (as the field reports it, following 3DDFA):
- each image is cropped with the square box centred on the bounding box of
  its ground-truth 68 2D landmarks, of side sqrt(2) x the larger side of that
  box, with corner and side rounded to integer pixels (``landmark_crop_box``;
  this reproduces 3DDFA's ``roi_box`` exactly), and resized to the
  predictor's input size;
- predictions in crop pixels are mapped back to image pixels;
- NME = mean over the 68 points of the point-to-point error divided by
  sqrt(w * h) of the ground-truth 2D landmark bounding box; 2D uses (x, y),
  3D adds depth, with both depths centred on their mean over the 68 points
  (AFLW2000's z points towards the camera, pgnface's away: predictions are
  flipped before comparing);
- images are binned by |yaw| from ``Pose_Para``: [0, 30], (30, 60], (60, 90]
  degrees; the table reports each bin, the balanced mean (mean of the
  non-empty bins) and the plain mean over images.

A predictor is any callable taking crops [B, 3, S, S] (RGB in [0, 1]) and
returning 68 landmarks [B, 68, 3] in crop pixels (x right, y down, z away from
the camera), with an ``input_size`` attribute S.
"""

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import scipy.io
import torch

# The last bin also takes the few corrupt annotations with |yaw| > 90 degrees, as 3DDFA does.
YAW_BINS = (("[0,30]", 0.0, 30.0), ("(30,60]", 30.0, 60.0), ("(60,90]", 60.0, math.inf))


@dataclass
class AFLWSample:
    """One AFLW2000-3D image and its annotation."""

    name: str
    image: np.ndarray          # [H, W, 3] uint8 RGB
    landmarks: np.ndarray      # [68, 3] x, y (pixels), z (towards the camera)
    pose: np.ndarray           # [7] pitch, yaw, roll (radians), tx, ty, tz, scale

    @property
    def yaw_degrees(self) -> float:
        return float(np.degrees(self.pose[1]))


def load_aflw2000(folder, reannotated: Optional[np.ndarray] = None) -> List[AFLWSample]:
    """Reads a folder of imageXXXXX.jpg + imageXXXXX.mat (pt3d_68, Pose_Para).

    Args:
        folder: the AFLW2000-3D folder (or a subset of it).
        reannotated: optional {name: [2, 68]} or [2000, 2, 68] array of re-annotated
            2D landmarks (3DDFA's pts68_reannotated.npy) replacing x, y; needs the
            folder's index.csv to map names to rows when given as an array.

    Raises:
        FileNotFoundError / ValueError: missing folder, no samples, unreadable files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"AFLW2000-3D folder not found: {folder}")
    rows = _index_rows(folder) if reannotated is not None else {}
    samples = []
    for mat_path in sorted(folder.glob("image*.mat")):
        image_path = mat_path.with_suffix(".jpg")
        if not image_path.is_file():
            raise ValueError(f"{mat_path}: no matching image {image_path.name}")
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{image_path}: not a readable image")
        try:
            mat = scipy.io.loadmat(str(mat_path))
        except Exception as err:  # scipy raises several types for corrupt files
            raise ValueError(f"{mat_path}: not a readable .mat file ({err})") from err
        if "pt3d_68" not in mat or "Pose_Para" not in mat:
            raise ValueError(f"{mat_path}: expected pt3d_68 and Pose_Para (AFLW2000-3D layout)")
        landmarks = np.asarray(mat["pt3d_68"], dtype=np.float64).T.copy()
        if reannotated is not None:
            name = mat_path.stem
            if isinstance(reannotated, dict):
                landmarks[:, :2] = np.asarray(reannotated[name]).T
            else:
                landmarks[:, :2] = np.asarray(reannotated[rows[name]]).T
        samples.append(AFLWSample(mat_path.stem, image[..., ::-1].copy(), landmarks,
                                  np.asarray(mat["Pose_Para"], dtype=np.float64).reshape(-1)))
    if not samples:
        raise ValueError(f"{folder}: no imageXXXXX.mat files (AFLW2000-3D layout expected)")
    return samples


def _index_rows(folder: Path) -> Dict[str, int]:
    path = folder / "index.csv"
    if not path.is_file():
        raise ValueError(f"{folder}: re-annotated landmarks need index.csv (name,row) to find each image's row")
    with open(path) as f:
        return {r["name"]: int(r["row"]) for r in csv.DictReader(f)}


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
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_to_image(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """[..., 3] crop-pixel points (x, y, z) -> image pixels (z scaled like x)."""
    sx, sy, ex, ey = (float(v) for v in box)
    scale = np.array([(ex - sx) / size, (ey - sy) / size, (ex - sx) / size])
    return points * scale + np.array([sx, sy, 0.0])


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


@dataclass
class EvalResult:
    """Per-image and summary results of the protocol."""

    per_image: List[Dict[str, float]] = field(default_factory=list)
    predictions: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> [68, 3] image-pixel landmarks

    def by_bin(self) -> Dict[str, List[Dict[str, float]]]:
        """{yaw-bin label: the per-image rows in that bin}."""
        return {label: [r for r in self.per_image if (lo < abs(r["yaw"]) or lo == 0) and abs(r["yaw"]) <= hi]
                for label, lo, hi in YAW_BINS}

    def table(self, keys: Sequence[str] = ("nme2d", "nme3d")) -> Dict[str, Dict[str, float]]:
        """{row: {key..., "count"}} for the yaw bins, "balanced" and "mean".

        Args:
            keys: the per-image values to average (default the two NMEs; any
                numeric per-image column works, e.g. pose errors).
        """
        def mean(values):
            return float(np.mean(values)) if len(values) else float("nan")

        rows = {}
        for label, members in self.by_bin().items():
            rows[label] = {**{k: mean([r[k] for r in members]) for k in keys}, "count": len(members)}
        bins = [rows[label] for label, _, _ in YAW_BINS if rows[label]["count"]]
        rows["balanced"] = {**{k: mean([b[k] for b in bins]) for k in keys}, "count": len(self.per_image)}
        rows["mean"] = {**{k: mean([r[k] for r in self.per_image]) for k in keys}, "count": len(self.per_image)}
        return rows

    def format_table(self) -> str:
        lines = [f"{'yaw':>9}  {'images':>6}  {'NME 2D %':>9}  {'NME 3D %':>9}"]
        for label, row in self.table().items():
            fmt = (lambda v: "n/a" if math.isnan(v) else f"{v:.2f}")
            lines.append(f"{label:>9}  {row['count']:>6}  {fmt(row['nme2d']):>9}  {fmt(row['nme3d']):>9}")
        return "\n".join(lines)

    def write_csv(self, path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["name", "yaw", "nme2d", "nme3d"])
            writer.writeheader()
            for r in self.per_image:
                writer.writerow({k: (f"{r[k]:.4f}" if k != "name" else r[k]) for k in writer.fieldnames})


def evaluate(predictor: Callable[[torch.Tensor], torch.Tensor], samples: Sequence[AFLWSample],
             batch_size: int = 16, device: Optional[torch.device] = None) -> EvalResult:
    """Runs the protocol for `predictor` over `samples` (see the module docstring)."""
    size = int(getattr(predictor, "input_size"))
    result = EvalResult()
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        boxes = [landmark_crop_box(s.landmarks[:, :2]) for s in chunk]
        crops = np.stack([crop(s.image, b, size) for s, b in zip(chunk, boxes)])
        batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
        if device is not None:
            batch = batch.to(device)
        with torch.no_grad():
            pred = predictor(batch)
        pred = pred.detach().double().cpu().numpy()
        if pred.shape != (len(chunk), 68, 3):
            raise ValueError(f"predictor must return [B, 68, 3] landmarks, got {list(pred.shape)}")
        for s, box, p in zip(chunk, boxes, pred):
            in_image = crop_to_image(p, box, size)
            result.predictions[s.name] = in_image
            result.per_image.append({"name": s.name, "yaw": s.yaw_degrees, **nme(in_image, s.landmarks)})
    return result
