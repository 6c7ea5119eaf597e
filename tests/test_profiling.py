"""Face profiling: a fitted face turned to larger yaw, re-rendered from its image, labels carried along."""

import json

import cv2
import numpy as np
import scipy.io
import torch
from test_train import TINY

from pgnface.cli.main import main
from pgnface.data.labelled_folder import LabelledFolder
from pgnface.data.profiling import profile_face, rotated_poses
from pgnface.morphable import FRONTAL, MorphableModel, WeakPerspectiveCamera, directional_gamma, render
from pgnface.ops import rotation_from_angles, rotation_to_angles
from pgnface.train import TrainConfig, apply_overrides, train

SIZE = 160


def _scene(model, yaw, seed=0):
    """A synthetic face rendered with ambient light only, so its colours do not depend on the pose."""
    g = torch.Generator().manual_seed(seed)
    id_c = torch.randn(1, model.num_id, generator=g) * 0.5
    exp_c = torch.randn(1, model.num_exp, generator=g) * 0.5
    albedo = model.albedo(torch.randn(1, model.num_albedo, generator=g) * 0.8).clamp(0, 1)
    extent = float(model.mean[:, 0].max() - model.mean[:, 0].min())
    scale = torch.tensor([90.0 / extent])
    translation = torch.tensor([[80.0, 84.0, 0.0]])
    rotation = FRONTAL @ rotation_from_angles(*(torch.tensor([v]) for v in (yaw, 6.0, -4.0)))
    return dict(id=id_c, exp=exp_c, albedo=albedo, scale=scale, rotation=rotation, translation=translation)


def _render(model, scene, rotation, translation, background):
    camera = WeakPerspectiveCamera(scene["scale"], rotation, translation)
    vertices = model.vertices(scene["id"], scene["exp"])
    gamma = directional_gamma(1, ambient=1.0, diffuse=0.0)
    return render(vertices, model.triangles, scene["albedo"], gamma, camera, SIZE, background=background)


def test_profile_matches_the_rotated_ground_truth():
    model = MorphableModel.builtin()
    scene = _scene(model, yaw=10.0)
    background = torch.full((1, SIZE, SIZE, 3), 0.3)
    original = _render(model, scene, scene["rotation"], scene["translation"], background)
    image = (original.image[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    faces = profile_face(
        image,
        model,
        scene["id"][0],
        scene["exp"][0],
        float(scene["scale"]),
        scene["rotation"][0],
        scene["translation"][0],
        [30.0],
    )
    assert len(faces) == 1 and faces[0].yaw_step == 30.0
    face = faces[0]
    # The ground truth turned by 30 degrees of yaw about its landmarks' centre.
    truth_rotation = FRONTAL @ rotation_from_angles(*(torch.tensor([v]) for v in (40.0, 6.0, -4.0)))
    shape = model.vertices(scene["id"], scene["exp"])
    centre = shape[0, model.landmark_vertices].mean(0)
    s = scene["scale"]
    truth_translation = s * (scene["rotation"][0] @ centre) + scene["translation"][0] - s * (truth_rotation[0] @ centre)
    truth = _render(model, scene, truth_rotation, truth_translation[None], background)
    truth_lm = truth.image_points[0, model.landmark_vertices].numpy()
    ids = model.landmark_ids.numpy()
    # The carried 2D landmarks lie where rendering the rotated ground truth puts them.
    np.testing.assert_allclose(face.landmarks3d[ids, :2], truth_lm[:, :2], atol=1e-3)
    np.testing.assert_allclose(face.angles, [40.0, 6.0, -4.0], atol=1e-3)
    # The re-rendered face looks like the rotated ground truth: same colours inside the face
    # (up to resampling), away from its edge.
    inner = cv2.erode(truth.mask[0].numpy().astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    truth_image = truth.image[0].clamp(0, 1).numpy() * 255
    difference = np.abs(face.image.astype(np.float64) - truth_image)[inner].mean()
    assert difference < 6.0, difference
    # And not like the unrotated image (the test would notice a face that did not turn).
    assert np.abs(image.astype(np.float64) - truth_image)[inner].mean() > 2 * difference
    # Outside both faces the background is the original image.
    outside = ~cv2.dilate(
        (truth.mask[0].numpy() + original.mask[0].numpy() > 0).astype(np.uint8), np.ones((15, 15))
    ).astype(bool)
    assert np.abs(face.image.astype(np.float64) - image)[outside].max() <= 1.0


def test_rotated_poses_turn_away_and_stop_at_90_degrees():
    rotation = FRONTAL @ rotation_from_angles(torch.tensor([-50.0]), torch.tensor([5.0]), torch.tensor([3.0]))
    rotations, angles, steps = rotated_poses(rotation[0], [15, 30, 45])
    assert steps == [-15.0, -30.0]  # -95 would pass 90 degrees
    np.testing.assert_allclose(rotation_to_angles(FRONTAL @ rotations).numpy(), angles.numpy(), atol=1e-3)
    np.testing.assert_allclose(angles[:, 0].numpy(), [-65.0, -80.0], atol=1e-4)


def _synthetic_300w(tmp_path, model, n=3):
    """A tiny 300-W-layout folder (landmarks.npz) of rendered faces labelled with their own landmarks."""
    root = tmp_path / "w300"
    (root / "afw").mkdir(parents=True)
    names, pts = [], []
    for i in range(n):
        scene = _scene(model, yaw=[-20.0, 5.0, 25.0][i % 3], seed=i)
        rendering = _render(model, scene, scene["rotation"], scene["translation"], torch.full((1, SIZE, SIZE, 3), 0.5))
        image = (rendering.image[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        cv2.imwrite(str(root / "afw" / f"face_{i}.jpg"), image[..., ::-1])
        lm = rendering.image_points[0, model.landmark_vertices][model.landmark_ids.argsort(), :2].numpy()
        names.append(f"afw/face_{i}.jpg")
        pts.append(lm - 0.5)  # 0-based pixel indices, as landmarks.npz stores them
    np.savez(
        root / "landmarks.npz",
        names=np.array(names),
        subset=np.array(["afw"] * n),
        pts68=np.stack(pts).astype(np.float32),
    )
    return root


def test_fit_profile_and_train_one_step(tmp_path):
    model = MorphableModel.builtin()
    root = _synthetic_300w(tmp_path, model)
    cache = tmp_path / "fit.npz"
    assert main(["data", "fit", str(root), "-o", str(cache), "--iterations", "40"]) == 0
    with np.load(cache) as data:
        assert data["landmarks3d"].shape == (3, 68, 3) and float(np.median(data["residual_io"])) < 2.0
        assert "research use only" in json.loads(str(data["meta"]))["data_terms"]
    out = tmp_path / "profiled"
    assert main(["data", "profile", str(cache), "-o", str(out), "--yaw-steps", "15,30"]) == 0
    mats = sorted(out.rglob("*.mat"))
    assert len(mats) == 6 and (out / "contact_sheet.png").is_file()
    mat = scipy.io.loadmat(mats[0])
    assert mat["pt3d_68"].shape == (3, 68) and mat["Pose_Para"].shape == (1, 7)
    assert "research use only" in str(mat["data_terms"])
    folder = LabelledFolder(out, size=64)
    image, lm = folder.load(0)
    assert image.shape == (3, 64, 64) and torch.isfinite(lm).all()
    cfg = apply_overrides(
        TrainConfig(), TINY + ["steps=1", f"data.folder={out}", "data.folder_weight=1", "data.single_weight=0"]
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 1
