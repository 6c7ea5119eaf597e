"""`pgnface eval synthetic`: the held-out test set, its metrics (known answers) and the comparison command."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from tiny_nets import train_tiny

from pgnface.cli import main
from pgnface.eval.synthetic import (
    METRICS,
    aligned_shape_error,
    angle_errors,
    evaluate_synthetic,
    synthetic_test_set,
    vertex_nme,
)
from pgnface.io.crops import landmark_crop_box
from pgnface.morphable import FRONTAL, MorphableModel
from pgnface.nn.checkpoint import network_name
from pgnface.ops.pose import rotation_from_angles


@pytest.fixture(scope="module")
def morphable():
    return MorphableModel.builtin()


@pytest.fixture(scope="module")
def test_set():
    return synthetic_test_set(12, 64, seed=0)


class Oracle:
    """Returns the test set's ground truth in crop coordinates (optionally landmarks shifted by image pixels)."""

    def __init__(self, test_set, shift=(0.0, 0.0), shape_scale=1.0):
        self.ts, self.shift, self.shape_scale, self.done = test_set, np.array([*shift, 0.0]), shape_scale, 0

    def __call__(self, crops):
        rows = slice(self.done, self.done + crops.shape[0])
        self.done += crops.shape[0]
        samples = self.ts.samples[rows]
        boxes = np.stack([landmark_crop_box(s.landmarks[:, :2]) for s in samples])
        k = ((boxes[:, 2] - boxes[:, 0]) / self.ts.size)[:, None, None]
        offset = np.c_[boxes[:, :2], np.zeros(len(samples))][:, None]
        lm = np.stack([s.landmarks for s in samples]) * np.array([1.0, 1.0, -1.0]) + self.shift
        angles = torch.tensor(self.ts.angles[rows])
        rotation = FRONTAL.double() @ rotation_from_angles(angles[:, 0], angles[:, 1], angles[:, 2])
        return {
            "landmarks": torch.tensor((lm - offset) / k),
            "rotation": rotation,
            "vertices": torch.tensor((self.ts.vertices[rows] - offset) / k),
            "shape": torch.tensor(self.ts.shapes[rows]) * self.shape_scale,
        }


def test_angle_errors_wrap_around():
    pred = np.array([[10.0, 179.0, -170.0], [0.0, 0.0, 0.0]])
    true = np.array([[-5.0, -179.0, 170.0], [0.0, 360.0, -90.0]])
    assert np.allclose(angle_errors(pred, true), [[15.0, 2.0, 20.0], [0.0, 0.0, 90.0]])


def test_vertex_nme_known_answers():
    g = np.random.default_rng(0)
    true = g.normal(0, 30, (2, 50, 3))
    lm2d = np.stack([np.array([[0.0, 0.0], [40.0, 90.0]])] * 2)  # box 40 x 90: sqrt(w h) = 60
    ids = np.arange(10)
    assert np.allclose(vertex_nme(true, true, lm2d, ids), 0.0)
    assert np.allclose(vertex_nme(true + [0.0, 0.0, 123.0], true, lm2d, ids), 0.0, atol=1e-12)  # depth is centred
    assert np.allclose(vertex_nme(true + [3.0, 4.0, 0.0], true, lm2d, ids), 100 * 5.0 / 60.0)


def test_aligned_shape_error_ignores_similarities_only():
    g = np.random.default_rng(1)
    true = g.normal(0, 50, (3, 200, 3))
    R = rotation_from_angles(
        *torch.tensor([[30.0, -60.0, 5.0], [10.0, 0.0, -20.0], [0.0, 15.0, 40.0]], dtype=torch.float64)
    ).numpy()
    moved = 1.7 * np.einsum("bij,bnj->bni", R, true) + np.array([5.0, -3.0, 100.0])
    assert np.allclose(aligned_shape_error(moved, true), 0.0, atol=1e-9)
    bumped = true.copy()
    bumped[:, :100, 2] += 2.0
    bumped[:, 100:, 2] -= 2.0
    assert np.all(aligned_shape_error(bumped, true) > 0.5)


def test_test_set_is_fixed_and_the_same_faces_at_every_size(test_set):
    again = synthetic_test_set(5, 64, seed=0)  # a prefix of the same set
    for a, b in zip(again.samples, test_set.samples):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.landmarks, b.landmarks)
    large = synthetic_test_set(12, 128, seed=0)
    assert np.allclose(large.angles, test_set.angles)
    assert np.allclose(large.shapes, test_set.shapes)
    for a, b in zip(large.samples, test_set.samples):
        assert np.allclose(a.landmarks, 2 * b.landmarks, atol=1e-3)
    other = synthetic_test_set(12, 64, seed=1)
    assert not np.allclose(other.angles, test_set.angles)
    narrow = synthetic_test_set(12, 64, seed=0, yaw_max=20)
    assert np.abs(narrow.angles[:, 0]).max() <= 20
    assert test_set.samples[0].image.shape == (64, 64, 3) and test_set.vertices.shape[1:] == (6512, 3)
    assert np.allclose([s.yaw_degrees for s in test_set.samples], test_set.angles[:, 0])
    with pytest.raises(ValueError, match="yaw_max"):
        synthetic_test_set(3, 64, yaw_max=120)


def test_ground_truth_as_prediction_scores_zero_and_a_shift_scores_its_nme(test_set, morphable):
    ids = morphable.landmark_vertices.numpy()
    result = evaluate_synthetic(Oracle(test_set), test_set, ids, batch_size=5)
    assert len(result.per_image) == 12
    for key in METRICS:
        assert max(abs(r[key]) for r in result.per_image) < 1e-4, key
    shifted = evaluate_synthetic(Oracle(test_set, shift=(3.0, 4.0), shape_scale=3.0), test_set, ids)
    for r, s in zip(shifted.per_image, test_set.samples):
        lo, hi = s.landmarks[:, :2].min(0), s.landmarks[:, :2].max(0)
        assert r["nme2d"] == pytest.approx(100 * 5.0 / math.sqrt((hi - lo).prod()), rel=1e-4)  # 5 image px
        assert r["shape_error"] < 1e-6  # a scaled shape is still the right shape
        assert r["recon_nme2d"] < 1e-4  # the oracle shifts the landmark head only, not the mesh


def test_network_names():
    assert network_name("runs/ablation/pgn_single/model.pt") == "pgn_single"
    assert network_name("pgnface/assets/pgn_reference.pt") == "pgn_reference"
    assert network_name("a/x/model.pt", ["x"]) == "x-2"


def test_command_compares_networks_of_different_sizes(tmp_path, capsys):
    pgn = train_tiny(tmp_path / "pgn_tiny", size=64)
    regress = train_tiny(tmp_path / "regress_tiny", size=48, pose_mode="regress")
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "synthetic",
            "-n",
            "6",
            "-o",
            str(out),
            "--checkpoint",
            str(pgn),
            "--checkpoint",
            str(regress),
            "--checkpoint",
            str(tmp_path / "missing.pt"),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "--checkpoint" in captured.err and "missing.pt" in captured.err
    lines = captured.out.splitlines()
    assert any(line.startswith("pgn_tiny") and " pgn " in line for line in lines)
    assert any(line.startswith("regress_tiny") and " regress " in line for line in lines)
    with open(out / "synthetic_eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["pgn_tiny", "regress_tiny"]
    assert [r["input_size"] for r in rows] == ["64", "48"] and rows[0]["images"] == "6"
    for key in ("nme2d_0_30", "nme2d_balanced", "nme3d_mean", "yaw_error_mean", "vertex_nme_mean", "shape_error_mean"):
        assert key in rows[0]
    assert float(rows[0]["nme2d_mean"]) > 0 and float(rows[1]["pose_error_mean"]) > 0
    table = (out / "synthetic_eval.md").read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == 3 and "regress_tiny | regress" in table
    details = json.loads((out / "synthetic_eval.json").read_text())
    assert details["test_set"]["sizes"] == [48, 64] and len(details["networks"][1]["per_image"]) == 6
    # Same faces at both sizes: the per-face yaws agree.
    assert [r["yaw"] for r in details["networks"][0]["per_image"]] == pytest.approx(
        [r["yaw"] for r in details["networks"][1]["per_image"]], abs=1e-5
    )


def test_command_bad_options(tmp_path, capsys):
    assert main(["eval", "synthetic", "-n", "0"]) == 2
    assert "-n must be at least 1" in capsys.readouterr().err
    assert main(["eval", "synthetic", "--yaw-max", "100"]) == 2
    assert "--yaw-max" in capsys.readouterr().err
    assert main(["eval", "synthetic", "--checkpoint", str(tmp_path / "none.pt"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--checkpoint" in err
    assert not (tmp_path / "o").exists()


def test_bundled_reference_is_the_default(tmp_path):
    from pgnface.nn import REFERENCE_CHECKPOINT

    if not REFERENCE_CHECKPOINT.is_file():
        pytest.skip("no bundled reference checkpoint in this checkout")
    assert main(["eval", "synthetic", "-n", "8", "-o", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "synthetic_eval.csv")))
    assert rows[0]["name"] == "pgn_reference" and float(rows[0]["nme2d_mean"]) < 6.0


def test_rotation_errors_are_geodesic_angles():
    from pgnface.eval.synthetic import rotation_errors

    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    assert rotation_errors(rz[None], np.eye(3)[None]) == pytest.approx([30.0])
    assert rotation_errors(np.stack([rz, np.eye(3)]), np.stack([rz, rz.T])) == pytest.approx([0.0, 30.0])
