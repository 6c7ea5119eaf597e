"""Mesh IO and the dense (Florence/NoW-style) protocol on meshes with known transforms and noise."""

import numpy as np
import pytest

from pgnface.eval.dense import Surface, closest_points_on_triangles, dense_errors
from pgnface.io.meshes import read_mesh, write_obj, write_ply
from pgnface.morphable import MorphableModel


@pytest.fixture(scope="module")
def face():
    morphable = MorphableModel.builtin()
    return (morphable.mean.double().numpy(), morphable.triangles.long().numpy(), morphable.landmark_vertices.numpy())


def random_similarity(seed, angle_deg=25.0):
    g = np.random.default_rng(seed)
    axis = g.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K
    return float(g.uniform(0.5, 2.0)), R, g.normal(0, 50, 3)


def test_closest_points_on_a_triangle():
    a, b, c = np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    cases = {
        (0.2, 0.2, 1.0): (0.2, 0.2, 0.0),
        (-1.0, -1.0, 0.0): (0, 0, 0),
        (2.0, -0.5, 0.0): (1, 0, 0),
        (0.5, -1.0, 0.0): (0.5, 0, 0),
        (1.0, 1.0, 0.0): (0.5, 0.5, 0),
        (-0.5, 0.5, 2.0): (0, 0.5, 0),
    }
    for p, expect in cases.items():
        q, d = closest_points_on_triangles(np.array([p]), a, b, c)
        np.testing.assert_allclose(q[0], expect, atol=1e-12)
        np.testing.assert_allclose(d[0], np.linalg.norm(np.array(p) - expect), atol=1e-12)


def test_surface_distance_matches_brute_force(face):
    verts, tris, _ = face
    g = np.random.default_rng(1)
    queries = verts[g.choice(len(verts), 200)] + g.normal(0, 2.0, (200, 3))
    _, dist = Surface(verts, tris).closest(queries)
    sub = tris[g.choice(len(tris), 3000)]
    # Brute force over all triangles for a few queries.
    for q, d in zip(queries[:15], dist[:15]):
        _, all_d = closest_points_on_triangles(
            np.repeat(q[None], len(tris), 0), verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
        )
        assert d == pytest.approx(all_d.min(), abs=1e-9)
    assert sub.shape == (3000, 3)


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_recovers_a_known_similarity_exactly(face, use_landmarks):
    verts, tris, lms = face
    s, R, t = random_similarity(3, angle_deg=25.0 if use_landmarks else 4.0)
    pred = (verts - t) @ R / s  # the GT seen through the inverse transform
    if use_landmarks:  # landmarks give the exact answer at once
        result = dense_errors(pred, tris, verts, pred_landmarks=pred[lms], gt_landmarks=verts[lms])
        assert result.rmse < 1e-6 and result.iterations <= 3
        assert result.scale == pytest.approx(s, rel=1e-9)
        np.testing.assert_allclose(result.rotation, R, atol=1e-9)
    else:  # ICP from the centroids alone: point-to-point ICP converges linearly
        # A third of the vertices as the "scan": as exact, and each of the many iterations cheaper.
        result = dense_errors(pred, tris, verts[::3])
        assert result.rmse < 0.02  # mm, on a 150 mm face
        assert result.scale == pytest.approx(s, rel=1e-3)


def test_noise_level_is_measured(face):
    verts, tris, lms = face
    sigma = 0.5
    g = np.random.default_rng(4)
    gt = verts + g.normal(0, sigma, verts.shape)  # a noisy "scan" of the face
    s, R, t = random_similarity(5)
    pred = (verts - t) @ R / s
    # A third of the points as the scan keeps the statistics and makes the slow noisy ICP cheaper.
    result = dense_errors(pred, tris, gt[::3], pred_landmarks=pred[lms], gt_landmarks=gt[lms])
    # Distances to the surface see mostly the normal component of the noise: ~ sigma.
    assert 0.6 * sigma < result.rmse < 1.3 * sigma
    assert result.median < result.rmse


def test_crop_radius_around_the_nose_tip(face):
    verts, tris, lms = face
    tip = verts[lms[30]]
    full = dense_errors(verts, tris, verts)
    cropped = dense_errors(verts, tris, verts, crop_radius=50.0, nose_tip=tip)
    assert cropped.points < full.points and cropped.rmse < 1e-6
    with pytest.raises(ValueError, match="needs the ground-truth nose_tip"):
        dense_errors(verts, tris, verts, crop_radius=50.0)


def test_mesh_round_trips(face, tmp_path):
    verts, tris, _ = face
    colours = np.random.default_rng(0).uniform(0, 1, verts.shape)
    write_obj(tmp_path / "m.obj", verts, tris, colours)
    write_ply(tmp_path / "m.ply", verts, tris, colours)
    np.savez(tmp_path / "m.npz", vertices=verts, triangles=tris)
    for name, atol in (("m.obj", 1e-5), ("m.ply", 1e-4), ("m.npz", 0)):
        v, t = read_mesh(tmp_path / name)
        np.testing.assert_allclose(v, verts, atol=atol)
        np.testing.assert_array_equal(t, tris)
    (tmp_path / "quad.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1/1 2/2 3/3 4/4\n")
    assert read_mesh(tmp_path / "quad.obj")[1].tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "a.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
        "property float y\nproperty float z\nelement face 1\n"
        "property list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    )
    v, t = read_mesh(tmp_path / "a.ply")
    assert v.shape == (3, 3) and t.tolist() == [[0, 1, 2]]


def test_bad_mesh_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="mesh file not found"):
        read_mesh(tmp_path / "none.obj")
    (tmp_path / "x.stl").write_text("solid")
    with pytest.raises(ValueError, match="unsupported mesh type"):
        read_mesh(tmp_path / "x.stl")
    (tmp_path / "bad.ply").write_text("not a ply")
    with pytest.raises(ValueError, match="bad.ply: malformed PLY"):
        read_mesh(tmp_path / "bad.ply")
    (tmp_path / "empty.obj").write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.obj: malformed OBJ mesh \\(no vertices\\)"):
        read_mesh(tmp_path / "empty.obj")


def test_cli_eval_dense(face, tmp_path, capsys):
    from pgnface.cli import main

    verts, tris, lms = face
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    s, R, t = random_similarity(7)
    pred = (verts - t) @ R / s
    np.savez(tmp_path / "pred" / "a.npz", vertices=pred, triangles=tris, landmarks=pred[lms])
    np.savez(tmp_path / "gt" / "a.npz", vertices=verts, triangles=tris, landmarks=verts[lms])
    write_obj(tmp_path / "pred" / "b.obj", verts, tris)
    write_ply(tmp_path / "gt" / "b.ply", verts, tris)
    assert (
        main(
            [
                "eval",
                "dense",
                str(tmp_path / "pred"),
                str(tmp_path / "gt"),
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "a: RMSE 0.0000" in printed and "2 meshes" in printed
    assert (tmp_path / "out" / "dense.csv").read_text().count("\n") == 3
    assert (
        main(
            [
                "eval",
                "dense",
                str(tmp_path / "pred" / "a.npz"),
                str(tmp_path / "gt" / "a.npz"),
                "--crop-radius",
                "60",
                "-o",
                str(tmp_path / "out2"),
            ]
        )
        == 0
    )
    assert main(["eval", "dense", str(tmp_path / "pred"), str(tmp_path / "gt" / "a.npz")]) == 2
