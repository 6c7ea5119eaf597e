"""Reconstruct every face in images and videos with a trained PGN network, and write the results.

Per face: the mesh (OBJ with vertex colours from the albedo, and PLY), the 68
landmarks and pose (JSON, image pixels), the coefficients (.npz); per image an
overlay PNG (the shaded reconstruction blended on the image, landmarks drawn);
for a video, an overlay MP4 too.

Mesh files are in image pixel units in a right-handed frame with y up and z
towards the camera (image x, -row, -depth), so they open upright in viewers.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from pgnface import ops
from pgnface.io.crops import crop, face_crop_box
from pgnface.io.detect import detect_faces
from pgnface.io.meshes import write_obj, write_ply
from pgnface.io.overlays import draw_landmarks
from pgnface.morphable import (
    FRONTAL,
    MorphableModel,
    WeakPerspectiveCamera,
    directional_gamma,
    render,
)
from pgnface.nn import load_network

# The detector runs on a copy of the image at most this many pixels on its longer side (faces
# smaller than 40 px there are missed): its cost and memory grow with the image, while the
# crops the network sees are cut from the original.
DETECTION_MAX_SIDE = 2048
# A face's shading is rendered at most this many pixels on its longer side and scaled up to the
# face's size in the overlay: it is a picture, and a face filling a 85-megapixel photo would
# otherwise need gigabytes of render buffers.
OVERLAY_RENDER_MAX_SIDE = 1024


@dataclass
class FaceResult:
    """One reconstructed face, in image pixels (x right, y down, depth away from the camera)."""

    box: np.ndarray  # [4] crop box sx, sy, ex, ey
    landmarks: np.ndarray  # [68, 3] landmark head, image pixels
    vertices: np.ndarray  # [N, 3] posed reconstruction, image pixels
    colours: np.ndarray  # [N, 3] albedo RGB in [0, 1]
    angles: np.ndarray  # [3] yaw, pitch, roll in degrees (pgnface.ops.rotation_to_angles)
    scale: float  # pixels per model unit
    rotation: np.ndarray  # [3, 3] model -> image frame
    translation: np.ndarray  # [3]
    coefficients: Dict[str, np.ndarray]


class ReconstructionPipeline:
    """Runs a trained PGN network on faces in full images.

    Args:
        checkpoint: `pgnface train`'s model.pt.
        morphable: the 3DMM the network was trained with (built-in if None); a
            mismatched 3DMM is refused with a ValueError.
        device: torch device.
    """

    def __init__(self, checkpoint, morphable: Optional[MorphableModel] = None, device="cpu"):
        self.net, payload = load_network(checkpoint, morphable, map_location=device)
        self.size, self.device = int(payload.get("input_size") or 120), torch.device(device)
        self.morphable = (
            self.net.morphable if hasattr(self.net, "morphable") else (morphable or MorphableModel.builtin())
        )

    @torch.no_grad()
    def faces(
        self, image: np.ndarray, boxes: Optional[List[np.ndarray]] = None, largest_only: bool = False
    ) -> List[FaceResult]:
        """Reconstructs the faces in `image` (RGB uint8 [H, W, 3]) at the detector's (or the given) boxes.

        Args:
            image: the image.
            boxes: face boxes [x0, y0, x1, y1]; None runs the detector.
            largest_only: keep only the largest box (one person per video frame).

        Returns:
            One FaceResult per box, largest box first when `largest_only`.

        Raises:
            ValueError: the image is smaller than 32 pixels a side.
            RuntimeError: OpenCV's face cascade is missing (when detecting).
        """
        if min(image.shape[:2]) < 32:
            raise ValueError(f"image of {image.shape[1]} x {image.shape[0]} pixels is too small for a face")
        boxes = detect_faces_downscaled(image) if boxes is None else [check_box(b) for b in boxes]
        if not boxes:
            return []
        if largest_only:
            boxes = [max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))]
        crop_boxes = [face_crop_box(b) for b in boxes]
        crops = np.stack([crop(image, b, self.size) for b in crop_boxes])
        return self.reconstruct_crops(torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255), crop_boxes)

    @torch.no_grad()
    def reconstruct_crops(self, crops: torch.Tensor, crop_boxes: List[np.ndarray]) -> List[FaceResult]:
        """Runs the network on crops and maps its output back to image pixels.

        Args:
            crops: [B, 3, S, S] RGB in [0, 1].
            crop_boxes: [4] (sx, sy, ex, ey) box each crop was cut from.

        Returns:
            One FaceResult per crop.
        """
        out = self.net(crops.to(self.device))
        albedo = self.morphable.to(self.device).albedo(out["albedo"]).clamp(0, 1).cpu().numpy()
        results = []
        for i, box in enumerate(crop_boxes):
            k = (box[2] - box[0]) / self.size
            offset = np.array([box[0], box[1], 0.0])
            R = out["rotation"][i].double().cpu().numpy()
            angles = ops.rotation_to_angles((FRONTAL.double() @ out["rotation"][i].double().cpu())[None])[0]
            results.append(
                FaceResult(
                    box=np.asarray(box, np.float64),
                    landmarks=out["landmarks"][i].double().cpu().numpy() * k + offset,
                    vertices=out["vertices"][i].double().cpu().numpy() * k + offset,
                    colours=albedo[i],
                    angles=angles.numpy(),
                    scale=float(out["scale"][i] * k),
                    rotation=R,
                    translation=out["translation"][i].double().cpu().numpy() * k + offset,
                    coefficients={key: out[key][i].float().cpu().numpy() for key in ("id", "exp", "albedo", "gamma")},
                )
            )
        return results

    def with_identity(self, result: FaceResult, id_coeffs: np.ndarray) -> FaceResult:
        """The same face re-synthesized with other identity coefficients, keeping expression and pose.

        Gives every frame of a video the clip's shared identity.

        Args:
            result: a FaceResult.
            id_coeffs: [Ki] identity coefficients.

        Returns:
            A FaceResult with the new vertices and coefficients.
        """
        morphable = self.morphable.to("cpu")
        id_coeffs = np.asarray(id_coeffs, np.float32)
        shape = (
            morphable.vertices(
                torch.from_numpy(id_coeffs)[None], torch.from_numpy(result.coefficients["exp"]).float()[None]
            )[0]
            .double()
            .numpy()
        )
        vertices = result.scale * shape @ result.rotation.T + result.translation
        return replace(result, vertices=vertices, coefficients={**result.coefficients, "id": id_coeffs})

    def overlay(self, image: np.ndarray, results: List[FaceResult], alpha: float = 0.6) -> np.ndarray:
        """The image with each reconstruction shaded and blended in, landmarks drawn.

        Each face is rendered only over the pixels its mesh covers (at most
        OVERLAY_RENDER_MAX_SIDE pixels, then scaled up) and blended in row
        bands, so memory and time stay small for photos of any size.

        Args:
            image: [H, W, 3] uint8 RGB.
            results: the faces to draw.
            alpha: opacity of the shaded faces.

        Returns:
            [H, W, 3] uint8 BGR.
        """
        H, W = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])
        morphable = self.morphable.to("cpu")
        for r in results:
            coeffs = {key: torch.from_numpy(v)[None] for key, v in r.coefficients.items()}
            shape = morphable.vertices(coeffs["id"], coeffs["exp"])
            rotation = torch.from_numpy(r.rotation).float()[None]
            translation = torch.from_numpy(r.translation).float()[None]
            projected = float(r.scale) * shape[0] @ rotation[0].T + translation[0]
            region = _pixel_region(projected[:, :2].numpy(), H, W)
            if region is None:  # the face lies outside the image
                continue
            x0, y0, x1, y1 = region
            f = min(1.0, OVERLAY_RENDER_MAX_SIDE / max(x1 - x0, y1 - y0))
            camera = WeakPerspectiveCamera(
                torch.tensor([float(r.scale) * f]),
                rotation,
                (translation - torch.tensor([[x0, y0, 0.0]])) * f,
                depth_range=1e5 * f,
            )
            shaded = render(
                shape,
                morphable.triangles,
                torch.full((morphable.num_vertices, 3), 0.8),
                directional_gamma(1, ambient=0.45, diffuse=0.7, direction=(0.3, 0.4, 1.0)),
                camera,
                (max(1, round((y1 - y0) * f)), max(1, round((x1 - x0) * f))),
            )
            colour = (shaded.image[0].clamp(0, 1).numpy()[..., ::-1] * 255).astype(np.float32)
            weight = shaded.mask[0].numpy().astype(np.float32) * alpha
            if f < 1:
                colour = cv2.resize(colour.astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
                weight = cv2.resize(weight, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
            _blend(bgr[y0:y1, x0:x1], colour, weight)
        for r in results:
            bgr = draw_landmarks(bgr, r.landmarks[:, :2], radius=max(1, int(round(min(H, W) / 300))))
        return bgr


def _blend(target: np.ndarray, colour: np.ndarray, weight: np.ndarray, band: int = 256) -> None:
    """target = target (1 - weight) + colour weight, in place, in bands of rows (uint8 [h, w, 3])."""
    for r0 in range(0, target.shape[0], band):
        w = weight[r0 : r0 + band, :, None]
        mixed = target[r0 : r0 + band] * (1 - w) + colour[r0 : r0 + band] * w
        target[r0 : r0 + band] = (mixed + 0.5).astype(np.uint8)


def _pixel_region(points: np.ndarray, height: int, width: int) -> Optional[Tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of the whole pixels covering `points` [N, 2], within the image; None if empty."""
    if not len(points) or not np.isfinite(points).all():
        return None
    x0, y0 = np.floor(points.min(0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def check_box(box) -> np.ndarray:
    """Validates a face box given by the caller.

    Args:
        box: [x0, y0, x1, y1] in image pixels (any sequence of numbers).

    Returns:
        [4] float64.

    Raises:
        ValueError: not 4 finite numbers, or not x0 < x1 and y0 < y1.
    """
    try:
        b = np.asarray(box, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"a face box must be 4 numbers [x0, y0, x1, y1], got {box!r}") from None
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"a face box must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
    if not (b[0] < b[2] and b[1] < b[3]):
        raise ValueError(f"a face box [x0, y0, x1, y1] must have x0 < x1 and y0 < y1 (a positive size), got {box!r}")
    return b


def detect_faces_downscaled(image: np.ndarray, max_side: int = DETECTION_MAX_SIDE) -> List[np.ndarray]:
    """Face boxes found on a copy of the image at most `max_side` pixels on its longer side.

    Args:
        image: [H, W, 3] uint8 RGB.
        max_side: longest side of the copy the detector sees.

    Returns:
        Boxes [x0, y0, x1, y1] in the original image's pixels, largest first.
    """
    factor = max_side / max(image.shape[:2])
    if factor >= 1:
        return detect_faces(image)
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return [box / factor for box in detect_faces(small)]


def output_stems(paths: Sequence[Path]) -> List[str]:
    """A distinct output name stem per input file: its stem, or stem_suffix when stems collide.

    face.jpg and face.png in one folder become face_jpg and face_png; names
    that still collide (also when differing only in case, for file systems
    that ignore it) get -2, -3, ...

    Args:
        paths: the input files.

    Returns:
        One stem per path, in order.
    """
    paths = [Path(p) for p in paths]
    counts: Dict[str, int] = {}
    for p in paths:
        counts[p.stem.lower()] = counts.get(p.stem.lower(), 0) + 1
    stems, taken = [], set()
    for p in paths:
        base = p.stem if counts[p.stem.lower()] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}"
        stem, k = base, 2
        while stem.lower() in taken:
            stem, k = f"{base}-{k}", k + 1
        taken.add(stem.lower())
        stems.append(stem)
    return stems


def write_face(result: FaceResult, triangles: np.ndarray, out_dir: Path, stem: str) -> None:
    """Writes one face's OBJ, PLY, landmarks JSON and coefficients .npz.

    The meshes are upright (y up, z towards the viewer); the JSON holds the
    landmarks in image pixels.

    Args:
        result: the face.
        triangles: [T, 3] the 3DMM's triangles.
        out_dir: the output folder.
        stem: the files' stem.
    """
    upright = result.vertices * np.array([1.0, -1.0, -1.0])
    write_obj(out_dir / f"{stem}.obj", upright, triangles, result.colours)
    write_ply(out_dir / f"{stem}.ply", upright, triangles, result.colours)
    yaw, pitch, roll = (float(a) for a in result.angles)
    with open(out_dir / f"{stem}_landmarks.json", "w") as f:
        json.dump(
            {
                "landmarks68": np.round(result.landmarks, 3).tolist(),
                "landmark_square": result.box.tolist(),
                "pose": {"yaw": yaw, "pitch": pitch, "roll": roll, "scale": result.scale},
                "frame": "image pixels: x right, y down, depth away from the camera",
            },
            f,
            indent=1,
        )
    np.savez(
        out_dir / f"{stem}_coeffs.npz",
        rotation=result.rotation,
        scale=result.scale,
        translation=result.translation,
        **result.coefficients,
    )
