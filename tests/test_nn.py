"""PGN network: backbones, heads, 6D rotations, the pose solve, refinement, checkpoints."""

import dataclasses

import pytest
import torch

from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.morphable import MorphableModel
from pgnface.nn import (
    PGNNetwork,
    build_backbone,
    load_network,
    refine_shape,
    rotation_from_6d,
    rotation_to_6d,
    save_network,
    soft_argmax,
)
from pgnface.train.batches import centre_depth

TINY = dict(backbone="resnet18", width=0.125, head_hidden=32, fpn_channels=16)


@pytest.fixture(scope="module")
def morphable():
    return MorphableModel.builtin()


@pytest.fixture(scope="module")
def sample(morphable):
    return SyntheticFaces(morphable, SyntheticConfig(size=64), seed=3).sample(3, seed=0)


@pytest.mark.parametrize("name,width", [("resnet18", 0.25), ("resnet34", 0.125), ("mobilenetv2", 0.25)])
def test_backbone_strides_and_channels(name, width):
    net = build_backbone(name, width).eval()
    feats = net(torch.rand(2, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [8, 4, 2]
    assert tuple(f.shape[1] for f in feats) == net.channels


def test_backbone_channels_last_and_autocast():
    net = build_backbone("mobilenetv2", 0.25).to(memory_format=torch.channels_last).eval()
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = net(x)
    assert all(torch.isfinite(f.float()).all() for f in feats)
    ref = net(x)
    torch.testing.assert_close(feats[-1].float(), ref[-1], atol=0.2, rtol=0.1)


def test_backbone_bad_input():
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="width"):
        build_backbone("resnet18", width=0)


def test_soft_argmax_peak_at_known_cell():
    logits = torch.full((1, 2, 4, 8), -1e4)
    logits[0, 0, 1, 5] = 0.0  # row 1, column 5
    logits[0, 1, 3, 0] = 0.0
    uv, prob = soft_argmax(logits, 64)
    torch.testing.assert_close(uv[0], torch.tensor([[(5 + 0.5) * 8.0, (1 + 0.5) * 16.0], [4.0, 56.0]]))
    torch.testing.assert_close(prob.sum((2, 3)), torch.ones(1, 2))
    uniform, _ = soft_argmax(torch.zeros(1, 1, 4, 4), 64)
    torch.testing.assert_close(uniform[0, 0], torch.tensor([32.0, 32.0]))


def test_rotation_6d_is_a_rotation_and_round_trips():
    torch.manual_seed(0)
    R = rotation_from_6d(torch.randn(16, 6))
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3).expand(16, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotation_from_6d(rotation_to_6d(R)), R, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="6"):
        rotation_from_6d(torch.zeros(2, 5))


@pytest.mark.parametrize("pose_mode,landmark_mode", [("pgn", "heatmap"), ("regress", "regress")])
def test_forward_shapes_and_gradients(morphable, pose_mode, landmark_mode):
    torch.manual_seed(0)
    net = PGNNetwork(morphable, pose_mode=pose_mode, landmark_mode=landmark_mode, **TINY)
    out = net(torch.rand(2, 3, 64, 64))
    N, L = morphable.num_vertices, morphable.landmark_ids.numel()
    expected = {
        "landmarks": (2, 68, 3),
        "id": (2, morphable.num_id),
        "exp": (2, morphable.num_exp),
        "albedo": (2, morphable.num_albedo),
        "gamma": (2, 9, 3),
        "scale": (2,),
        "rotation": (2, 3, 3),
        "translation": (2, 3),
        "shape": (2, N, 3),
        "vertices": (2, N, 3),
        "projected": (2, N, 2),
        "landmarks_recon": (2, L, 3),
    }
    for key, shape in expected.items():
        assert tuple(out[key].shape) == shape, key
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    # An untrained network sees a face-sized, proper rotation.
    torch.testing.assert_close(torch.linalg.det(out["rotation"]), torch.ones(2), atol=1e-4, rtol=0)
    out["vertices"].square().mean().backward()
    first = next(net.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_pgn_pose_recovers_ground_truth(morphable, sample):
    """Given the true landmarks and coefficients, the solved pose is the generator's pose."""
    net = PGNNetwork(morphable, **TINY)
    heads = {"id": sample["id"], "exp": sample["exp"], "albedo": sample["albedo"], "gamma": torch.zeros(3, 27)}
    landmarks = torch.zeros(3, 68, 3)
    landmarks[:, morphable.landmark_ids] = sample["landmarks3d"]
    out = net.geometry(landmarks, heads, 64)
    torch.testing.assert_close(out["rotation"], sample["rotation"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["scale"], sample["scale"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        out["vertices"], centre_depth(sample["vertices"], morphable.landmark_vertices), atol=2e-3, rtol=0
    )
    torch.testing.assert_close(out["landmarks_recon"], sample["landmarks3d"], atol=2e-3, rtol=0)


def test_refinement_recovers_shape_from_landmarks(morphable, sample):
    """With the true pose and exact landmarks, a weak prior fits the landmarks exactly (the landmarks
    do not determine every coefficient, so compare the fitted landmarks, not the coefficients)."""
    coeffs_true = torch.cat([sample["id"], sample["exp"]], 1)
    target = centre_depth(sample["vertices"], morphable.landmark_vertices)[:, morphable.landmark_vertices]
    t = sample["translation"].clone()
    t[:, 2] -= sample["vertices"][:, morphable.landmark_vertices, 2].mean(1)
    refined = refine_shape(
        morphable, torch.zeros_like(coeffs_true), target, sample["scale"], sample["rotation"], t, strength=1e-6
    )
    fitted = morphable.landmarks(
        *refined.split([morphable.num_id, morphable.num_exp], 1), sample["rotation"], sample["scale"], t
    )
    torch.testing.assert_close(fitted, target, atol=1e-2, rtol=0)
    # A strong prior keeps the network's coefficients.
    kept = refine_shape(morphable, coeffs_true * 0.5, target, sample["scale"], sample["rotation"], t, strength=1e6)
    torch.testing.assert_close(kept, coeffs_true * 0.5, atol=1e-3, rtol=0)


def test_refine_iterations_run_and_differentiate(morphable):
    torch.manual_seed(0)
    net = PGNNetwork(morphable, refine_iters=2, **TINY)
    out = net(torch.rand(2, 3, 64, 64))
    out["landmarks_recon"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_bad_arguments(morphable):
    with pytest.raises(ValueError, match="pose_mode"):
        PGNNetwork(morphable, pose_mode="solve")
    with pytest.raises(TypeError, match="unknown"):
        PGNNetwork(morphable, depth=3)
    with pytest.raises(TypeError, match="MorphableModel"):
        PGNNetwork("bfm.mat")
    with pytest.raises(ValueError, match="refine_iters"):
        PGNNetwork(morphable, pose_mode="regress", refine_iters=1)
    net = PGNNetwork(morphable, **TINY)
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(2, 3, 64, 48))
    with pytest.raises(TypeError, match="images"):
        net(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))


def test_save_load_round_trip_and_model_mismatch(morphable, tmp_path):
    torch.manual_seed(0)
    net = PGNNetwork(morphable, pose_mode="regress", **TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "net.pt"
    save_network(path, net, extra={"note": "x"})
    loaded, payload = load_network(path, morphable)
    assert payload["note"] == "x" and payload["network"]["pose_mode"] == "regress"
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["vertices"], net(images)["vertices"])
    other = dataclasses.replace(morphable, mean=morphable.mean + 0.5, _basis=None)
    with pytest.raises(ValueError, match="does not match"):
        load_network(path, other)
    fewer = dataclasses.replace(
        morphable,
        landmark_vertices=morphable.landmark_vertices[:50],
        landmark_ids=morphable.landmark_ids[:50],
        _basis=None,
    )
    with pytest.raises(ValueError, match="landmark_ids"):
        load_network(path, fewer)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read|not a pgnface"):
        load_network(tmp_path / "junk.pt", morphable)


def test_autocast_and_channels_last_forward(morphable):
    torch.manual_seed(0)
    net = PGNNetwork(morphable, backbone="mobilenetv2", width=0.25, head_hidden=32, fpn_channels=16)
    net = net.to(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(images)
    for key in ("landmarks", "vertices", "rotation", "gamma"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    out["vertices"].mean().backward()


def test_pickling_leaves_the_per_device_3dmm_copies_behind(morphable):
    import pickle

    net = PGNNetwork(morphable, **TINY)
    net._morphables[torch.device("cuda", 0)] = morphable  # stands for a cached CUDA copy
    assert len(net._morphables) == 2
    assert net.__getstate__()["_morphables"] == {}
    copy = pickle.loads(pickle.dumps(net))
    assert list(copy._morphables) == [morphable.device]
    assert copy.morphable_on(morphable.device) is copy.morphable
