"""Learning from real 2D labels: the 300-W / YouTube Faces data source and the outline-aware loss."""

import cv2
import numpy as np
import pytest
import torch
from op_harness import shared_data_file
from test_train_realdata import TINY  # the tiny network and batch of the training tests

from pgnface.data.landmarks2d import Landmarks2DFaces
from pgnface.morphable.ibug68 import IBUG68_MIRROR
from pgnface.train.losses import landmark_loss
from pgnface.train.outline import jaw_visibility, outline_landmark_loss


def face_shape(yaw_shift=0.0):
    """[1, 68, 2] iBUG-like points: a jaw arc below, inner points inside it; yaw_shift moves the nose sideways."""
    t = np.linspace(-np.pi / 2 - 1.2, -np.pi / 2 + 1.2, 17)
    jaw = np.c_[60 + 40 * np.cos(t), 50 - 45 * np.sin(t)]
    g = np.random.default_rng(0)
    inner = np.c_[g.uniform(35, 85, 51), g.uniform(30, 80, 51)]
    pts = np.r_[jaw, inner]
    pts[30, 0] = 60 + yaw_shift
    return torch.tensor(pts[None], dtype=torch.float64)


def test_frontal_faces_score_like_the_plain_2d_loss():
    target = face_shape()
    assert torch.allclose(jaw_visibility(target), torch.ones(1, 17, dtype=torch.float64))
    pred = target + torch.randn(target.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(outline_landmark_loss(pred, target, 120.0)) == pytest.approx(
        float(landmark_loss(pred, target, 120.0)), rel=1e-6
    )
    assert float(outline_landmark_loss(target, target, 120.0)) < 1e-8


def test_the_hidden_jaw_may_lie_inside_the_outline_but_not_outside():
    target = face_shape(yaw_shift=-30.0)  # the nose near the image-left jaw end: that side is far
    visible = jaw_visibility(target)[0]
    assert float(visible[:8].max()) == 0.0 and bool((visible[8:] == 1).all())
    centre = target[0, 17:].mean(0)
    for point, costs in ((3, False), (13, True)):  # far side, near side
        inward = target.clone()
        inward[0, point] += 0.2 * (centre - target[0, point])
        outward = target.clone()
        outward[0, point] -= 0.2 * (centre - target[0, point])
        assert (float(outline_landmark_loss(inward, target, 120.0)) > 1e-4) == costs
        assert float(outline_landmark_loss(outward, target, 120.0)) > 1e-4


def test_face_weights_gradients_and_bad_input():
    target = torch.cat([face_shape(), face_shape(-30.0)])
    pred = (target + 2.0).requires_grad_()
    loss = outline_landmark_loss(pred, target, 120.0, face_weights=torch.tensor([1.0, 0.0]))
    assert float(loss.detach()) == pytest.approx(float(outline_landmark_loss(pred[:1], target[:1], 120.0).detach()))
    loss.backward()
    assert torch.isfinite(pred.grad).all() and float(pred.grad[1].abs().max()) == 0.0
    with pytest.raises(ValueError, match=r"pred must be \[B, 68, 2\+\]"):
        outline_landmark_loss(torch.zeros(1, 5, 2), torch.zeros(1, 5, 2), 120.0)
    with pytest.raises(ValueError, match="target must be"):
        outline_landmark_loss(torch.zeros(1, 68, 3), torch.zeros(2, 68, 2), 120.0)
    with pytest.raises(ValueError, match="size"):
        outline_landmark_loss(torch.zeros(1, 68, 2), torch.zeros(1, 68, 2), 0.0)


def fake_folder(tmp_path):
    """Two 200x160 images, each with one bright dot at its landmark 36, in the 300-W layout."""
    g = np.random.default_rng(3)
    pts = g.uniform(60, 140, (2, 68, 2))
    names = []
    for i in range(2):
        image = np.zeros((160, 200, 3), np.uint8)
        x, y = np.round(pts[i, 36]).astype(int)
        pts[i, 36] = (x, y)  # 0-based pixel index of the dot
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
        names.append(f"helen_train/face_{i}.png")
        (tmp_path / "helen_train").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / names[-1]), image)
    subset = np.array(["helen_train", "helen_test"])
    np.savez(tmp_path / "landmarks.npz", names=np.array(names), pts68=pts.astype(np.float32), subset=subset)
    return pts


def test_crops_carry_their_labels_along(tmp_path):
    fake_folder(tmp_path)
    faces = Landmarks2DFaces(tmp_path, 96, groups=["helen_train"])
    assert len(faces) == 1
    batch = faces.batch(8, torch.Generator().manual_seed(0))
    assert batch["image"].shape == (8, 3, 96, 96) and batch["landmarks2d"].shape == (8, 68, 2)
    assert torch.equal(batch["label_weight"], torch.ones(8))
    for image, lm in zip(batch["image"], batch["landmarks2d"]):
        brightness = image.sum(0)
        row, col = divmod(int(brightness.argmax()), 96)
        # The dot is landmark 36, or 45 in a mirrored crop (left and right swap names).
        dot = lm[36] if abs(lm[36, 0] - (col + 0.5)) < 2 else lm[IBUG68_MIRROR[36]]
        assert abs(float(dot[0]) - (col + 0.5)) < 1.5 and abs(float(dot[1]) - (row + 0.5)) < 1.5
    again = faces.batch(8, torch.Generator().manual_seed(0))
    assert torch.equal(again["image"], batch["image"])


def test_bad_folders_and_groups(tmp_path):
    with pytest.raises(FileNotFoundError, match="landmarks.npz"):
        Landmarks2DFaces(tmp_path, 64, groups=["afw"])
    fake_folder(tmp_path)
    with pytest.raises(ValueError, match=r"no faces in subset \['afw'\]"):
        Landmarks2DFaces(tmp_path, 64, groups=["afw"])
    with pytest.raises(ValueError, match="crop_scale"):
        Landmarks2DFaces(tmp_path, 64, groups=["helen_train"], crop_scale=0.5)


def test_the_shared_300w_and_ytf_faces():
    w300 = Landmarks2DFaces(shared_data_file("300w"), 64, groups=["afw", "helen_train"])
    ytf = Landmarks2DFaces(shared_data_file("ytf"), 64, groups=["train"], quality=0.5)
    assert (len(w300), len(ytf)) == (1207, 3462)
    for source in (w300, ytf):
        batch = source.batch(6, torch.Generator().manual_seed(1))
        lm = batch["landmarks2d"]
        # Framed like the synthetic faces: the landmark box fills about 1 / 1.4 of the crop.
        extent = (lm.amax(1) - lm.amin(1)).amax(1) / 64
        assert bool(((extent > 0.55) & (extent < 0.9)).all())
        assert float(batch["image"].std()) > 0.1
    assert torch.equal(ytf.batch(2, torch.Generator())["label_weight"], torch.full((2,), 0.5))


def test_training_steps_on_real_2d_labels_record_the_terms_of_use(tmp_path):
    import json

    from pgnface.data.landmarks2d import RESEARCH_ONLY
    from pgnface.nn import read_checkpoint
    from pgnface.train import TrainConfig, apply_overrides, train
    from pgnface.train.loop import run_data_terms

    w300, ytf = shared_data_file("300w"), shared_data_file("ytf")
    config = apply_overrides(
        TrainConfig(),
        TINY
        + [
            "steps=3",
            "data.single_weight=1",
            f"data.real300w={w300}",
            "data.real300w_weight=1",
            f"data.ytf={ytf}",
            "data.ytf_weight=1",
            "seed=2",
        ],
    )
    train(config, tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    real = [r for r in records if r["kind"] in ("real300w", "ytf")]
    assert real and all(r["landmarks2d"] > 0 and "landmarks3d" not in r for r in real)
    assert "research use only" in read_checkpoint(tmp_path / "model.pt")["data_terms"]
    # A network fine-tuned from it keeps the terms, even without real data.
    tuned = apply_overrides(TrainConfig(), TINY + ["steps=1", f"init={tmp_path / 'model.pt'}"])
    train(tuned, tmp_path / "tuned", progress=False)
    assert (
        read_checkpoint(tmp_path / "tuned" / "model.pt")["data_terms"]
        == read_checkpoint(tmp_path / "model.pt")["data_terms"]
    )
    # Fine-tuned on real labels again, it names both: nothing of the init's terms is lost.
    again = apply_overrides(
        TrainConfig(),
        TINY
        + ["steps=1", f"init={tmp_path / 'tuned' / 'model.pt'}", f"data.real300w={w300}", "data.real300w_weight=1"],
    )
    train(again, tmp_path / "again", progress=False)
    assert read_checkpoint(tmp_path / "again" / "model.pt")["data_terms"] == RESEARCH_ONLY
    assert run_data_terms(True, "trained on LFW") == f"trained on LFW; {RESEARCH_ONLY}"
    assert run_data_terms(False, None) is None
    plain = apply_overrides(TrainConfig(), TINY + ["steps=1"])
    train(plain, tmp_path / "plain", progress=False)
    assert "data_terms" not in read_checkpoint(tmp_path / "plain" / "model.pt")


def test_the_config_refuses_validation_splits_and_missing_folders():
    from pgnface.train import TrainConfig, apply_overrides

    with pytest.raises(ValueError, match="must not name a validation or test split"):
        apply_overrides(TrainConfig(), ["data.real300w_groups=afw,helen_test"]).validate()
    with pytest.raises(ValueError, match="must not name a validation or test split"):
        apply_overrides(TrainConfig(), ["data.ytf_groups=train,test"]).validate()
    with pytest.raises(ValueError, match="data.real300w_weight > 0 needs data.real300w"):
        apply_overrides(TrainConfig(), ["data.real300w_weight=1"]).validate()
    with pytest.raises(ValueError, match="data.ytf_quality"):
        apply_overrides(TrainConfig(), ["data.ytf_quality=0"]).validate()
