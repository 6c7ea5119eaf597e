"""Photo-like training data: photo backgrounds, augmentation, unlabelled photos and video, fine-tuning init."""

import json

import cv2
import numpy as np
import pytest
import torch
from op_harness import shared_data_dir

from pgnface.data import PhotoBackgrounds, SyntheticConfig, SyntheticFaces, unlabelled
from pgnface.data.augment import augment_images, colour_jitter
from pgnface.data.unlabelled import UnlabelledPhotos, VideoClips, track_boxes
from pgnface.io.images import read_image
from pgnface.io.video import read_frames
from pgnface.morphable import MorphableModel
from pgnface.train import TrainConfig, apply_overrides, train
from pgnface.train.batches import TrainBatches
from pgnface.train.loop import Trainer

TINY = [
    "net.backbone=resnet18",
    "net.width=0.125",
    "net.head_hidden=32",
    "net.fpn_channels=16",
    "data.size=64",
    "batch_size=4",
    "log_every=1",
    "threads=1",
    "warmup_steps=1",
]


def _shared(name):
    path = shared_data_dir() / name
    if not path.exists():
        pytest.skip(f"shared data {path} is absent")
    return path


def _solid(colour, h=40, w=60):
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def test_photo_backgrounds_cut_patches_and_frame_faces():
    photo = np.zeros((200, 300, 3), np.uint8)
    photo[:, :150] = (255, 0, 0)
    photo[80:120, 180:220] = (0, 255, 0)  # the "face": framed patches are centred on it
    box = np.array([170.0, 70.0, 230.0, 130.0])
    pool = PhotoBackgrounds([photo], size=32, face_boxes=[[box]])
    g = torch.Generator().manual_seed(3)
    patches = pool.draw(g, 64)
    assert patches.shape == (64, 32, 32, 3) and 0 <= float(patches.min()) and float(patches.max()) <= 1
    centre = patches[:, 14:18, 14:18].mean((1, 2))
    framed = (centre[:, 1] > 0.9) & (centre[:, 0] < 0.1)
    assert 10 < int(framed.sum()) < 54  # about half of the draws frame the face
    again = pool.draw(torch.Generator().manual_seed(3), 64)
    assert torch.equal(patches, again)
    with pytest.raises(ValueError, match="photo 0"):
        PhotoBackgrounds([np.zeros((8, 8, 3), np.uint8)], size=32)
    with pytest.raises(ValueError, match="at least one"):
        PhotoBackgrounds([], size=32)


def test_synthetic_faces_over_photos_keep_the_face_and_replace_the_background():
    morphable = MorphableModel.builtin()
    colour = (51, 102, 153)
    pool = PhotoBackgrounds([_solid(colour)], size=64)
    cfg = SyntheticConfig(size=64, photo_prob=1.0)
    plain = SyntheticFaces(morphable, cfg, seed=1).sample(2, seed=5)
    over = SyntheticFaces(morphable, cfg, seed=1, photos=pool).sample(2, seed=5)
    outside = over["mask"] < 0.5
    expected = torch.tensor(colour) / 255
    assert torch.allclose(over["image"].permute(0, 2, 3, 1)[outside], expected.expand(int(outside.sum()), 3), atol=1e-5)
    # The face itself (and every label) is the same as without photos.
    inside = over["mask"] > 0.99
    assert torch.allclose(over["image"].permute(0, 2, 3, 1)[inside], plain["image"].permute(0, 2, 3, 1)[inside])
    assert torch.equal(over["landmarks3d"], plain["landmarks3d"])


def test_augmentation_is_deterministic_bounded_and_shares_colour_within_groups():
    images = torch.rand(6, 3, 32, 32)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    assert torch.equal(augment_images(images, g(), strength=0.0), images)
    a, b = augment_images(images, g(), strength=1.0), augment_images(images, g(), strength=1.0)
    assert torch.equal(a, b) and a.shape == images.shape
    assert 0 <= float(a.min()) and float(a.max()) <= 1 and not torch.allclose(a, images, atol=0.02)
    # Colour changes: the same random row gives the same change; different rows differ.
    r = torch.rand(1, 8).repeat(2, 1)
    same = colour_jitter(images[:1].repeat(2, 1, 1, 1), r, 1.0)
    assert torch.equal(same[0], same[1])
    with pytest.raises(ValueError, match="groups of 4"):
        augment_images(images, g(), group=4)
    with pytest.raises(ValueError, match=r"\[n, 3, S, S\]"):
        augment_images(torch.rand(2, 32, 32), g())


def test_track_boxes_fill_missing_frames_and_smooth_jumps(monkeypatch):
    detections = {
        0: [np.array([10.0, 10, 50, 50])],
        2: [np.array([12.0, 10, 52, 50]), np.array([0.0, 0, 5, 5])],
        3: [np.array([300.0, 10, 340, 50])],
        4: [np.array([14.0, 10, 54, 50])],
    }
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    monkeypatch.setattr(unlabelled, "detect_faces", lambda f, min_size=40: detections.get(int(f[0, 0, 0]), []))
    boxes = track_boxes(frames)
    assert boxes.shape == (5, 4)
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    assert np.all(centres < 100)  # frame 3's jump removed by the median, frame 1 filled from a neighbour
    monkeypatch.setattr(unlabelled, "detect_faces", lambda f, min_size=40: [])
    with pytest.raises(ValueError, match="no face found"):
        track_boxes(frames)


def test_read_frames_from_a_video_file_and_bad_sources(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(6):
        writer.write(_solid((i * 40, 0, 0), 48, 64))
    writer.release()
    frames = read_frames(path)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    with pytest.raises(FileNotFoundError, match="neither a folder of frames nor a video"):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable frames"):
        read_frames(tmp_path / "empty")


def test_unlabelled_photos_and_video_clips_on_real_data():
    photos = UnlabelledPhotos(_shared("images"), size=64)
    assert len(photos) >= 8  # every photo has at least one face
    g = torch.Generator().manual_seed(0)
    batch = photos.batch(5, g)
    assert batch.shape == (5, 3, 64, 64) and batch.dtype == torch.float32
    video = VideoClips(_shared("video"), size=64, frames=3, max_stride=2)
    clips = video.batch(2, g)
    assert clips.shape == (6, 3, 64, 64)
    # Consecutive frames of a clip are close (same person, same framing); different clips need not be.
    assert float((clips[0] - clips[1]).abs().mean()) < 0.1


def test_config_validates_the_new_sources():
    with pytest.raises(ValueError, match="data.images"):
        apply_overrides(TrainConfig(), ["data.images_weight=1"]).validate()
    with pytest.raises(ValueError, match="data.video"):
        apply_overrides(TrainConfig(), ["data.video_weight=1"]).validate()
    with pytest.raises(ValueError, match="data.augment"):
        apply_overrides(TrainConfig(), ["data.augment=2"]).validate()
    with pytest.raises(ValueError, match="data.synthetic.light_contrast"):
        apply_overrides(TrainConfig(), ["data.synthetic.light_contrast=0"]).validate()
    with pytest.raises(ValueError, match="data.synthetic.albedo_std"):
        apply_overrides(TrainConfig(), ["data.synthetic.albedo_std=-1"]).validate()
    # The wider albedo reaches the generator.
    overrides = ["data.synthetic.albedo_std=3"]
    batches = TrainBatches(MorphableModel.builtin(), apply_overrides(TrainConfig(), overrides).data, seed=0)
    assert batches.faces.config.albedo_std == 3.0


def test_training_steps_on_unlabelled_photos_and_video(tmp_path):
    images, video = _shared("images"), _shared("video")
    cfg = apply_overrides(
        TrainConfig(),
        TINY
        + [
            "steps=4",
            "data.single_weight=0",
            "data.images_weight=1",
            "data.video_weight=1",
            "data.clip_frames=2",
            f"data.images={images}",
            f"data.video={video}",
            f"data.backgrounds={images}",
            "data.augment=0.5",
        ],
    )
    batches = TrainBatches(MorphableModel.builtin(), cfg.data, seed=0)
    kinds = {batches.kind(s) for s in range(20)}
    assert kinds == {"images", "video"}
    summary = train(cfg, tmp_path, progress=False)
    assert summary["step"] == 4 and all(x == x for x in summary["history"])


def test_init_starts_from_a_checkpoint_with_its_architecture(tmp_path):
    train(apply_overrides(TrainConfig(), TINY + ["steps=2"]), tmp_path / "a", progress=False)
    source = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    # The new run asks for another width: the init checkpoint's architecture wins.
    cfg = apply_overrides(TrainConfig(), TINY + ["steps=2", "net.width=0.25", f"init={tmp_path / 'a' / 'model.pt'}"])
    trainer = Trainer(cfg, tmp_path / "b", progress=False)
    try:
        assert trainer.config.net.width == 0.125
        for name, value in trainer.net.state_dict().items():
            assert torch.equal(value, source["state_dict"][name]), name
    finally:
        trainer.close()
    with pytest.raises(FileNotFoundError):
        Trainer(apply_overrides(TrainConfig(), TINY + [f"init={tmp_path / 'nope.pt'}"]), tmp_path / "c")


def test_probe_reports_losses_and_overlays_before_and_after(tmp_path):
    from pgnface.cli import main

    images, video = _shared("images"), _shared("video")
    train(apply_overrides(TrainConfig(), TINY + ["steps=1"]), tmp_path / "a", progress=False)
    ckpt = str(tmp_path / "a" / "model.pt")
    out = tmp_path / "probe"
    rc = main(
        [
            "probe",
            "--checkpoint",
            ckpt,
            "--checkpoint",
            ckpt,
            "--images",
            str(images),
            "--video",
            str(video),
            "--batches",
            "1",
            "--batch-size",
            "4",
            "--frames",
            "2",
            "--show",
            "2",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads((out / "probe.json").read_text())
    terms = report[ckpt]
    assert {"photometric", "landmark_consistency", "total"} <= set(terms["images"])
    assert {"geometric", "photometric_cross", "identity"} <= set(terms["video"])
    picture = cv2.imread(str(out / "probe.jpg"))
    assert picture.shape == (64 * 3 * 2, 64 * 2, 3)  # per source: the crops, then one row per checkpoint
    assert main(["probe", "--checkpoint", str(tmp_path / "missing.pt"), "--images", str(images)]) == 2


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(apply_overrides(TrainConfig(), TINY + ["steps=2", "tensorboard=true"]), tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2]
    assert "landmarks3d" in events.Tags()["scalars"]


def test_hide_detected_faces_paints_over_the_head_only(monkeypatch):
    from pgnface.data import photos

    photo = np.zeros((100, 200, 3), np.uint8)
    photo[:, :] = (200, 180, 160)
    photo[40:60, 90:110] = (0, 0, 255)  # the "face"
    monkeypatch.setattr(photos, "detect_faces", lambda image, min_size=40: [np.array([85.0, 35, 115, 65])])
    hidden = photos.hide_detected_faces(photo, max_side=100, tilts=())
    assert hidden.shape == photo.shape
    assert np.abs(hidden[50, 100].astype(int) - (200, 180, 160)).max() < 40  # painted like its surroundings
    assert np.array_equal(hidden[5, 5], photo[5, 5]) and np.array_equal(hidden[95, 195], photo[95, 195])
    monkeypatch.setattr(photos, "detect_faces", lambda image, min_size=40: [])
    assert np.array_equal(photos.hide_detected_faces(photo, max_side=100), photo)


def test_hide_detected_faces_finds_tilted_heads():
    pytest.importorskip("retinaface")
    from pgnface.data.photos import PhotoBackgrounds, hide_detected_faces
    from pgnface.io.detect import detect_faces

    def rgb(name):
        return read_image(_shared("images") / name)

    def turned(image, angle):
        turn = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), angle, 1.0)
        return cv2.warpAffine(image, turn, image.shape[1::-1])

    # The group photo turned by 45 degrees: the upright search finds none of its ten heads,
    # the +-20 degree searches find them all.
    photo = turned(rgb("group.jpg"), 45.0)
    assert not detect_faces(photo)
    upright = hide_detected_faces(photo, max_side=700, tilts=(), max_hidden=1.0)
    tilted = hide_detected_faces(photo, max_side=700, max_hidden=1.0)
    assert len(detect_faces(turned(upright, -45.0))) >= 5 and not detect_faces(turned(tilted, -45.0))
    # emma.jpg: one head is tilted by about 20 degrees; the upright search already hides all three.
    hidden = hide_detected_faces(rgb("emma.jpg"), max_side=240, tilts=(), max_hidden=1.0)
    assert not any(detect_faces(turned(hidden, angle), min_size=12) for angle in (-20.0, 0.0, 20.0))
    # three_quarter.jpg is a close-up: its head covers the whole photo, which is then left out
    # rather than smeared by inpainting.
    close_up = rgb("three_quarter.jpg")
    assert hide_detected_faces(close_up, tilts=()) is None
    assert not np.array_equal(hide_detected_faces(close_up, tilts=(), max_hidden=1.0), close_up)
    pool = PhotoBackgrounds.from_folder(_shared("images"), 120)
    assert 0 < len(pool) < len(PhotoBackgrounds.from_folder(_shared("images"), 120, tilted=False))


def test_landmark_framing_matches_the_standard_crop():
    import math

    morphable = MorphableModel.builtin()
    cfg = SyntheticConfig(size=64, scale_jitter=0.0, shift_jitter=0.0, framing="landmarks")
    s = SyntheticFaces(morphable, cfg, seed=0).sample(16, seed=3)
    lo, hi = s["landmarks2d"].amin(1), s["landmarks2d"].amax(1)
    side = math.sqrt(2.0) * (hi - lo).amax(1)
    # Framed on the mean face's landmarks, so identity and expression move it a few percent.
    assert float((side / 64 - 1).abs().max()) < 0.15 and abs(float((side / 64).mean()) - 1) < 0.05
    assert torch.allclose((lo + hi) / 2, torch.full((16, 2), 32.0), atol=3.0)
    with pytest.raises(ValueError, match="framing"):
        SyntheticFaces(morphable, SyntheticConfig(size=64, framing="nope"), seed=0).sample(1)
    with pytest.raises(ValueError, match="data.synthetic.framing"):
        apply_overrides(TrainConfig(), ["data.synthetic.framing=nope"]).validate()
    # "model" named the 3DMM; the face-width framing is called what it is.
    with pytest.raises(ValueError, match="'model' is now called 'face_width'"):
        SyntheticConfig(framing="model").validate()


def test_light_contrast_darkens_the_shadow_side_only():
    from pgnface.morphable.shading import sh_irradiance

    morphable = MorphableModel.builtin()
    soft = SyntheticFaces(morphable, SyntheticConfig(size=48), seed=4).sample(6, seed=2)
    hard = SyntheticFaces(morphable, SyntheticConfig(size=48, light_contrast=1.8), seed=4).sample(6, seed=2)
    assert torch.equal(soft["landmarks3d"], hard["landmarks3d"])
    # Normals towards and away from each image's light (gamma's linear terms are y, z, x).
    towards = torch.nn.functional.normalize(soft["gamma"][:, [3, 1, 2], 0], dim=1)[:, None]
    lit = [sh_irradiance(towards, s["gamma"]) for s in (soft, hard)]
    shadow = [sh_irradiance(-towards, s["gamma"]) for s in (soft, hard)]
    assert bool((lit[1] >= lit[0] - 1e-5).all())  # the lit side keeps its brightness
    assert bool((shadow[1] < shadow[0] - 0.02).all())  # the shadow side darkens
    assert not torch.equal(soft["image"], hard["image"])
