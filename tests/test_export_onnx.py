"""`pgnface export-onnx`: the graph runs in onnxruntime and matches PyTorch; the NumPy pose solve finishes it."""

import json

import numpy as np
import pytest
import torch
from tiny_nets import train_tiny

from pgnface import ops
from pgnface.apps.export import finish_pose, umeyama
from pgnface.cli import main
from pgnface.nn import REFERENCE_CHECKPOINT, load_network
from pgnface.ops.pose import rotation_from_angles

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


def _random_similarity(B, seed):
    g = torch.Generator().manual_seed(seed)
    angles = (torch.rand(3, B, generator=g, dtype=torch.float64) - 0.5) * 160
    R = rotation_from_angles(*angles).numpy()
    return 0.5 + np.random.default_rng(seed).random(B) * 2, R, np.random.default_rng(seed + 1).normal(0, 50, (B, 3))


def test_umeyama_recovers_a_known_similarity_and_matches_similarity_align():
    src = np.random.default_rng(0).normal(0, 30, (4, 20, 3))
    s, R, t = _random_similarity(4, 1)
    dst = s[:, None, None] * np.einsum("bij,bpj->bpi", R, src) + t[:, None]
    scale, rot, shift = umeyama(src, dst)
    assert np.allclose(scale, s) and np.allclose(rot, R, atol=1e-9) and np.allclose(shift, t, atol=1e-7)
    noisy = dst + np.random.default_rng(2).normal(0, 3, dst.shape)
    weights = np.random.default_rng(3).random((4, 20))
    ref = ops.similarity_align(torch.tensor(src), torch.tensor(noisy), torch.tensor(weights))
    for mine, theirs in zip(umeyama(src, noisy, weights), ref):
        assert np.allclose(mine, theirs.numpy(), atol=1e-8)
    mirrored = src * np.array([-1.0, 1.0, 1.0])  # the best fit would be a reflection: R stays proper
    assert np.allclose(np.linalg.det(umeyama(src, mirrored)[1]), 1.0)


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
