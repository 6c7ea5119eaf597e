"""Booby-trapped checkpoints and 3DMM pickles cannot run code through any loading path."""

import pickle

import cv2
import numpy as np
import pytest
import torch

from pgnface.cli.main import main
from pgnface.morphable import MorphableModel
from pgnface.nn import load_network, read_checkpoint
from pgnface.nn.checkpoint import FORMAT
from pgnface.train import TrainConfig, train


class Trap:
    """Unpickling this object writes `marker` (a stand-in for any shell command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload_ran"
    yield path
    assert not path.exists(), "the booby-trapped file ran its code"


@pytest.fixture
def evil_pt(tmp_path, marker):
    """A .pt that looks like a reconstructor checkpoint and carries a payload."""
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": FORMAT, "version": 1, "network": {}, "model": {}, "state_dict": {}, "note": Trap(marker)}, path
    )
    return path


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


@pytest.fixture
def evil_pkl(tmp_path, marker):
    return _write_pickle(tmp_path / "evil.pkl", {"u": np.zeros((9, 1)), "w_shp": Trap(marker)})


@pytest.fixture
def evil_tri_pkl(tmp_path, marker):
    """A harmless-looking 3DDFA model whose sibling tri.pkl carries the payload."""
    folder = tmp_path / "ddfa"
    folder.mkdir()
    _write_pickle(folder / "tri.pkl", Trap(marker))
    fields = {"u": np.zeros((9, 1)), "w_shp": np.zeros((9, 2)), "w_exp": np.zeros((9, 2)), "keypoints": np.arange(3)}
    return _write_pickle(folder / "bfm_noneck_v3.pkl", fields)


def test_read_checkpoint_refuses_pickled_code(evil_pt):
    with pytest.raises(ValueError, match="could run code"):
        read_checkpoint(evil_pt)
    with pytest.raises(ValueError, match="evil.pt"):
        load_network(evil_pt)


def test_resume_and_init_refuse_pickled_code(evil_pt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(evil_pt.read_bytes())
    with pytest.raises(ValueError, match="could run code"):
        train(TrainConfig(steps=1), run, resume=True, progress=False)
    with pytest.raises(ValueError, match="could run code"):
        train(TrainConfig(steps=1, init=str(evil_pt)), tmp_path / "fresh", progress=False)


@pytest.mark.parametrize("fixture", ["evil_pkl", "evil_tri_pkl"])
def test_morphable_pickle_refuses_code(fixture, request):
    path = request.getfixturevalue(fixture)
    with pytest.raises(ValueError, match="not a numpy or scipy array type"):
        MorphableModel.load(path)


def test_array_pickle_admits_numpy_and_scipy(tmp_path):
    from scipy import sparse

    from pgnface.morphable.array_pickle import load_array_pickle

    data = {
        "dense": np.arange(6, dtype=np.float32).reshape(2, 3),
        "scalar": np.float64(2.5),
        "sparse": sparse.csr_matrix(np.eye(3)),
        "nested": [np.int64(3), (1, "a")],
    }
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
        back = load_array_pickle(path)
        assert np.array_equal(back["dense"], data["dense"]) and back["dense"].dtype == np.float32
        assert back["scalar"] == 2.5 and back["nested"] == [3, (1, "a")]
        assert (back["sparse"] != data["sparse"]).nnz == 0


@pytest.fixture
def face_image(tmp_path):
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


def _commands(evil_pt, evil_pkl, face_image, tmp_path):
    out = tmp_path / "out"
    return {
        "reconstruct": ["reconstruct", str(face_image), "--checkpoint", str(evil_pt), "-o", str(out)],
        "export-onnx": ["export-onnx", "--checkpoint", str(evil_pt), "-o", str(out / "net.onnx")],
        "eval synthetic": ["eval", "synthetic", "--checkpoint", str(evil_pt), "-n", "2", "-o", str(out)],
        "train init=": ["train", "--out", str(out), "--steps", "1", "--quiet", f"init={evil_pt}"],
        "render --morphable": ["render", "--morphable", str(evil_pkl), "-n", "1", "-o", str(out)],
    }


@pytest.mark.parametrize(
    "command", ["reconstruct", "export-onnx", "eval synthetic", "train init=", "render --morphable"]
)
def test_commands_refuse_booby_trapped_files(command, evil_pt, evil_pkl, face_image, tmp_path, capsys):
    argv = _commands(evil_pt, evil_pkl, face_image, tmp_path)[command]
    assert main(argv) == 2
    assert "run code" in capsys.readouterr().err
