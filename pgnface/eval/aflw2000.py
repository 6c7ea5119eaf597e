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

import numpy as np
import scipy.io
import torch

from pgnface.eval.metrics import nme
from pgnface.io.crops import crop, crop_to_image, landmark_crop_box
from pgnface.io.images import read_image

# The last bin also takes the few corrupt annotations with |yaw| > 90 degrees, as 3DDFA does.
YAW_BINS = (("[0,30]", 0.0, 30.0), ("(30,60]", 30.0, 60.0), ("(60,90]", 60.0, math.inf))


@dataclass
class AFLWSample:
    """One AFLW2000-3D image and its annotation."""

    name: str
    image: np.ndarray  # [H, W, 3] uint8 RGB
    landmarks: np.ndarray  # [68, 3] x, y (pixels), z (towards the camera)
    pose: np.ndarray  # [7] pitch, yaw, roll (radians), tx, ty, tz, scale

    @property
    def yaw_degrees(self) -> float:
        """The annotated yaw in degrees (Pose_Para's second angle)."""
        return float(np.degrees(self.pose[1]))


def load_aflw2000(folder, reannotated: Optional[np.ndarray] = None) -> List[AFLWSample]:
    """Reads a folder of imageXXXXX.jpg + imageXXXXX.mat (pt3d_68, Pose_Para).

    Args:
        folder: the AFLW2000-3D folder (or a subset of it).
        reannotated: optional {name: [2, 68]} or [2000, 2, 68] array of re-annotated
            2D landmarks (3DDFA's pts68_reannotated.npy) replacing x, y; needs the
            folder's index.csv to map names to rows when given as an array.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: a .mat without its image, unreadable or malformed files, no samples.

    Returns:
        The samples, sorted by name.
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
        image = read_image(image_path)
        try:
            mat = scipy.io.loadmat(str(mat_path))
        except Exception as err:  # scipy raises several types for corrupt files
            raise ValueError(f"{mat_path}: not a readable .mat file ({err})") from err
        if "pt3d_68" not in mat or "Pose_Para" not in mat:
            raise ValueError(f"{mat_path}: expected pt3d_68 and Pose_Para (AFLW2000-3D layout)")
        landmarks = np.asarray(mat["pt3d_68"], dtype=np.float64).T.copy()
        if landmarks.shape != (68, 3):
            raise ValueError(f"{mat_path}: pt3d_68 must be [3, 68], got {list(landmarks.shape[::-1])}")
        if not np.isfinite(landmarks).all():
            raise ValueError(f"{mat_path}: pt3d_68 holds {int((~np.isfinite(landmarks)).sum())} NaN or Inf value(s)")
        if reannotated is not None:
            name = mat_path.stem
            if isinstance(reannotated, dict):
                landmarks[:, :2] = np.asarray(reannotated[name]).T
            else:
                landmarks[:, :2] = np.asarray(reannotated[rows[name]]).T
        samples.append(
            AFLWSample(
                mat_path.stem,
                image,
                landmarks,
                np.asarray(mat["Pose_Para"], dtype=np.float64).reshape(-1),
            )
        )
    if not samples:
        raise ValueError(f"{folder}: no imageXXXXX.mat files (AFLW2000-3D layout expected)")
    return samples


def _index_rows(folder: Path) -> Dict[str, int]:
    path = folder / "index.csv"
    if not path.is_file():
        raise ValueError(f"{folder}: re-annotated landmarks need index.csv (name,row) to find each image's row")
    with open(path) as f:
        return {r["name"]: int(r["row"]) for r in csv.DictReader(f)}


@dataclass
class EvalResult:
    """Per-image and summary results of the protocol."""

    per_image: List[Dict[str, float]] = field(default_factory=list)
    predictions: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> [68, 3] image-pixel landmarks

    def by_bin(self) -> Dict[str, List[Dict[str, float]]]:
        """The per-image rows by |yaw| bin.

        Returns:
            {yaw-bin label: the per-image rows in that bin}.
        """
        return {
            label: [r for r in self.per_image if (lo < abs(r["yaw"]) or lo == 0) and abs(r["yaw"]) <= hi]
            for label, lo, hi in YAW_BINS
        }

    def table(self, keys: Sequence[str] = ("nme2d", "nme3d")) -> Dict[str, Dict[str, float]]:
        """{row: {key..., "count"}} for the yaw bins, "balanced" and "mean".

        Args:
            keys: the per-image values to average (default the two NMEs; any
                numeric per-image column works, e.g. pose errors).

        Returns:
            {row label: {key: mean value, "count": images}} (NaN for empty bins).
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
        """The NME table as fixed-width text, one line per yaw bin, "balanced" and "mean".

        Returns:
            The table ("n/a" for empty bins).
        """
        lines = [f"{'yaw':>9}  {'images':>6}  {'NME 2D %':>9}  {'NME 3D %':>9}"]

        def fmt(v):
            return "n/a" if math.isnan(v) else f"{v:.2f}"

        for label, row in self.table().items():
            lines.append(f"{label:>9}  {row['count']:>6}  {fmt(row['nme2d']):>9}  {fmt(row['nme3d']):>9}")
        return "\n".join(lines)

    def write_csv(self, path) -> None:
        """Writes the per-image rows (name, yaw, nme2d, nme3d).

        Args:
            path: the CSV file to write.
        """
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["name", "yaw", "nme2d", "nme3d"])
            writer.writeheader()
            for r in self.per_image:
                writer.writerow({k: (f"{r[k]:.4f}" if k != "name" else r[k]) for k in writer.fieldnames})


def evaluate(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    samples: Sequence[AFLWSample],
    batch_size: int = 16,
    device: Optional[torch.device] = None,
) -> EvalResult:
    """Runs the protocol for a predictor over samples (see the module docstring).

    Args:
        predictor: maps crops [B, 3, S, S] RGB in [0, 1] to landmarks [B, 68, 3]
            in crop pixels (z away from the camera); S is its ``input_size``.
        samples: the AFLW2000-3D samples.
        batch_size: crops per predictor call.
        device: where the crops go (they stay on the CPU if None).

    Returns:
        EvalResult with per-image NMEs and the predictions in image pixels.

    Raises:
        ValueError: the predictor returns anything but [B, 68, 3], its input size is below
            32 pixels, or batch_size is below 1.
    """
    size = int(predictor.input_size)
    if size < 32:
        raise ValueError(f"the predictor's input size (--size) must be at least 32 pixels, got {size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    result = EvalResult()
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
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
