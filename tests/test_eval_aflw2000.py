"""The AFLW2000-3D protocol: crop boxes, NME, binning, outputs; on synthetic and real samples."""

import csv
import math

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from op_harness import shared_data_file

from pgnface.eval import EvalResult, MeanShapePredictor, evaluate, load_aflw2000
from pgnface.eval.aflw2000 import AFLWSample
from pgnface.eval.metrics import box_norm, landmark_nme, nme
from pgnface.io.crops import (
    bounding_box,
    crop,
    crop_to_image,
    face_crop_box,
    image_to_crop,
    landmark_crop_box,
    square_frame,
)


class OraclePredictor:
    """Returns the ground truth mapped into the crop, optionally shifted by a known offset."""

    def __init__(self, samples, size, offset=(0.0, 0.0)):
        self.samples, self.input_size, self.offset, self.calls = samples, size, np.array(offset), 0

    def __call__(self, crops):
        out = []
        for _ in range(crops.shape[0]):
            s = self.samples[self.calls]
            self.calls += 1
            sx, sy, ex, ey = landmark_crop_box(s.landmarks[:, :2])
            k = (ex - sx) / self.input_size
            pts = s.landmarks.copy()
            pts[:, 0] = (pts[:, 0] + self.offset[0] - sx) / k
            pts[:, 1] = (pts[:, 1] + self.offset[1] - sy) / k
            pts[:, 2] = -pts[:, 2] / k  # AFLW z points to the camera, predictions away
            out.append(pts)
        return torch.tensor(np.stack(out))


def fake_samples(yaws):
    g = np.random.default_rng(0)
    samples = []
    for i, yaw in enumerate(yaws):
        lm = np.c_[g.uniform(100, 200, (68, 2)), g.normal(0, 20, 68)]
        samples.append(
            AFLWSample(
                f"image{i:05d}",
                np.zeros((300, 300, 3), np.uint8),
                lm,
                np.array([0.0, math.radians(yaw), 0, 0, 0, 0, 1]),
            )
        )
    return samples


def test_oracle_scores_zero_and_a_known_offset_scores_its_nme():
    samples = fake_samples([5, -20, 45, 75, -88])
    result = evaluate(OraclePredictor(samples, 120), samples, batch_size=2)
    assert max(r["nme2d"] for r in result.per_image) < 1e-9
    assert max(r["nme3d"] for r in result.per_image) < 1e-9
    shifted = evaluate(OraclePredictor(samples, 120, offset=(3.0, 4.0)), samples)
    for r, s in zip(shifted.per_image, samples):
        lo, hi = s.landmarks[:, :2].min(0), s.landmarks[:, :2].max(0)
        expected = 100 * 5.0 / math.sqrt((hi - lo).prod())
        assert r["nme2d"] == pytest.approx(expected, rel=1e-9)


def test_yaw_bins_balanced_and_plain_means():
    result = EvalResult(
        [
            {"name": "a", "yaw": 10, "nme2d": 1.0, "nme3d": 2.0},
            {"name": "b", "yaw": -20, "nme2d": 3.0, "nme3d": 4.0},
            {"name": "c", "yaw": 45, "nme2d": 5.0, "nme3d": 6.0},
            {"name": "d", "yaw": -95, "nme2d": 9.0, "nme3d": 9.0},
        ]
    )
    table = result.table()
    assert table["[0,30]"]["nme2d"] == 2.0 and table["[0,30]"]["count"] == 2
    assert table["(30,60]"]["nme2d"] == 5.0 and table["(60,90]"]["count"] == 1
    assert table["balanced"]["nme2d"] == pytest.approx((2 + 5 + 9) / 3)
    assert table["mean"]["nme2d"] == pytest.approx(18 / 4)
    empty_bin = EvalResult([{"name": "a", "yaw": 0, "nme2d": 1.0, "nme3d": 1.0}]).table()
    assert math.isnan(empty_bin["(30,60]"]["nme2d"]) and empty_bin["balanced"]["nme2d"] == 1.0
    assert "n/a" in EvalResult([{"name": "a", "yaw": 0, "nme2d": 1.0, "nme3d": 1.0}]).format_table()


def test_crop_maps_points_consistently():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:60, 100:110] = 255  # a white square, pixels 100..109 x 50..59
    box = np.array([80.0, 30.0, 180.0, 130.0])
    out = crop(image, box, 50)  # 2 image pixels per crop pixel
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert xs.min() == 10 and xs.max() == 14 and ys.min() == 10 and ys.max() == 14
    np.testing.assert_allclose(crop_to_image(np.array([[10.0, 10.0, 1.0]]), box, 50), [[100.0, 50.0, 2.0]])
    np.testing.assert_allclose(image_to_crop(np.array([[100.0, 50.0, 2.0]]), box, 50), [[10.0, 10.0, 1.0]])
    np.testing.assert_allclose(image_to_crop(np.array([[100.0, 50.0]]), box, 50), [[10.0, 10.0]])
    points = np.random.default_rng(0).uniform(-50, 250, (7, 2))
    np.testing.assert_allclose(crop_to_image(image_to_crop(points, box, 50), box, 50), points, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\] or \[\.\.\., 3\]"):
        image_to_crop(np.zeros((3, 4)), box, 50)


def test_every_crop_box_is_a_square_frame_of_its_box():
    box = np.array([10.0, 20.0, 50.0, 40.0])  # 40 x 20
    assert square_frame(box, 1.5) == (30.0, 30.0, 60.0)
    assert square_frame(box, 1.5, shift_down=0.5) == (30.0, 40.0, 60.0)
    np.testing.assert_array_equal(face_crop_box(box, enlarge=1.5, shift_down=0.5), [0.0, 10.0, 60.0, 70.0])
    landmarks = np.array([[10.0, 20.0], [50.0, 40.0], [30.0, 25.0]])
    np.testing.assert_array_equal(bounding_box(landmarks), box)
    side = np.round(np.sqrt(2.0) * 40)  # integer corner and side
    np.testing.assert_array_equal(landmark_crop_box(landmarks), [2.0, 2.0, 2.0 + side, 2.0 + side])


def test_nme_normalises_by_the_ground_truth_box_and_takes_batches():
    gt = np.array([[0.0, 0.0], [40.0, 10.0], [20.0, 5.0]])  # box 40 x 10: sqrt(w h) = 20
    pred = gt + [3.0, 4.0]  # 5 px off everywhere
    assert box_norm(gt) == 20.0
    assert landmark_nme(pred, gt) == pytest.approx(25.0)
    batch = landmark_nme(np.stack([pred, gt]), np.stack([gt, gt]))
    np.testing.assert_allclose(batch, [25.0, 0.0])
    full_pred, full_gt = np.c_[pred, np.zeros(3)], np.c_[gt, np.zeros(3)]
    assert nme(full_pred, full_gt) == {"nme2d": pytest.approx(25.0), "nme3d": pytest.approx(25.0)}


def test_real_aflw2000_boxes_match_3ddfa_roi_boxes():
    folder = shared_data_file("aflw2000")
    samples = load_aflw2000(folder)
    assert len(samples) == 10
    roi = np.load(folder / "roi_box.npy")
    with open(folder / "index.csv") as f:
        rows = {r["name"]: int(r["row"]) for r in csv.DictReader(f)}
    for s in samples:
        np.testing.assert_array_equal(landmark_crop_box(s.landmarks[:, :2]), roi[rows[s.name]])
    yaws = sorted(abs(s.yaw_degrees) for s in samples)
    assert sum(y > 60 for y in yaws) == 1 and sum(30 < y <= 60 for y in yaws) == 2


def test_real_aflw2000_oracle_and_mean_shape_baseline(tmp_path):
    samples = load_aflw2000(shared_data_file("aflw2000"))
    oracle = evaluate(OraclePredictor(samples, 120), samples)
    assert oracle.table()["mean"]["nme2d"] < 1e-9
    baseline = evaluate(MeanShapePredictor(input_size=120), samples)
    table = baseline.table()
    # A constant frontal face is a poor but bounded predictor, worst at large yaw.
    assert 5 < table["[0,30]"]["nme2d"] < 25 and table["(60,90]"]["nme2d"] > table["[0,30]"]["nme2d"]
    baseline.write_csv(tmp_path / "per_image.csv")
    assert len((tmp_path / "per_image.csv").read_text().splitlines()) == 11


def test_reannotated_landmarks_replace_xy():
    folder = shared_data_file("aflw2000")
    re = np.load(folder / "pts68_reannotated.npy")
    plain = load_aflw2000(folder)
    samples = load_aflw2000(folder, reannotated=re)
    assert not np.allclose(samples[0].landmarks[:, :2], plain[0].landmarks[:, :2])
    np.testing.assert_allclose(samples[0].landmarks[:, 2], plain[0].landmarks[:, 2])


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="AFLW2000-3D folder not found"):
        load_aflw2000(tmp_path / "missing")
    with pytest.raises(ValueError, match="no imageXXXXX.mat"):
        load_aflw2000(tmp_path)
    scipy.io.savemat(tmp_path / "image00001.mat", {"foo": np.zeros(3)})
    (tmp_path / "image00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not a readable image"):
        load_aflw2000(tmp_path)


def test_cli_eval_aflw2000(tmp_path, capsys):
    from pgnface.cli import main
    from pgnface.nn import REFERENCE_CHECKPOINT

    folder = shared_data_file("aflw2000")
    assert main(["eval", "aflw2000", str(folder), "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for row in ("[0,30]", "(30,60]", "(60,90]", "balanced", "mean"):
        assert row in printed
    # Without --checkpoint the bundled reference network is scored, as reconstruct and demo use it.
    assert f"predictor: checkpoint {REFERENCE_CHECKPOINT}" in printed
    assert (tmp_path / "per_image.csv").is_file() and (tmp_path / "nme.png").stat().st_size > 1000
    sheet = cv2.imread(str(tmp_path / "landmarks.jpg"))
    assert sheet is not None and sheet.shape == (400, 1000, 3)  # 10 images: 2 rows of 5 tiles of 200 px
    assert main(["eval", "aflw2000", str(tmp_path / "missing")]) == 2
    assert main(["eval", "aflw2000", str(folder), "--checkpoint", str(tmp_path / "none.pt")]) == 2


def test_cli_eval_aflw2000_mean_face_floor(tmp_path, capsys):
    from pgnface.cli import main

    folder = shared_data_file("aflw2000")
    assert main(["eval", "aflw2000", str(folder), "--mean-face", "-o", str(tmp_path)]) == 0
    assert "predictor: mean-shape baseline" in capsys.readouterr().out
    assert main(["eval", "aflw2000", str(folder), "--mean-face", "--checkpoint", "x.pt", "-o", str(tmp_path)]) == 2


def test_cli_eval_aflw2000_with_a_trained_checkpoint(tmp_path, capsys):
    """End to end: `pgnface train` writes model.pt, `pgnface eval aflw2000 --checkpoint` scores it."""
    from pgnface.cli import main

    folder = shared_data_file("aflw2000")
    run = tmp_path / "run"
    tiny = [
        "net.backbone=resnet18",
        "net.width=0.125",
        "net.head_hidden=32",
        "net.fpn_channels=16",
        "data.size=64",
        "threads=1",
        "warmup_steps=1",
    ]
    assert main(["train", "--out", str(run), "--steps", "2", "--batch-size", "2", "--quiet"] + tiny) == 0
    assert (run / "model.pt").is_file()
    capsys.readouterr()
    assert main(["eval", "aflw2000", str(folder), "--checkpoint", str(run / "model.pt"), "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "predictor: checkpoint" in printed and "balanced" in printed
    rows = (tmp_path / "per_image.csv").read_text().splitlines()
    assert len(rows) == 11 and all(float(r.split(",")[2]) > 0 for r in rows[1:])
    assert (
        main(
            [
                "eval",
                "aflw2000",
                str(folder),
                "--checkpoint",
                str(run / "model.pt"),
                "--flip",
                "-o",
                str(tmp_path / "flip"),
            ]
        )
        == 0
    )
    assert "with flip averaging" in capsys.readouterr().out
    assert main(["eval", "aflw2000", str(folder), "--flip", "--mean-face", "-o", str(tmp_path / "x")]) == 2


def test_flip_averaging_is_the_mean_of_the_two_passes(tmp_path):
    """CheckpointPredictor(flip=True) = (net(x) + mirror(net(flip(x)))) / 2, exactly."""
    from pgnface.eval.predictors import CheckpointPredictor
    from pgnface.morphable import MorphableModel
    from pgnface.morphable.ibug68 import mirror_landmarks
    from pgnface.nn import PGNNetwork, save_network

    torch.manual_seed(0)
    net = PGNNetwork(MorphableModel.builtin(), backbone="resnet18", width=0.125, head_hidden=32, fpn_channels=16).eval()
    save_network(tmp_path / "net.pt", net)
    plain = CheckpointPredictor(tmp_path / "net.pt", input_size=64)
    flip = CheckpointPredictor(tmp_path / "net.pt", input_size=64, flip=True)
    crops = torch.rand(2, 3, 64, 64)
    one, mirrored = plain(crops), mirror_landmarks(plain(crops.flip(-1)), 64)
    assert torch.allclose(flip(crops), (one + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(flip(crops), one, atol=1e-3)
