"""Inputs and outputs of the applications: truncated images, colliding names, video writer limits,
bad boxes and sizes, and photos far larger than any face."""

import shutil

import cv2
import numpy as np
import pytest
import scipy.io
from op_harness import shared_data_file

from pgnface.apps import pipeline
from pgnface.apps.clip import FPS_RANGE, check_fps, open_video_writer, write_clip
from pgnface.apps.pipeline import ReconstructionPipeline, check_box, detect_faces_downscaled, output_stems
from pgnface.eval import MeanShapePredictor, evaluate, load_aflw2000
from pgnface.io.images import read_image
from pgnface.nn import REFERENCE_CHECKPOINT


@pytest.fixture(scope="module")
def photo():
    return read_image(shared_data_file("images/frontal.jpg"))


@pytest.fixture(scope="module")
def recon():
    return ReconstructionPipeline(REFERENCE_CHECKPOINT)


def _encoded(image, ext):
    ok, data = cv2.imencode(ext, image[..., ::-1])
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_image_is_refused(ext, photo, tmp_path):
    data = _encoded(photo, ext)
    whole, cut = tmp_path / f"whole{ext}", tmp_path / f"cut{ext}"
    whole.write_bytes(data + b"\0" * 16)  # trailing bytes after the end are harmless
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert np.array_equal(read_image(whole), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1])
    with pytest.raises(ValueError, match=rf"cut{ext}: the image file is truncated"):
        read_image(cut)
    with pytest.raises(ValueError, match="missing.jpg: not a readable image"):
        read_image(tmp_path / "missing.jpg")


@pytest.fixture
def aflw_copy(tmp_path):
    source = shared_data_file("aflw2000")
    folder = tmp_path / "aflw"
    folder.mkdir()
    for name in ("image00050.jpg", "image00050.mat"):
        shutil.copy(source / name, folder / name)
    return folder


def test_aflw2000_refuses_truncated_images_nan_labels_and_bad_sizes(aflw_copy):
    samples = load_aflw2000(aflw_copy)
    with pytest.raises(ValueError, match="input size .*at least 32 pixels, got -8"):
        evaluate(MeanShapePredictor(input_size=-8), samples)
    mat = {k: v for k, v in scipy.io.loadmat(aflw_copy / "image00050.mat").items() if not k.startswith("__")}
    mat["pt3d_68"][0, 5] = np.nan
    scipy.io.savemat(aflw_copy / "image00050.mat", mat)
    with pytest.raises(ValueError, match="pt3d_68 holds 1 NaN or Inf"):
        load_aflw2000(aflw_copy)
    image = aflw_copy / "image00050.jpg"
    image.write_bytes(image.read_bytes()[:4000])
    with pytest.raises(ValueError, match="image00050.jpg: the image file is truncated"):
        load_aflw2000(aflw_copy)


def test_output_stems_never_collide():
    names = ["d/face.jpg", "d/face.png", "d/other.jpg", "d/Face.JPG", "d/face_jpg.png"]
    stems = output_stems(names)
    assert stems[:3] == ["face_jpg", "face_png", "other"]
    assert len({s.lower() for s in stems}) == len(stems), stems


@pytest.mark.parametrize("fps", [float("inf"), float("nan"), 1e9, 0.0, -5.0, "fast"])
def test_fps_outside_the_writers_range_is_refused(fps, tmp_path):
    with pytest.raises(ValueError, match=rf"fps must be .*\[{FPS_RANGE[0]:g}, {FPS_RANGE[1]:g}\]"):
        check_fps(fps)
    with pytest.raises(ValueError, match="fps must be"):  # before any file is written
        write_clip(None, iter([]), [], np.zeros(1), tmp_path, "clip", fps)
    assert not any(tmp_path.iterdir())


def test_video_writer_that_cannot_open_is_an_error(tmp_path):
    with pytest.raises(OSError, match="could not open an MP4 writer"):
        open_video_writer(tmp_path / "no_such_folder" / "clip.mp4", 25.0, 64, 48)
    writer = open_video_writer(tmp_path / "clip.mp4", 25.0, 64, 48)
    writer.release()


@pytest.mark.parametrize("box", [[10, 10, 10, 50], [50, 50, 20, 20], [0, 0, float("nan"), 9], [1, 2, 3], "abc"])
def test_degenerate_boxes_are_refused(box, recon, photo):
    with pytest.raises(ValueError, match="face box"):
        check_box(box)
    with pytest.raises(ValueError, match="face box"):
        recon.faces(photo, [box])


def test_huge_photo_is_detected_small_and_rendered_small(recon, photo, monkeypatch):
    big = cv2.resize(photo, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)  # 2478 x 3306
    seen, rendered = [], []
    real_detect, real_render = pipeline.detect_faces, pipeline.render
    monkeypatch.setattr(pipeline, "detect_faces", lambda image: seen.append(image.shape) or real_detect(image))
    monkeypatch.setattr(pipeline, "render", lambda *a, **k: rendered.append(a[5]) or real_render(*a, **k))
    small_boxes = real_detect(photo)
    boxes = detect_faces_downscaled(big)
    assert max(seen[0][:2]) == pipeline.DETECTION_MAX_SIDE
    # the same face as on the original photo, in the big photo's pixels
    # (the detector sees each photo at its own scale, so the boxes agree to a few percent of the face)
    side = small_boxes[0][2] - small_boxes[0][0]
    np.testing.assert_allclose(boxes[0] / 6, small_boxes[0], atol=0.06 * side)
    faces = recon.faces(big, [boxes[0]])
    overlay = recon.overlay(big, faces)
    assert overlay.shape == big.shape and max(rendered[0]) <= pipeline.OVERLAY_RENDER_MAX_SIDE
    changed = np.abs(overlay.astype(int) - big[..., ::-1]).sum(-1) > 0
    x0, y0, x1, y1 = faces[0].box
    assert changed[int(y0) : int(y1), int(x0) : int(x1)].mean() > 0.3  # the face is shaded in
    assert not changed[: int(y0) - 200].any()  # and nothing far above it


def test_reconstruct_keeps_face_jpg_and_face_png_apart(photo, tmp_path, capsys):
    from pgnface.cli.main import main

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for ext in (".jpg", ".png"):
        cv2.imwrite(str(inputs / f"face{ext}"), photo[..., ::-1])
    assert main(["reconstruct", str(inputs), "-o", str(out), "--images"]) == 0
    assert (out / "face_jpg_overlay.png").is_file() and (out / "face_png_overlay.png").is_file()
    assert len(list(out.glob("*_face0.obj"))) == 2
    for fps in ("inf", "1e9"):
        assert main(["reconstruct", str(inputs), "-o", str(out), "--fps", fps]) == 2
        assert "--fps must be at least 0.1 frames per second and at most 1000" in capsys.readouterr().err
