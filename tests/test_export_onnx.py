"""`pgnface export-onnx`: the graph runs in onnxruntime and matches PyTorch; the NumPy pose solve finishes it."""

import json

import numpy as np
import pytest
import torch
from tiny_nets import train_tiny

from pgnface.apps.export import finish_pose
from pgnface.cli import main
from pgnface.nn import REFERENCE_CHECKPOINT, load_network

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{pose mode: (checkpoint, onnx file)} for tiny pgn (64 px) and regress (48 px) networks."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for mode, size in (("pgn", 64), ("regress", 48)):
        ckpt = train_tiny(root / mode, size=size, pose_mode=mode)
        path = root / f"{mode}.onnx"
        assert main(["export-onnx", "--checkpoint", str(ckpt), "-o", str(path)]) == 0
        out[mode] = (ckpt, path)
    return out


@pytest.mark.parametrize("mode", ["pgn", "regress"])
def test_onnxruntime_matches_pytorch(exported, mode):
    from pgnface.apps.export import run_onnx

    pytest.importorskip("onnxruntime")
    ckpt, path = exported[mode]
    net, payload = load_network(ckpt)
    size = payload["input_size"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["pose_mode"] == mode and meta["input_size"] == str(size)
    assert json.loads(meta["landmark_ids"]) == net.morphable.landmark_ids.tolist()
    for batch in (1, 4):  # the batch size is dynamic
        images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        got = run_onnx(path, images)
        with torch.no_grad():
            ref = net(images)
        ref["model_landmarks"] = net.morphable.landmarks(ref["id"], ref["exp"])
        ref.update(id_coeffs=ref["id"], exp_coeffs=ref["exp"], albedo_coeffs=ref["albedo"])
        names = ["landmarks", "id_coeffs", "exp_coeffs", "albedo_coeffs", "gamma", "model_landmarks"]
        names += ["scale", "rotation", "translation"] if mode == "regress" else []
        assert sorted(got) == sorted(names)
        for name in names:
            assert got[name].shape == tuple(ref[name].shape), name
            assert np.allclose(got[name], ref[name].numpy(), rtol=1e-4, atol=1e-4 * size), name


def test_the_numpy_pose_solve_finishes_the_pgn_graph(tmp_path):
    from pgnface.apps.export import run_onnx

    pytest.importorskip("onnxruntime")
    if not REFERENCE_CHECKPOINT.is_file():
        pytest.skip("no bundled reference checkpoint in this checkout")
    path = tmp_path / "reference.onnx"
    assert main(["export-onnx", "-o", str(path)]) == 0  # the bundled reference by default
    net, payload = load_network(REFERENCE_CHECKPOINT)
    from pgnface.data import SyntheticConfig, SyntheticFaces

    images = SyntheticFaces(config=SyntheticConfig(size=payload["input_size"]), seed=5).sample(3)["image"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    scale, R, t = finish_pose(run_onnx(path, images), meta["landmark_ids"])
    with torch.no_grad():
        ref = net(images)
    assert np.allclose(scale, ref["scale"].numpy(), rtol=1e-4)
    assert np.allclose(R, ref["rotation"].numpy(), atol=1e-4)
    assert np.allclose(t, ref["translation"].numpy(), atol=1e-2)


def test_export_errors(tmp_path, capsys):
    assert main(["export-onnx", "--opset", "11", "-o", str(tmp_path / "a.onnx")]) == 2
    assert "--opset" in capsys.readouterr().err
    assert main(["export-onnx", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--checkpoint" in err
    assert not (tmp_path / "a.onnx").exists()
