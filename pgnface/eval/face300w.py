"""The 300-W protocol: 68-point 2D NME on any folder of faces labelled in the 300-W layout.

Layouts read (``load_300w``):
- ``*.jpg|*.png`` next to same-named standard ``.pts`` files (``version: 1``,
  ``n_points: 68``, ``{`` 68 lines ``x y`` ``}``; 1-based, as the format has it);
- a ``landmarks.npz`` with ``names`` (image paths relative to the folder) and
  ``pts68`` [N, 68, 2] in 0-based pixel-index coordinates; when both are
  present the ``.npz`` wins.

Protocol (``evaluate``), the landmark-roi protocol of 3DDFA / 3DDFA_V2:
- each image is cropped with the square box centred on the bounding box of its
  ground-truth 68 points, of side sqrt(2) x the larger side of that box, corner
  and side rounded to integer pixels (``pgnface.io.crops.landmark_crop_box``),
  and resized to the predictor's input size;
- the predicted landmarks are mapped back to image pixels;
- NME = mean over the 68 points of the 2D point-to-point error, in percent of
  either the outer-eye-corner distance (points 36 and 45, 0-based: ``nme_io``)
  or sqrt(w * h) of the ground-truth 68-point box (``nme_box``);
- the summary gives the mean, the median and the failure rates (share of
  images above 8 % and 10 %) for each normalisation.

Coordinates: landmarks are handled in pgnface's continuous pixel frame
(pixel centres at integer + 0.5), so 0-based pixel-index labels are shifted
by +0.5 and 1-based ``.pts`` labels by -0.5 on reading.

300-W (iBUG), HELEN, AFW and YouTube Faces labels are for non-commercial
research use only.
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from pgnface.eval.metrics import landmark_nme
from pgnface.eval.plots import error_distribution_png
from pgnface.io.crops import crop, crop_to_image, landmark_crop_box
from pgnface.io.images import IMAGE_SUFFIXES, read_image

# Outer eye corners in the iBUG-68 order (0-based): the subject's right and left.
OUTER_EYE_CORNERS = (36, 45)
FAILURE_THRESHOLDS = (8.0, 10.0)


@dataclass
class Face300W:
    """One labelled face: its image file and its 68 landmarks [68, 2] (pixel centres at integer + 0.5)."""

    name: str
    path: Path
    landmarks: np.ndarray


def read_pts(path) -> np.ndarray:
    """The points of a 300-W ``.pts`` file as written: [P, 2] float64 (1-based in the standard files).

    Raises:
        ValueError: the file is not in the ``version / n_points / { ... }`` layout.
    """
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    try:
        count = int(next(line.split(":")[1] for line in lines if line.startswith("n_points")))
        start = lines.index("{") + 1
        points = np.array([[float(v) for v in line.split()[:2]] for line in lines[start : start + count]])
    except (StopIteration, ValueError, IndexError) as err:
        raise ValueError(f"{path}: not a 300-W .pts file (version / n_points / {{ x y ... }}): {err}") from None
    if points.shape != (count, 2) or lines[start + count] != "}":
        raise ValueError(f"{path}: expected {count} lines of 'x y' between {{ and }}")
    return points


def load_300w(folder, subset: Optional[str] = None) -> List[Face300W]:
    """The labelled faces under `folder`, sorted by name (see the module docstring for the layouts).

    Args:
        folder: a folder of images + ``.pts`` files, or one holding a ``landmarks.npz``.
        subset: with a ``landmarks.npz``, keep only the names under this sub-folder
            (e.g. ``helen_test``).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no labelled faces, malformed labels, or not 68 points.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"300-W folder not found: {folder}")
    if (folder / "landmarks.npz").is_file():
        faces = _from_npz(folder, subset)
    elif subset is not None:
        raise ValueError(f"subset={subset!r} needs a landmarks.npz in {folder}")
    else:
        faces = _from_pts(folder)
    if not faces:
        raise ValueError(f"{folder}: no labelled faces (images with .pts files, or a landmarks.npz)")
    return faces


def _from_npz(folder: Path, subset: Optional[str]) -> List[Face300W]:
    with np.load(folder / "landmarks.npz") as data:
        if "names" not in data or "pts68" not in data:
            raise ValueError(f"{folder / 'landmarks.npz'}: expected arrays 'names' and 'pts68'")
        names, pts = [str(n) for n in data["names"]], np.asarray(data["pts68"], np.float64)
    if pts.shape != (len(names), 68, 2):
        raise ValueError(f"{folder / 'landmarks.npz'}: pts68 must be [{len(names)}, 68, 2], got {list(pts.shape)}")
    keep = [i for i, n in enumerate(names) if subset is None or n.startswith(subset.rstrip("/") + "/")]
    return sorted((Face300W(names[i], folder / names[i], pts[i] + 0.5) for i in keep), key=lambda f: f.name)


def _from_pts(folder: Path) -> List[Face300W]:
    faces = []
    for pts_path in sorted(folder.glob("*.pts")):
        images = [pts_path.with_suffix(s) for s in IMAGE_SUFFIXES if pts_path.with_suffix(s).is_file()]
        if not images:
            raise ValueError(f"{pts_path}: no image of the same name next to it")
        points = read_pts(pts_path)
        if points.shape != (68, 2):
            raise ValueError(f"{pts_path}: expected 68 points, got {len(points)}")
        faces.append(Face300W(images[0].name, images[0], points - 0.5))
    return faces


def inter_ocular(landmarks: np.ndarray) -> float:
    """Outer-eye-corner distance of [68, 2] landmarks (points 36 and 45)."""
    right, left = OUTER_EYE_CORNERS
    return float(np.linalg.norm(landmarks[right] - landmarks[left]))


@dataclass
class Face300WResult:
    """Per-image errors (percent) and predictions of the protocol."""

    per_image: List[Dict[str, float]] = field(default_factory=list)
    predictions: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> [68, 2] image pixels

    def summary(self) -> Dict[str, Dict[str, float]]:
        """{"nme_io" | "nme_box": {"mean", "median", "fail8", "fail10", "count"}}; failures in percent."""
        out = {}
        for key in ("nme_io", "nme_box"):
            values = np.array([r[key] for r in self.per_image], np.float64)
            row = {"mean": float(values.mean()), "median": float(np.median(values))}
            for threshold in FAILURE_THRESHOLDS:
                row[f"fail{threshold:g}"] = 100.0 * float((values > threshold).mean())
            out[key] = {**row, "count": len(values)}
        return out

    def format_table(self) -> str:
        """The summary as a small text table."""
        lines = [f"{'NME %':>14}  {'mean':>6}  {'median':>6}  {'>8 %':>6}  {'>10 %':>6}  {'images':>6}"]
        labels = {"nme_io": "inter-ocular", "nme_box": "box"}
        for key, row in self.summary().items():
            lines.append(
                f"{labels[key]:>14}  {row['mean']:6.2f}  {row['median']:6.2f}  {row['fail8']:6.1f}  "
                f"{row['fail10']:6.1f}  {row['count']:>6}"
            )
        return "\n".join(lines)

    def write_csv(self, path) -> None:
        """per_image.csv: name, nme_io, nme_box (percent)."""
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["name", "nme_io", "nme_box"])
            writer.writeheader()
            for r in self.per_image:
                writer.writerow({"name": r["name"], "nme_io": f"{r['nme_io']:.4f}", "nme_box": f"{r['nme_box']:.4f}"})


def evaluate(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    faces: Sequence[Face300W],
    batch_size: int = 16,
    device: Optional[torch.device] = None,
) -> Face300WResult:
    """Runs the protocol for `predictor` over `faces` (see the module docstring).

    Args:
        predictor: crops [B, 3, S, S] (RGB in [0, 1]) -> landmarks [B, 68, >= 2] in crop
            pixels, with an ``input_size`` attribute S (pgnface.eval.predictors).
        faces: from ``load_300w``.
        batch_size: crops per predictor call.
        device: where the crops go (None: the CPU).

    Raises:
        ValueError: the predictor returns the wrong shape; an image is unreadable.
    """
    size = int(predictor.input_size)
    result = Face300WResult()
    for start in range(0, len(faces), batch_size):
        chunk = faces[start : start + batch_size]
        boxes = [landmark_crop_box(f.landmarks) for f in chunk]
        crops = np.stack([crop(read_image(f.path), b, size) for f, b in zip(chunk, boxes)])
        batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
        with torch.no_grad():
            pred = predictor(batch if device is None else batch.to(device))
        pred = pred.detach().double().cpu().numpy()
        if pred.ndim != 3 or pred.shape[:2] != (len(chunk), 68) or pred.shape[2] < 2:
            raise ValueError(f"predictor must return [B, 68, 2 or 3] landmarks, got {list(pred.shape)}")
        for face, box, p in zip(chunk, boxes, pred):
            points = np.concatenate([p[:, :2], np.zeros((68, 1))], 1)
            in_image = crop_to_image(points, box, size)[:, :2]
            error = float(np.linalg.norm(in_image - face.landmarks, axis=1).mean())
            result.predictions[face.name] = in_image
            result.per_image.append(
                {
                    "name": face.name,
                    "nme_io": 100.0 * error / max(inter_ocular(face.landmarks), 1e-9),
                    "nme_box": landmark_nme(in_image, face.landmarks),
                }
            )
    return result


def write_report(result: Face300WResult, folder, title: str = "") -> List[Path]:
    """Writes per_image.csv, summary.json and ced.png (cumulative error distribution) into `folder`.

    Returns:
        The paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "per_image.csv", folder / "summary.json", folder / "ced.png"]
    result.write_csv(paths[0])
    paths[1].write_text(json.dumps(result.summary(), indent=1))
    curves = {
        "inter-ocular": [r["nme_io"] for r in result.per_image],
        "box": [r["nme_box"] for r in result.per_image],
    }
    error_distribution_png(curves, paths[2], title=title, x_max=2 * FAILURE_THRESHOLDS[-1])
    return paths
