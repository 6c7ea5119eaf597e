"""The synthetic generator, clips, the 300W-LP writer and `pgnface render`."""

import numpy as np
import pytest
import scipy.io
import torch
from op_harness import shared_data_file

from pgnface.cli import main as cli_main
from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.data.labelled_folder import write_300wlp
from pgnface.morphable import FRONTAL, MorphableModel
from pgnface.ops.pose import rotation_from_angles


@pytest.fixture(scope="module")
def generator():
    return SyntheticFaces(MorphableModel.builtin(), SyntheticConfig(size=96), seed=3)


def test_sample_shapes_ranges_and_determinism(generator):
    a = generator.sample(6, seed=11)
    b = generator.sample(6, seed=11)
    c = generator.sample(6, seed=12)
    assert a["image"].shape == (6, 3, 96, 96) and a["landmarks3d"].shape == (6, 68, 3)
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert a["image"].min() >= 0 and a["image"].max() <= 1
    assert (a["yaw"].abs() <= 90).all() and (a["pitch"].abs() <= 35).all() and (a["roll"].abs() <= 30).all()
    assert (a["mask"].mean((1, 2)) > 0.1).all(), "every crop shows a face"


def test_ground_truth_is_exact(generator):
    s = generator.sample(4, seed=5)
    morphable = generator.morphable
    # Landmarks are the crop-frame vertices at the model's landmark vertices.
    lm = s["vertices"][:, morphable.landmark_vertices]
    torch.testing.assert_close(s["landmarks2d"], lm[..., :2])
    # And the vertices are s R x + t of the model with the returned coefficients.
    verts = morphable.vertices(s["id"], s["exp"], s["rotation"], s["scale"], s["translation"])
    torch.testing.assert_close(s["vertices"], verts, rtol=1e-4, atol=1e-3)
    # The rotation is FRONTAL @ R(yaw, pitch, roll).
    torch.testing.assert_close(s["rotation"], FRONTAL @ rotation_from_angles(s["yaw"], s["pitch"], s["roll"]))
    # Visible landmarks land on the rendered face, within a pixel: the jaw-contour
    # landmarks sit on the silhouette at large yaw.
    vis = s["landmark_visible"]
    xy = s["landmarks2d"][vis].long().clamp(0, 95)
    batch = torch.arange(4)[:, None].expand(4, 68)[vis]
    near_face = torch.nn.functional.max_pool2d(s["mask"].float()[:, None], 3, stride=1, padding=1)[:, 0]
    assert near_face[batch, xy[:, 1], xy[:, 0]].mean() > 0.98


def test_yaw_sign_convention(generator):
    morphable = generator.morphable
    rot = FRONTAL @ rotation_from_angles(torch.tensor([40.0]), torch.zeros(1), torch.zeros(1))
    lm = morphable.landmarks(torch.zeros(1, 40), None, rot, torch.ones(1))[0]
    # Positive yaw turns the face to the image's right: the nose tip moves right of the face centre.
    assert lm[30, 0] > lm[[36, 45], 0].mean()
    rot = FRONTAL @ rotation_from_angles(torch.zeros(1), torch.tensor([25.0]), torch.zeros(1))
    lm_down = morphable.landmarks(torch.zeros(1, 40), None, rot, torch.ones(1))[0]
    lm_front = morphable.landmarks(torch.zeros(1, 40), None, FRONTAL[None], torch.ones(1))[0]
    # Positive pitch looks down: the nose tip drops (larger v) relative to the eyes.
    assert (lm_down[30, 1] - lm_down[36:48, 1].mean()) > (lm_front[30, 1] - lm_front[36:48, 1].mean())


def test_angles_round_trip_through_the_ops_convention(generator):
    import pgnface.ops as ops

    s = generator.sample(16, seed=9)
    angles = ops.rotation_to_angles(FRONTAL @ s["rotation"])  # back to the model-space rotation
    torch.testing.assert_close(angles, torch.stack([s["yaw"], s["pitch"], s["roll"]], -1), rtol=0, atol=1e-3)


def test_clips_share_identity_and_move_smoothly(generator):
    clips = generator.sample_clips(2, 8, seed=1)
    assert clips["image"].shape == (2, 8, 3, 96, 96) and clips["id"].shape == (2, 40)
    steps = clips["yaw"].diff(dim=1).abs()
    assert steps.max() < 45, "pose changes smoothly between frames"
    frames = clips["vertices"]
    # Same identity: with expression and pose removed, the shapes agree.
    morphable = generator.morphable
    neutral = morphable.vertices(clips["id"].repeat_interleave(8, 0))
    assert neutral.reshape(2, 8, -1, 3).std(1).max() < 1e-5
    assert not torch.equal(frames[:, 0], frames[:, -1])


def test_write_300wlp_layout(generator, tmp_path):
    s = generator.sample(3, seed=2)
    paths = write_300wlp(s, tmp_path, prefix="img", morphable_name="builtin")
    assert [p.name for p in paths] == ["img_000000.jpg", "img_000001.jpg", "img_000002.jpg"]
    mat = scipy.io.loadmat(tmp_path / "img_000001.mat")
    assert mat["pt3d_68"].shape == (3, 68) and mat["Pose_Para"].shape == (1, 7)
    np.testing.assert_allclose(mat["pt3d_68"].T, s["landmarks3d"][1].double().numpy(), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.rad2deg(mat["Pose_Para"][0, 1]), float(s["yaw"][1]), rtol=1e-5)
    assert mat["Shape_Para"].shape == (40, 1) and mat["Exp_Para"].shape == (12, 1)


def test_cli_render_builtin_and_real_model(tmp_path, capsys):
    assert cli_main(["render", "-n", "5", "-o", str(tmp_path / "a"), "--size", "64", "--device", "cpu"]) == 0
    assert (tmp_path / "a" / "contact_sheet.png").is_file() and len(list((tmp_path / "a").glob("*.mat"))) == 5
    assert (
        cli_main(["render", "-n", "4", "-o", str(tmp_path / "c"), "--clips", "2", "--size", "64", "--device", "cpu"])
        == 0
    )
    assert cli_main(["render", "-o", str(tmp_path / "b"), "--morphable", str(tmp_path / "missing.npz")]) == 2
    assert "3DMM file not found" in capsys.readouterr().err


def test_cli_render_surrey_model(tmp_path):
    path = shared_data_file("sfm3448.npz")
    assert (
        cli_main(
            ["render", "-n", "3", "-o", str(tmp_path), "--size", "64", "--morphable", str(path), "--device", "cpu"]
        )
        == 0
    )
    assert (tmp_path / "contact_sheet.png").is_file()
    mat = scipy.io.loadmat(tmp_path / "synthetic_000000.mat")
    assert mat["pt3d_68"].shape == (3, 68)
    undefined = [k for k in range(17) if k != 8] + [60, 64]  # the Surrey model's missing points
    defined = [k for k in range(68) if k not in undefined]
    assert np.isnan(mat["pt3d_68"][:, undefined]).all() and np.isfinite(mat["pt3d_68"][:, defined]).all()
