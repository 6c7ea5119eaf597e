"""A held-out synthetic test set scored with the AFLW2000-3D protocol, plus pose and dense errors.

The test set is drawn from the built-in model's generator (``SyntheticFaces``)
with generator seeds far from any training stream (training draws seeds
``run_seed * 1_000_003 + step * world + rank``; the test set uses
``2**40 + seed * 2**20 + chunk``), in fixed chunks of ``CHUNK`` faces, so that
N faces are always the first N of the same sequence, and rendering at another
crop size gives the same faces (same identity, pose, light, background).

Each face is then treated like an AFLW2000-3D image and goes through the same
code (``pgnface.eval.aflw2000.evaluate``): cropped from its ground-truth
landmark box, predicted, mapped back, 2D / 3D NME by |yaw| bin. On top, per face:

- pose errors: |predicted - true| yaw, pitch and roll in degrees (angles of
  ``pgnface.ops.rotation_to_angles`` applied to the model-space rotation,
  the generator's convention; differences wrapped to [0, 180]);
- posed vertex NME (%): the reconstruction's vertices mapped to the image vs
  the true vertices, both depth-centred on their landmark vertices' mean depth,
  mean distance over sqrt(w * h) of the ground-truth 2D landmark box;
- shape error: mean vertex distance in model units between the predicted
  model-space shape (identity + expression) and the true one after a
  similarity alignment of prediction to truth, which removes pose and scale.
"""

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch

from pgnface import ops
from pgnface.data.synthetic import SyntheticConfig, SyntheticFaces
from pgnface.eval.aflw2000 import AFLWSample, EvalResult, evaluate
from pgnface.eval.metrics import box_norm, nme
from pgnface.io.crops import crop_to_image, landmark_crop_box
from pgnface.morphable import FRONTAL, MorphableModel
from pgnface.ops.pose import rotation_from_angles

CHUNK = 25
STREAM_BASE = 1 << 40
METRICS = (
    "nme2d",
    "nme3d",
    "recon_nme2d",
    "yaw_error",
    "pitch_error",
    "roll_error",
    "pose_error",
    "rotation_error",
    "vertex_nme",
    "shape_error",
)


@dataclass
class SyntheticTestSet:
    """Rendered test faces with their ground truth (B faces, N vertices, crop size S).

    Attributes:
        samples: AFLW2000-3D-style samples (uint8 image [S, S, 3], 68 landmarks in
            iBUG order with z towards the camera, Pose_Para-like pose).
        vertices: [B, N, 3] true posed vertices, image pixels (z away from the camera).
        shapes: [B, N, 3] true model-space shapes (identity + expression, unposed).
        angles: [B, 3] true yaw, pitch, roll in degrees.
        size: S.
    """

    samples: List[AFLWSample]
    vertices: np.ndarray
    shapes: np.ndarray
    angles: np.ndarray
    size: int


def synthetic_test_set(
    num: int, size: int, seed: int = 0, yaw_max: float = 90.0, morphable: Optional[MorphableModel] = None
) -> SyntheticTestSet:
    """Renders the held-out test set (deterministic for (num, seed, yaw_max); see the module docstring).

    Args:
        num: number of faces B.
        size: image size S in pixels.
        seed: which test set (0 by default; each seed is a different set).
        yaw_max: yaw ~ U(-yaw_max, yaw_max) degrees.
        morphable: the 3DMM (the built-in model if None); must define all 68 landmarks.

    Returns:
        SyntheticTestSet: AFLW-style samples, posed vertices [B, N, 3], unposed
        shapes [B, N, 3], angles [B, 3] (yaw, pitch, roll degrees) and S.

    Raises:
        ValueError: num < 1, yaw_max outside (0, 90], or a 3DMM without all 68 landmarks.
    """
    if num < 1:
        raise ValueError(f"the test set needs at least 1 face, got {num}")
    if not 0 < yaw_max <= 90:
        raise ValueError(f"yaw_max must be in (0, 90] degrees, got {yaw_max}")
    morphable = (morphable or MorphableModel.builtin()).to("cpu")
    ids = morphable.landmark_ids.tolist()
    if sorted(ids) != list(range(68)):
        raise ValueError(f"{morphable.name} does not define all 68 landmarks (the AFLW2000-3D protocol needs them)")
    faces = SyntheticFaces(morphable, SyntheticConfig(size=size, yaw_max=yaw_max), seed=0)
    chunks = [faces.sample(CHUNK, seed=STREAM_BASE + seed * (1 << 20) + k) for k in range(math.ceil(num / CHUNK))]
    data = {
        key: torch.cat([c[key] for c in chunks])[:num]
        for key in ("image", "landmarks3d", "vertices", "yaw", "pitch", "roll", "id", "exp")
    }
    images = (data["image"].permute(0, 2, 3, 1) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    angles = torch.stack([data["yaw"], data["pitch"], data["roll"]], 1).double().numpy()
    samples = []
    for i in range(num):
        lm = np.zeros((68, 3))
        lm[ids] = data["landmarks3d"][i].double().numpy()
        lm[:, 2] = -lm[:, 2]  # AFLW2000-3D's z points towards the camera
        pose = np.array([*np.radians(angles[i, [1, 0, 2]]), 0.0, 0.0, 0.0, 1.0])  # pitch, yaw, roll
        samples.append(AFLWSample(f"synthetic{seed:03d}_{i:05d}", images[i], lm, pose))
    shapes = morphable.vertices(data["id"], data["exp"]).double().numpy()
    return SyntheticTestSet(samples, data["vertices"].double().numpy(), shapes, angles, size)


def angle_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Absolute angle differences, wrapped.

    Args:
        pred: [B, 3] angles in degrees.
        true: [B, 3] angles in degrees.

    Returns:
        [B, 3] |pred - true| in [0, 180].
    """
    diff = np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)) % 360.0
    return np.minimum(diff, 360.0 - diff)


def rotation_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Geodesic angle between rotations.

    Unlike per-angle errors, it has no gimbal-lock artefact near |yaw| = 90,
    where pitch and roll are ill-defined.

    Args:
        pred: [B, 3, 3] rotations.
        true: [B, 3, 3] rotations.

    Returns:
        [B] degrees.
    """
    relative = np.einsum("bji,bjk->bik", np.asarray(pred, np.float64), np.asarray(true, np.float64))
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def vertex_nme(pred: np.ndarray, true: np.ndarray, true_landmarks2d: np.ndarray, depth_ids: np.ndarray) -> np.ndarray:
    """Posed dense error (%) over sqrt(w * h) of the true landmark box.

    Both vertex sets are depth-centred on the mean depth of their `depth_ids`
    vertices (the landmark vertices) before comparing.

    Args:
        pred: [B, N, 3] predicted vertices.
        true: [B, N, 3] true vertices.
        true_landmarks2d: [B, L, 2] true landmarks (the normaliser's box).
        depth_ids: [L'] vertex indices whose mean depth is the origin.

    Returns:
        [B] mean vertex distance in percent of the box size.
    """
    pred, true = np.asarray(pred, np.float64).copy(), np.asarray(true, np.float64).copy()
    for v in (pred, true):
        v[..., 2] -= v[:, depth_ids, 2].mean(1, keepdims=True)
    return 100.0 * np.linalg.norm(pred - true, axis=2).mean(1) / box_norm(true_landmarks2d)


def aligned_shape_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean vertex distance of shapes after a similarity alignment of pred onto true.

    Args:
        pred: [B, N, 3] predicted shapes.
        true: [B, N, 3] true shapes.

    Returns:
        [B] mean distances in the shapes' units.
    """
    p = torch.as_tensor(np.asarray(pred), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(true), dtype=torch.float64)
    scale, R, shift = ops.similarity_align(p, t)
    aligned = ops.apply_similarity(p, scale, R, shift)
    return (aligned - t).norm(dim=2).mean(1).numpy()


class _Recorder:
    """Gives evaluate() the landmarks of a network and keeps the rest of its output."""

    def __init__(self, net: Callable, size: int, device):
        self.net, self.input_size, self.device, self.outputs = net, size, torch.device(device), []

    @torch.no_grad()
    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        out = self.net(crops.to(self.device))
        self.outputs.append({k: out[k].detach().double().cpu() for k in ("landmarks", "rotation", "vertices", "shape")})
        return out["landmarks"].float()


def evaluate_synthetic(
    net: Callable, test_set: SyntheticTestSet, landmark_vertices: np.ndarray, batch_size: int = 16, device="cpu"
) -> EvalResult:
    """Scores a reconstructor on the test set (see the module docstring).

    Args:
        net: a PGNNetwork, or any callable mapping crops [B, 3, S, S] to a dict
            with landmarks [B, 68, 3], rotation [B, 3, 3] (crop frame), vertices
            [B, N, 3] (crop pixels) and shape [B, N, 3] (model space).
        test_set: from synthetic_test_set, rendered at the network's input size.
        landmark_vertices: [68] the model's landmark vertex ids (for depth centring).
        batch_size: crops per network call.
        device: where the crops go.

    Returns:
        EvalResult whose per-image rows hold name, yaw and every key of METRICS.
    """
    recorder = _Recorder(net, test_set.size, device)
    result = evaluate(recorder, test_set.samples, batch_size=batch_size)
    out = {k: torch.cat([o[k] for o in recorder.outputs]) for k in recorder.outputs[0]}
    boxes = np.stack([landmark_crop_box(s.landmarks[:, :2]) for s in test_set.samples])
    posed = np.stack([crop_to_image(v, b, test_set.size) for v, b in zip(out["vertices"].numpy(), boxes)])
    angles = ops.rotation_to_angles(FRONTAL.double() @ out["rotation"]).numpy()
    pose = angle_errors(angles, test_set.angles)
    true_rotation = rotation_from_angles(*torch.as_tensor(test_set.angles, dtype=torch.float64).T)
    geodesic = rotation_errors((FRONTAL.double() @ out["rotation"]).numpy(), true_rotation.numpy())
    true2d = np.stack([s.landmarks[:, :2] for s in test_set.samples])
    dense = vertex_nme(posed, test_set.vertices, true2d, np.asarray(landmark_vertices))
    shape = aligned_shape_error(out["shape"].numpy(), test_set.shapes)
    # The reconstruction's own 68 landmarks: its landmark vertices, posed (PGN: solved pose; else regressed).
    recon = [nme(p[np.asarray(landmark_vertices)], s.landmarks)["nme2d"] for p, s in zip(posed, test_set.samples)]
    for i, row in enumerate(result.per_image):
        row.update(
            recon_nme2d=float(recon[i]),
            rotation_error=float(geodesic[i]),
            yaw_error=float(pose[i, 0]),
            pitch_error=float(pose[i, 1]),
            roll_error=float(pose[i, 2]),
            pose_error=float(pose[i].mean()),
            vertex_nme=float(dense[i]),
            shape_error=float(shape[i]),
        )
    return result
