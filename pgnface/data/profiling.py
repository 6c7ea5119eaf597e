"""Face profiling: fitted real faces turned to larger yaw, re-rendered from their own image.

The step that turned 300-W into 300W-LP (Zhu et al., 3DDFA). For a face fitted
by pgnface.data.fitting (coefficients and weak-perspective pose ``p = s R x + t``):

1. **Texture**: every vertex of the fitted mesh takes the image colour at its
   projection (bilinear); vertices the fitted pose hides (depth test of a
   rasterization, ``pgnface.morphable.vertex_visibility``) take the mean colour of
   the visible ones.
2. **Rotation**: the model-space rotation's yaw grows by each step, away from
   the face's current yaw (pitch and roll kept; ``R = Rz(roll) Ry(yaw) Rx(pitch)``),
   up to 90 degrees; the face turns about the centre of its 68 landmark
   vertices, which stays where it was in the image.
3. **Rendering**: the rotated mesh is rasterized (``ops.rasterize``, back faces
   culled) and the vertex colours interpolated (``ops.interpolate``).
4. **Background**: the original image with the original face region (its
   rasterized mask, dilated) filled by OpenCV's Telea inpainting and blurred, so
   no ghost of the unrotated face remains; the rotated face is composited over
   it with a one-pixel feathered edge. Hair, ears and neck stay where they were
   (the mesh covers the face only).
5. **Labels**: the rotated 3D landmark vertices, projected (the jaw is now the
   projected 3D jaw, not an outline), their depth, visibility, the new pose and
   the coefficients, written in the 300W-LP layout that
   ``pgnface.data.labelled_folder.LabelledFolder`` (``data.folder`` in training) reads.

Derived images are as restricted as their source: profiled 300-W faces are for
non-commercial research use only, which every written file records.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
import scipy.io
import torch

from pgnface import ops
from pgnface.morphable import FRONTAL, MorphableModel, WeakPerspectiveCamera, vertex_visibility

DATA_TERMS = (
    "derived from labelled face images (300-W: AFW, HELEN; YouTube Faces) and their labels: "
    "non-commercial research use only, like the source images"
)
MAX_YAW = 90.0


@dataclass
class ProfiledFace:
    """One rotated face.

    Attributes:
        image: [H, W, 3] uint8 RGB.
        landmarks3d: [68, 3] (u, v, depth) image pixels, NaN where the model has no point.
        visible: [68] bool, landmarks not hidden by the face.
        rotation: [3, 3] image-frame rotation; scale: float; translation: [3].
        angles: [3] yaw, pitch, roll in degrees (model-space rotation FRONTAL @ rotation).
        yaw_step: the signed yaw change in degrees.
    """

    image: np.ndarray
    landmarks3d: np.ndarray
    visible: np.ndarray
    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    angles: np.ndarray
    yaw_step: float


def sample_colours(image: np.ndarray, points: torch.Tensor) -> torch.Tensor:
    """Bilinear colours of an image at continuous pixel positions.

    Args:
        image: [H, W, 3] uint8 RGB.
        points: [N, 2+] (u, v), pixel centres at integer + 0.5.

    Returns:
        [N, 3] RGB in [0, 1] (border pixels repeated outside the image).
    """
    H, W = image.shape[:2]
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(points.dtype) / 255.0
    grid = torch.stack([points[:, 0] * (2.0 / W) - 1, points[:, 1] * (2.0 / H) - 1], -1)[None, None]
    sampled = torch.nn.functional.grid_sample(tensor, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0, :, 0].T


def rotated_poses(rotation: torch.Tensor, yaw_steps: Sequence[float]):
    """Image-frame rotations with the yaw grown by each step, away from the current yaw.

    Args:
        rotation: [3, 3] the fitted image-frame rotation.
        yaw_steps: non-negative yaw increments in degrees.

    Returns:
        (rotations [S, 3, 3], angles [S, 3] yaw/pitch/roll degrees, signed steps [S]) for the
        steps whose new yaw stays within +-90 degrees.
    """
    frontal = FRONTAL.to(rotation)
    yaw, pitch, roll = ops.rotation_to_angles((frontal @ rotation)[None])[0].tolist()
    direction = 1.0 if yaw >= 0 else -1.0
    kept = [direction * float(s) for s in yaw_steps if abs(yaw + direction * float(s)) <= MAX_YAW + 1e-6]
    if not kept:
        return rotation.new_zeros(0, 3, 3), rotation.new_zeros(0, 3), []
    new_yaw = rotation.new_tensor([yaw + s for s in kept])
    same = torch.ones_like(new_yaw)
    model_rotation = ops.rotation_from_angles(new_yaw, same * pitch, same * roll)
    angles = torch.stack([new_yaw, same * pitch, same * roll], 1)
    return frontal @ model_rotation, angles, kept


def _background(image: np.ndarray, face_mask: np.ndarray) -> np.ndarray:
    """The image with the face region inpainted and blurred.

    Args:
        image: [H, W, 3] uint8 RGB.
        face_mask: [H, W] bool, the old face region.

    Returns:
        [H, W, 3] uint8 RGB.
    """
    region = cv2.dilate(face_mask.astype(np.uint8) * 255, np.ones((7, 7), np.uint8))
    filled = cv2.inpaint(image, region, 5, cv2.INPAINT_TELEA)
    blurred = cv2.GaussianBlur(filled, (0, 0), 4.0)
    inside = (region > 0)[..., None]
    return np.where(inside, blurred, image)


def profile_face(
    image: np.ndarray,
    model: MorphableModel,
    id_coeffs: torch.Tensor,
    exp_coeffs: torch.Tensor,
    scale: float,
    rotation: torch.Tensor,
    translation: torch.Tensor,
    yaw_steps: Sequence[float],
) -> List[ProfiledFace]:
    """Turns one fitted face by each yaw step (see the module docstring).

    Args:
        image: [H, W, 3] uint8 RGB, the image the face was fitted in.
        model: the fitted 3DMM (with triangles).
        id_coeffs: [Ki]; exp_coeffs: [Ke] the fitted coefficients.
        scale: the fitted scale; rotation: [3, 3] image-frame rotation; translation: [3].
        yaw_steps: yaw increments in degrees (0 re-renders the face unturned).

    Returns:
        One ProfiledFace per step whose yaw stays within +-90 degrees.

    Raises:
        ValueError: a model without triangles, or an image that is not [H, W, 3] uint8.
    """
    if model.triangles.numel() == 0:
        raise ValueError(f"{model.name} has no triangles: a landmark-only 3DMM cannot be rendered")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    H, W = image.shape[:2]
    dtype = model.dtype
    tris = model.triangles
    rotation, translation = rotation.to(dtype), translation.to(dtype)
    s = torch.tensor([float(scale)], dtype=dtype)
    shape = model.vertices(id_coeffs.to(dtype)[None], exp_coeffs.to(dtype)[None])  # [1, N, 3] model space
    camera = WeakPerspectiveCamera(s, rotation[None], translation[None])
    points = camera.project(shape)
    clip = camera.clip(shape, (H, W))
    fragments = ops.rasterize(clip, tris, (H, W), cull="back")
    seen = vertex_visibility(points, clip, fragments, tris)[0]
    colours = sample_colours(image, points[0])
    if seen.any():
        colours[~seen] = colours[seen].mean(0)
    background = _background(image, fragments.mask[0].numpy())

    rotations, angles, steps = rotated_poses(rotation, yaw_steps)
    if not steps:
        return []
    S = len(steps)
    ids = model.landmark_ids.tolist()
    centre = shape[0, model.landmark_vertices].mean(0)  # turn about the landmarks' centre
    scales = s.expand(S)
    translations = (s * (rotation @ centre) + translation)[None] - s * (rotations @ centre)
    turned = WeakPerspectiveCamera(scales, rotations, translations)
    shapes = shape.expand(S, -1, -1)
    new_points = turned.project(shapes)
    new_clip = turned.clip(shapes, (H, W))
    new_fragments = ops.rasterize(new_clip, tris, (H, W), cull="back")
    rendered = ops.interpolate(colours, new_fragments, tris)
    visible = vertex_visibility(new_points, new_clip, new_fragments, tris)
    out = []
    for k in range(S):
        mask = new_fragments.mask[k].numpy().astype(np.float32)
        # A one-pixel feather at the face's edge; inside the face the render is kept as it is.
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8))
        soft = np.where(inner > 0, 1.0, cv2.GaussianBlur(inner, (0, 0), 0.8)) * mask  # never past the mask
        face = (rendered[k].numpy() * 255.0).clip(0, 255)
        composite = soft[..., None] * face + (1 - soft[..., None]) * background.astype(np.float32)
        lm = np.full((68, 3), np.nan)
        lm[ids] = new_points[k, model.landmark_vertices].double().numpy()
        vis = np.zeros(68, bool)
        vis[ids] = visible[k, model.landmark_vertices].numpy()
        out.append(
            ProfiledFace(
                image=(composite + 0.5).clip(0, 255).astype(np.uint8),
                landmarks3d=lm,
                visible=vis,
                rotation=rotations[k].double().numpy(),
                scale=float(scale),
                translation=translations[k].double().numpy(),
                angles=angles[k].double().numpy(),
                yaw_step=steps[k],
            )
        )
    return out


def write_profiled(
    face: ProfiledFace,
    out_dir,
    name: str,
    id_coeffs: np.ndarray,
    exp_coeffs: np.ndarray,
    extras: Dict[str, object],
) -> Path:
    """Writes one profiled face as NAME.jpg + NAME.mat in the 300W-LP layout.

    The .mat holds ``pt3d_68`` [3, 68] (u, v image pixels with centres at integer
    + 0.5, depth away from the camera), ``pt2d`` [2, 68], ``Pose_Para`` [1, 7]
    (pitch, yaw, roll in radians, tx, ty, tz, scale), ``Shape_Para`` [Ki, 1],
    ``Exp_Para`` [Ke, 1], ``visible`` [1, 68], ``data_terms`` and `extras`.

    Returns:
        The image path.

    Raises:
        OSError: the image cannot be written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path = out_dir / f"{name}.jpg"
    bgr = np.ascontiguousarray(face.image[..., ::-1])
    if not cv2.imwrite(str(image_path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write {image_path}")
    yaw, pitch, roll = np.deg2rad(face.angles)
    pose = np.concatenate([[pitch, yaw, roll], face.translation, [face.scale]])[None, :]
    scipy.io.savemat(
        out_dir / f"{name}.mat",
        {
            "pt3d_68": face.landmarks3d.T,
            "pt2d": face.landmarks3d[:, :2].T,
            "Pose_Para": pose,
            "Shape_Para": np.asarray(id_coeffs, np.float64)[:, None],
            "Exp_Para": np.asarray(exp_coeffs, np.float64)[:, None],
            "visible": face.visible.astype(np.uint8)[None, :],
            "yaw_step": float(face.yaw_step),
            "data_terms": DATA_TERMS,
            **extras,
        },
    )
    return image_path
