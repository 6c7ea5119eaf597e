"""`pgnface reconstruct`: images, folders, a video, boxes, bad input (with a tiny trained checkpoint)."""

import json

import cv2
import numpy as np
import pytest
from op_harness import shared_data_file

from pgnface.cli import main
from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.io.meshes import read_mesh
from pgnface.io.overlays import to_uint8_bgr

TINY = [
    "net.backbone=resnet18",
    "net.width=0.125",
    "net.head_hidden=32",
    "net.fpn_channels=16",
    "data.size=64",
    "threads=1",
    "warmup_steps=1",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(run), "--steps", "2", "--batch-size", "2", "--quiet"] + TINY) == 0
    return run / "model.pt"


@pytest.fixture(scope="module")
def face_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    sample = SyntheticFaces(config=SyntheticConfig(size=160), seed=2).sample(1, seed=0)
    cv2.imwrite(str(folder / "synthetic.png"), to_uint8_bgr(sample["image"][0]))
    (folder / "broken.jpg").write_bytes(b"not an image")
    gray = cv2.cvtColor(to_uint8_bgr(sample["image"][0]), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / "gray.png"), gray)
    boxes = {"synthetic.png": [[40, 40, 120, 120]], "gray.png": [[40, 40, 120, 120]]}
    (folder / "boxes.json").write_text(json.dumps(boxes))
    return folder


def test_reconstruct_folder_with_boxes_writes_every_output(checkpoint, face_image, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "reconstruct",
            str(face_image),
            "--checkpoint",
            str(checkpoint),
            "-o",
            str(out),
            "--boxes",
            str(face_image / "boxes.json"),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "broken.jpg: not a readable image" in err
    for suffix in (".obj", ".ply", "_landmarks.json", "_coeffs.npz"):
        assert (out / f"synthetic_face0{suffix}").is_file(), suffix
    assert (out / "synthetic_overlay.png").is_file() and (out / "gray_overlay.png").is_file()
    info = json.loads((out / "synthetic_face0_landmarks.json").read_text())
    assert len(info["landmarks68"]) == 68 and set(info["pose"]) == {"yaw", "pitch", "roll", "scale"}
    verts, tris = read_mesh(out / "synthetic_face0.obj")
    assert verts.shape[0] == tris.max() + 1 and len(tris) > 1000
    coeffs = np.load(out / "synthetic_face0_coeffs.npz")
    assert coeffs["id"].shape == (40,) and coeffs["rotation"].shape == (3, 3)


def test_reconstruct_a_video(checkpoint, face_image, tmp_path):
    video = tmp_path / "clip.mp4"
    frame = cv2.imread(str(face_image / "synthetic.png"))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, frame.shape[1::-1])
    for _ in range(3):
        writer.write(frame)
    writer.release()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({str(i): [[40, 40, 120, 120]] for i in range(3)}))
    out = tmp_path / "vout"
    assert (
        main(["reconstruct", str(video), "--checkpoint", str(checkpoint), "-o", str(out), "--boxes", str(boxes)]) == 0
    )
    assert (out / "clip_overlay.mp4").stat().st_size > 0
    assert len(list(out.glob("clip_*_face0.obj"))) == 3


def test_reconstruct_real_photos_with_the_detector(checkpoint, tmp_path):
    photo = shared_data_file("images") / "frontal.jpg"
    out = tmp_path / "real"
    assert main(["reconstruct", str(photo), "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    assert (out / "frontal_face0.obj").is_file() and (out / "frontal_overlay.png").is_file()


def test_reconstruct_bad_input(checkpoint, tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "missing.jpg"), "--checkpoint", str(checkpoint)]) == 2
    assert main(["reconstruct", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    assert main(["reconstruct", str(blank), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "o")]) == 1
    assert "no face found" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((10, 10, 3), np.uint8))
    assert main(["reconstruct", str(tiny), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "o2")]) == 1


def test_demo_with_a_checkpoint(checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--checkpoint", str(checkpoint), "--frames", "3"]) == 0
    printed = capsys.readouterr().out
    assert "NME 2D %" in printed and "mean" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["frames"]) == 3 and metrics["mean"]["nme2d"] > 0
    assert (out / "contact_sheet.png").is_file() and len(list(out.glob("frame*.obj"))) == 3
    assert main(["demo", "-o", str(out), "--checkpoint", str(tmp_path / "none.pt")]) == 2


def test_bundled_reference_checkpoint_runs_the_demo(tmp_path):
    from pgnface.apps.demo import REFERENCE_CHECKPOINT

    if not REFERENCE_CHECKPOINT.is_file():
        pytest.skip("no bundled reference checkpoint in this checkout")
    assert main(["demo", "-o", str(tmp_path), "--frames", "4"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mean"]["nme2d"] < 6.0  # the reference model reconstructs its own synthetic faces
