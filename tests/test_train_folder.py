"""Training from a 300W-LP-layout folder: crops with their landmarks, and a short run."""

import json

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from test_train import TINY

from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.data.labelled_folder import LabelledFolder, write_300wlp
from pgnface.morphable import MorphableModel
from pgnface.train import TrainConfig, apply_overrides, train


def test_crop_moves_a_dot_with_its_landmark(tmp_path):
    rng = np.random.default_rng(0)
    image = np.zeros((80, 100, 3), np.uint8)
    image[30, 40] = 255  # the pixel whose centre is (40.5, 30.5)
    pts = np.stack([rng.uniform(25, 65, 68), rng.uniform(15, 55, 68), rng.normal(0, 5, 68)])
    pts[:, 7] = [40.5, 30.5, 3.0]
    cv2.imwrite(str(tmp_path / "face.png"), image)
    scipy.io.savemat(tmp_path / "face.mat", {"pt3d_68": pts})
    folder = LabelledFolder(tmp_path, size=64, crop_scale=1.4)
    crop, lm = folder.load(0)
    assert crop.shape == (3, 64, 64) and lm.shape == (68, 3)
    row, col = np.unravel_index(int(crop[0].argmax()), (64, 64))
    assert abs(col + 0.5 - float(lm[7, 0])) <= 1.0 and abs(row + 0.5 - float(lm[7, 1])) <= 1.0
    side = 1.4 * max(np.ptp(pts[0]), np.ptp(pts[1]))
    torch.testing.assert_close(lm[:, 2], torch.from_numpy((pts[2] - pts[2].mean()) * 64 / side).float())
    # The landmark box is centred in the crop.
    box_centre = (lm[:, :2].amax(0) + lm[:, :2].amin(0)) / 2
    torch.testing.assert_close(box_centre, torch.tensor([32.0, 32.0]), atol=1e-4, rtol=0)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no NAME"):
        LabelledFolder(tmp_path, 64)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        LabelledFolder(tmp_path / "missing", 64)
    with pytest.raises(ValueError, match="data.folder"):
        apply_overrides(TrainConfig(), ["data.folder_weight=1"]).validate()


def test_training_from_a_folder(tmp_path):
    morphable = MorphableModel.builtin()
    write_300wlp(SyntheticFaces(morphable, SyntheticConfig(size=64), seed=5).sample(4, seed=0), tmp_path / "lp")
    cfg = apply_overrides(
        TrainConfig(),
        TINY + ["steps=2", f"data.folder={tmp_path / 'lp'}", "data.folder_weight=1", "data.single_weight=0"],
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert summary["step"] == 2 and {r["kind"] for r in records} == {"folder"}
    assert "landmarks3d" in records[-1] and "vertices" not in records[-1]
