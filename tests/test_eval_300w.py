"""The 300-W protocol: both label layouts, the roi crop, NME by eye distance and box, summary and outputs."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from op_harness import shared_data_file

from pgnface.eval.face300w import Face300WResult, evaluate, inter_ocular, load_300w, read_pts, write_report
from pgnface.eval.predictors import MeanShapePredictor
from pgnface.io.crops import landmark_crop_box


class OraclePredictor:
    """Returns each face's ground truth in crop pixels, shifted by a known image-pixel offset."""

    def __init__(self, faces, size, offset=(0.0, 0.0)):
        self.faces, self.input_size, self.offset, self.calls = faces, size, np.array(offset), 0

    def __call__(self, crops):
        out = []
        for _ in range(crops.shape[0]):
            face = self.faces[self.calls]
            self.calls += 1
            sx, sy, ex, _ = landmark_crop_box(face.landmarks)
            k = (ex - sx) / self.input_size
            out.append(np.c_[(face.landmarks + self.offset - [sx, sy]) / k, np.zeros(68)])
        return torch.tensor(np.stack(out))


def write_pts(path, points):
    body = "\n".join(f"{x:.4f} {y:.4f}" for x, y in points)
    path.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")


def fake_folder(tmp_path, count=3):
    """count 200x200 images with random 68-point labels, in both layouts; returns the 0-based points."""
    g = np.random.default_rng(1)
    pts0 = g.uniform(50, 150, (count, 68, 2))
    names = []
    for i in range(count):
        name = f"face_{i}.jpg"
        cv2.imwrite(str(tmp_path / name), np.full((200, 200, 3), 40 * i, np.uint8))
        write_pts(tmp_path / f"face_{i}.pts", pts0[i] + 1)  # .pts files are 1-based
        names.append(name)
    return pts0, names


def test_both_layouts_read_the_same_landmarks(tmp_path):
    pts0, names = fake_folder(tmp_path)
    from_pts = load_300w(tmp_path)
    assert [f.name for f in from_pts] == names
    # 0-based pixel indices -> pixel centres at integer + 0.5.
    assert np.allclose(np.stack([f.landmarks for f in from_pts]), pts0 + 0.5, atol=1e-4)
    np.savez(tmp_path / "landmarks.npz", names=np.array(names), pts68=pts0.astype(np.float32))
    from_npz = load_300w(tmp_path)
    assert np.allclose(np.stack([f.landmarks for f in from_npz]), pts0 + 0.5, atol=1e-4)


def test_bad_folders_and_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="300-W folder not found"):
        load_300w(tmp_path / "missing")
    with pytest.raises(ValueError, match="no labelled faces"):
        load_300w(tmp_path)
    with pytest.raises(ValueError, match="needs a landmarks.npz"):
        load_300w(tmp_path, subset="helen_test")
    (tmp_path / "a.pts").write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="not a 300-W .pts file"):
        read_pts(tmp_path / "a.pts")
    with pytest.raises(ValueError, match="no image of the same name"):
        load_300w(tmp_path)
    np.savez(tmp_path / "landmarks.npz", names=np.array(["a.jpg"]), pts68=np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match=r"pts68 must be \[1, 68, 2\]"):
        load_300w(tmp_path)


def test_oracle_scores_zero_and_a_known_offset_scores_its_nme(tmp_path):
    fake_folder(tmp_path, count=5)
    faces = load_300w(tmp_path)
    assert max(r["nme_io"] for r in evaluate(OraclePredictor(faces, 120), faces, batch_size=2).per_image) < 1e-9
    shifted = evaluate(OraclePredictor(faces, 120, offset=(3.0, 4.0)), faces, batch_size=2)
    for face, row in zip(faces, shifted.per_image):
        lo, hi = face.landmarks.min(0), face.landmarks.max(0)
        assert row["nme_io"] == pytest.approx(500.0 / inter_ocular(face.landmarks), rel=1e-9)
        assert row["nme_box"] == pytest.approx(500.0 / np.sqrt(np.prod(hi - lo)), rel=1e-9)
        assert np.allclose(shifted.predictions[face.name], face.landmarks + [3.0, 4.0])


def test_summary_failure_rates_and_outputs(tmp_path):
    result = Face300WResult(
        per_image=[{"name": f"f{i}", "nme_io": v, "nme_box": v / 2} for i, v in enumerate([2.0, 4.0, 9.0, 12.0])]
    )
    io, box = result.summary()["nme_io"], result.summary()["nme_box"]
    assert io["mean"] == pytest.approx(6.75) and io["median"] == pytest.approx(6.5)
    assert io["fail8"] == pytest.approx(50.0) and io["fail10"] == pytest.approx(25.0)
    assert box["fail8"] == 0.0 and box["count"] == 4
    paths = write_report(result, tmp_path / "out", title="test")
    assert all(p.is_file() for p in paths)
    with open(tmp_path / "out" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["name", "nme_io", "nme_box"] and float(rows[3]["nme_io"]) == pytest.approx(12.0)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["nme_io"]["fail10"] == pytest.approx(25.0)
    assert "inter-ocular" in result.format_table()


def test_helen_test_layouts_agree_and_the_mean_shape_is_a_floor():
    root = shared_data_file("300w")
    from_npz = load_300w(root, subset="helen_test")
    from_pts = load_300w(root / "helen_test")
    assert len(from_npz) == len(from_pts) == 230
    assert [f.path for f in from_npz] == [f.path for f in from_pts]
    # The .pts files carry 4 decimals.
    assert np.abs(np.stack([f.landmarks for f in from_npz]) - np.stack([f.landmarks for f in from_pts])).max() < 1e-3
    faces = from_pts[:40]
    result = evaluate(MeanShapePredictor(input_size=120), faces)
    summary = result.summary()["nme_io"]
    # A frontal mean face placed in the roi box: far from the labels, but not absurd.
    assert 5.0 < summary["mean"] < 25.0 and summary["count"] == 40


def test_the_command_runs_the_bundled_network_and_names_bad_input(tmp_path, capsys):
    from pgnface.cli import main
    from pgnface.nn import REFERENCE_CHECKPOINT

    if not REFERENCE_CHECKPOINT.is_file():
        pytest.skip("no bundled reference network in this checkout")
    fake_folder(tmp_path, count=2)
    out = tmp_path / "out"
    assert main(["eval", "300w", str(tmp_path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "300-W protocol, 2 faces" in printed and "inter-ocular" in printed
    with open(out / "per_image.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["face_0.jpg", "face_1.jpg"]
    assert (out / "ced.png").is_file() and (out / "summary.json").is_file()
    assert main(["eval", "300w", str(tmp_path), "--landmarks", "recon", "-o", str(tmp_path / "recon")]) == 0
    assert "reconstruction's landmarks" in capsys.readouterr().out
    assert main(["eval", "300w", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert main(["eval", "300w", str(tmp_path), "--subset", "helen_test", "-o", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].startswith("pgnface eval 300w: 300-W folder not found") and "needs a landmarks.npz" in errors[1]


def test_reconstruction_landmarks_follow_the_head_and_the_ibug_order():
    from pgnface.data import SyntheticConfig, SyntheticFaces
    from pgnface.eval.predictors import CheckpointPredictor
    from pgnface.nn import REFERENCE_CHECKPOINT

    if not REFERENCE_CHECKPOINT.is_file():
        pytest.skip("no bundled reference network in this checkout")
    face = SyntheticFaces(config=SyntheticConfig(size=120, framing="landmarks"), seed=2).sample(4, seed=0)
    head = CheckpointPredictor(REFERENCE_CHECKPOINT)(face["image"])
    recon = CheckpointPredictor(REFERENCE_CHECKPOINT, landmarks="recon")(face["image"])
    assert head.shape == recon.shape == (4, 68, 3)
    # The pose is solved from the head's points, so the posed model lands near them, point for point;
    # a shuffled order would put each point on another one's place, tens of pixels away.
    gap = (recon[..., :2] - head[..., :2]).norm(dim=-1)
    assert float(gap.mean()) < 4.0
    assert float((recon[..., :2] - head[:, torch.randperm(68)][..., :2]).norm(dim=-1).mean()) > 8.0
    with pytest.raises(ValueError, match="landmarks must be one of head, recon"):
        CheckpointPredictor(REFERENCE_CHECKPOINT, landmarks="mesh")
