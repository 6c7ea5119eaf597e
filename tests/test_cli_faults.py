"""Hostile and unlucky command lines: every failure is one stderr line and exit code 2, before any work.

Also: an interrupt is one line and exit code 130, a full disk names the file, and
neither leaves half-written output behind.
"""

import errno
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pgnface.cli import main

CPU_ONLY = not torch.cuda.is_available()


def _fails(capsys, argv, code: int = 2) -> str:
    """Runs `pgnface argv`; checks the exit code and one stderr line without a traceback; returns the line."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pgnface") and "Traceback" not in err, err
    return err


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "face.png"
    assert __import__("cv2").imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """Mounts a tmpfs on `folder` (root only); False when this machine does not allow it."""
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody can write to: a read-only tmpfs as root, else a folder without write permission."""
    folder = tmp_path / "ro"
    if _mount_tmpfs(folder, "ro,size=64k"):
        yield folder
        subprocess.run(["umount", str(folder)])
    elif os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        pytest.skip("root without mount: no folder is read-only")


def _commands(out):
    """Every command with an output, writing to `out`, with inputs that would otherwise be fine."""
    return [
        ["render", "-n", "1", "-o", out],
        ["reconstruct", "{image}", "-o", out],
        ["demo", "--frames", "1", "-o", out],
        ["eval", "synthetic", "-n", "1", "-o", out],
        ["eval", "aflw2000", "{tmp}", "-o", out],
        ["eval", "dense", "{image}", "{image}", "-o", out],
        ["probe", "--checkpoint", "x.pt", "--out", out],
        ["train", "--out", out],
    ]


@pytest.mark.parametrize("index", range(len(_commands(""))))
def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, image, monkeypatch, index):
    import pgnface.eval.aflw2000

    monkeypatch.setattr(pgnface.eval.aflw2000, "load_aflw2000", lambda *a, **k: pytest.fail("work started"))
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    argv = [str(a).format(image=image, tmp=tmp_path) for a in _commands(taken)[index]]
    err = _fails(capsys, argv)
    assert str(taken) in err and "is a file" in err
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("index", range(len(_commands(""))))
def test_a_read_only_output_folder_is_refused(read_only, tmp_path, capsys, image, index):
    argv = [str(a).format(image=image, tmp=tmp_path) for a in _commands(read_only / "out")[index]]
    assert "read-only" in _fails(capsys, argv)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["reconstruct", "{image}", "--device", "tpu"], "--device tpu: pgnface runs on cpu or cuda"),
        (["render", "--device", "tpu"], "--device tpu: pgnface runs on cpu or cuda"),
        (["eval", "synthetic", "--device", "xla"], "--device xla"),
        (["train", "--out", "{tmp}/t", "threads=-3"], "threads must be >= 0"),
        (["reconstruct", "{image}", "--fps", "inf"], "--fps must be at least 0.1 frames per second and at most 1000"),
        (["reconstruct", "{image}", "--fps", "1e9"], "at most 1000"),
        (["reconstruct", "{image}", "--fps", "nan"], "got nan"),
        (["render", "--size", "100000"], "--size must be at least 8 px and at most 1024 px"),
        (["eval", "aflw2000", "{tmp}", "--size", "-8"], "--size must be at least 32 px"),
        (["eval", "synthetic", "--size", "5000"], "at most 1024"),
        (["export-onnx", "--opset", "99"], "--opset must be at least 18 and at most 23, got 99"),
        (["export-onnx", "--size", "0"], "--size must be at least 32 px"),
        (["demo", "--compare", "{tmp}/missing.pt"], "--compare {tmp}/missing.pt: does not exist"),
        (["eval", "dense", "{image}", "{image}", "--crop-radius", "-1"], "--crop-radius"),
        (["render", "--frames-per-clip", "3"], "unrecognized arguments: --frames-per-clip"),
        (["render", "-n", "many"], "argument -n/--num: invalid int value: 'many'"),
    ],
)
def test_every_option_is_checked_before_work(tmp_path, capsys, image, argv, expected):
    argv = [a.format(image=image, tmp=tmp_path) for a in argv]
    assert expected.format(tmp=tmp_path) in _fails(capsys, argv)
    assert not (tmp_path / "t").exists()


@pytest.mark.skipif(not CPU_ONLY, reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_to_use_the_cpu(capsys, image):
    assert "no CUDA GPU is available here; use --device cpu" in _fails(
        capsys, ["reconstruct", image, "--device", "cuda"]
    )


@pytest.mark.parametrize(
    "boxes, expected",
    [
        ([[0, 0, 10, 10]], "a JSON list, expected an object"),
        ({"face.png": [[5, 5, 5, 20]]}, "positive size"),
        ({"face.png": [[30, 30, 10, 10]]}, "x1 must exceed x0"),
        ({"face.png": [[0, 0, math.nan, 10]]}, "must be finite"),
        ({"face.png": [[0, 0, 10]]}, "four numbers"),
        ({"face.png": [0, 0, 10, 10]}, "list of boxes"),
    ],
)
def test_bad_boxes_are_refused(tmp_path, capsys, image, boxes, expected):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    out = tmp_path / "out"
    assert expected in _fails(capsys, ["reconstruct", image, "--boxes", path, "-o", out])
    assert not out.exists()


def test_corrupt_input_files_are_one_line(tmp_path, capsys, image):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(4096))
    for suffix, argv in (
        (".pt", ["reconstruct", image, "--checkpoint"]),
        (".pt", ["export-onnx", "-o", tmp_path / "a.onnx", "--checkpoint"]),
        (".pt", ["eval", "synthetic", "-n", "1", "-o", tmp_path / "e", "--checkpoint"]),
        (".pkl", ["render", "-n", "1", "-o", tmp_path / "r", "--morphable"]),
        (".json", ["train", "--out", tmp_path / "t", "--config"]),
        (".json", ["reconstruct", image, "-o", tmp_path / "b", "--boxes"]),
    ):
        path = garbage.with_suffix(suffix)
        path.write_bytes(garbage.read_bytes())
        assert path.name in _fails(capsys, argv + [path])
    assert not any((tmp_path / name).exists() for name in ("a.onnx", "e", "r", "t", "b"))


@pytest.fixture(scope="module")
def reference_payload():
    from pgnface.nn import REFERENCE_CHECKPOINT

    return torch.load(REFERENCE_CHECKPOINT, map_location="cpu", weights_only=False)  # the bundled file


@pytest.mark.parametrize("damage", ["missing", "shape"])
def test_a_checkpoint_that_does_not_fit_its_network_is_one_line(tmp_path, capsys, image, reference_payload, damage):
    payload = dict(reference_payload, state_dict=dict(reference_payload["state_dict"]))
    name = next(iter(payload["state_dict"]))
    if damage == "missing":
        del payload["state_dict"][name]
    else:
        payload["state_dict"][name] = torch.zeros(3, 1)
    path = tmp_path / "damaged.pt"
    torch.save(payload, path)
    for argv in (["reconstruct", image, "-o", tmp_path / "o"], ["export-onnx", "-o", tmp_path / "a.onnx"]):
        assert name in _fails(capsys, argv + ["--checkpoint", path])
    assert not (tmp_path / "o").exists() and not (tmp_path / "a.onnx").exists()


def test_options_may_follow_key_value_overrides(tmp_path, capsys):
    from pgnface.cli.main import parse

    args = parse(["train", "lr=1e-4", "--out", str(tmp_path), "net.width=0.5", "--steps", "3", "--quiet"])
    assert args.overrides == ["lr=1e-4", "net.width=0.5"] and args.steps == 3 and args.quiet
    assert "unrecognized arguments: --nosuch" in _fails(capsys, ["train", "lr=1", "--nosuch", "--out", tmp_path])


def test_a_fresh_run_into_a_run_folder_needs_overwrite(tmp_path, capsys):
    (tmp_path / "log.jsonl").write_text('{"step": 1}\n')
    err = _fails(capsys, ["train", "--out", tmp_path, "--steps", "1"])
    assert "holds a run (log.jsonl)" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "log.jsonl").read_text() == '{"step": 1}\n'
    assert "does not go with it" in _fails(capsys, ["train", "--out", tmp_path, "--resume", "--overwrite"])


def test_messages_give_no_python_arguments(tmp_path, capsys):
    from pgnface.cli.errors import report

    report(
        "eval aflw2000", "x contains 1 non-finite value(s) (NaN or Inf); fix the input, or pass check_values=False to"
    )
    report("eval aflw2000", "--reannotated a.npy: Object arrays cannot be loaded when allow_pickle=False")
    err = capsys.readouterr().err
    assert "check_values" not in err and "allow_pickle" not in err and "fix the input" in err
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    err = _fails(capsys, ["eval", "aflw2000", tmp_path, "--mean-face", "--reannotated", pickled, "-o", tmp_path / "o"])
    assert "allow_pickle" not in err and "Python objects" in err


def test_an_interrupt_is_one_line_and_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    import pgnface.data.labelled_folder as labelled_folder

    write = labelled_folder.write_300wlp

    def write_then_interrupt(*args, **kwargs):
        write(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(labelled_folder, "write_300wlp", write_then_interrupt)
    out = tmp_path / "out"
    assert "interrupted" in _fails(capsys, ["render", "-n", "2", "-o", out], code=130)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    _fails(capsys, ["render", "-n", "2", "-o", kept], code=130)
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "size=64k"):  # without root, the writer reports a full disk instead

        def no_space(path, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr("scipy.io.savemat", no_space)
    try:
        err = _fails(capsys, ["render", "-n", "8", "--size", "256", "-o", small / "out"])
        assert str(small / "out") in err and ("No space left" in err or "could not write" in err), err
        assert not (small / "out").exists()
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_failed_image_write_is_an_os_error(tmp_path, monkeypatch):
    import cv2

    from pgnface.cli import outputs

    monkeypatch.setattr(cv2, "imwrite", lambda *args: False)
    with pytest.raises(OSError, match="could not be written"):
        outputs.write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
