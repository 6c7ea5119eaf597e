"""MorphableModel: the built-in model, every loader, derived albedo, bad files."""

import pickle

import numpy as np
import pytest
import scipy.io
import torch
from op_harness import shared_data_file

import pgnface.ops as ops
from pgnface.morphable import EXPRESSIONS, MorphableModel
from pgnface.morphable.loaders import outward_triangles


@pytest.fixture(scope="module")
def builtin():
    return MorphableModel.builtin()


def consistently_wound(tris):
    """No directed edge appears twice: neighbours traverse shared edges in opposite directions."""
    t = tris.long()
    directed = torch.cat([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    return torch.unique(directed, dim=0).shape[0] == directed.shape[0]


def outward_fraction(verts, tris):
    v = verts.double()[tris.long()]
    normals = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=1)
    outward = v.mean(1) - verts.double().mean(0)
    return float(((normals * outward).sum(1) > 0).double().mean())


def test_builtin_is_deterministic_and_sized_as_documented(builtin):
    again = MorphableModel.builtin()
    for key in ("mean", "id_basis", "exp_basis", "albedo_mean", "albedo_basis", "triangles", "landmark_vertices"):
        assert torch.equal(getattr(builtin, key), getattr(again, key)), key
    assert 3000 < builtin.num_vertices < 10000
    assert builtin.num_id == 40 and builtin.num_exp == len(EXPRESSIONS) == 12
    assert builtin.num_albedo >= 5
    assert builtin.landmark_ids.tolist() == list(range(68))
    assert len(set(builtin.landmark_vertices.tolist())) == 68
    assert builtin.units == "mm" and not builtin.albedo_derived
    assert ((builtin.uv >= 0) & (builtin.uv <= 1)).all()
    assert ((builtin.albedo_mean >= 0) & (builtin.albedo_mean <= 1)).all()


def test_builtin_geometry_is_face_like(builtin):
    lm = builtin.landmarks(torch.zeros(1, 40))[0]
    x, y, z = lm.unbind(1)
    assert int(torch.argmax(z)) == 30, "the nose tip (iBUG 31) is the frontmost landmark"
    assert y[8] < y[57] < y[33] < y[30] < y[27] < y[19], "chin < lower lip < nose base < tip < bridge < brow"
    assert y[36:48].mean() > y[30] and x[36:42].mean() < 0 < x[42:48].mean(), "subject's right eye at -x"
    # Mirror pairs of iBUG points are mirror images in x.
    for a, b in [(0, 16), (36, 45), (39, 42), (48, 54), (31, 35), (17, 26)]:
        assert abs(float(x[a] + x[b])) < 3.0 and abs(float(y[a] - y[b])) < 3.0, (a, b)
    # Consistently wound, and outward (concave eye sockets and nostrils excepted).
    assert consistently_wound(builtin.triangles)
    assert outward_fraction(builtin.mean, builtin.triangles) > 0.9
    extent = builtin.mean.max(0).values - builtin.mean.min(0).values
    assert 130 < extent[0] < 170 and 180 < extent[1] < 220  # millimetres, head-sized


def test_builtin_identity_basis_is_decorrelated_pca(builtin):
    flat = builtin.id_basis.reshape(-1, builtin.num_id).double()
    gram = flat.T @ flat
    off_diagonal = gram - torch.diag(torch.diag(gram))
    assert off_diagonal.abs().max() < 1e-3 * gram.diagonal().max()
    assert (builtin.id_std[:-1] >= builtin.id_std[1:]).all()
    torch.testing.assert_close(flat.norm(dim=0), builtin.id_std.double(), rtol=1e-4, atol=1e-4)


def test_builtin_expressions_are_localised(builtin):
    def landmarks_with(name):
        exp = torch.zeros(1, 12)
        exp[0, EXPRESSIONS.index(name)] = 1.0
        return builtin.landmarks(torch.zeros(1, 40), exp)[0] - builtin.landmarks(torch.zeros(1, 40))[0]

    moved = landmarks_with("jaw_open")
    assert moved[8, 1] < -5 and moved[57, 1] < -3 and moved[19].norm() < 0.1
    moved = landmarks_with("right_eye_closed")
    assert moved[37, 1] < -2 and moved[44].norm() < 0.1
    moved = landmarks_with("brow_raise")
    assert moved[19, 1] > 2 and moved[57].norm() < 0.5
    moved = landmarks_with("smile")
    assert moved[48, 1] > 2 and moved[54, 1] > 2 and moved[8].norm() < 0.5


def test_vertices_and_landmarks_use_the_fused_op(builtin):
    g = torch.Generator().manual_seed(0)
    idc, expc = torch.randn(3, 40, generator=g), torch.randn(3, 12, generator=g)
    rot = torch.linalg.qr(torch.randn(3, 3, 3, generator=g))[0]
    verts = builtin.vertices(idc, expc, rot, torch.ones(3) * 0.5, torch.zeros(3, 3))
    expect = ops.reference.synthesize(
        builtin.mean, builtin.shape_basis, torch.cat([idc, expc], 1), rot, torch.ones(3) * 0.5, torch.zeros(3, 3)
    )
    torch.testing.assert_close(verts, expect, rtol=1e-4, atol=1e-3)
    lm = builtin.landmarks(idc, expc, rot, torch.ones(3) * 0.5, torch.zeros(3, 3))
    torch.testing.assert_close(lm, verts[:, builtin.landmark_vertices])
    with pytest.raises(ValueError, match=r"exp_coeffs must have shape \[B, 12\]"):
        builtin.vertices(idc, expc[:, :5])


def test_to_dtype_keeps_index_tensors(builtin):
    model64 = builtin.to(dtype=torch.float64)
    assert model64.mean.dtype == torch.float64 and model64.triangles.dtype == torch.int32
    assert model64.vertices(torch.zeros(1, 40, dtype=torch.float64)).dtype == torch.float64


def test_pgnface_npz_round_trip(builtin, tmp_path):
    path = tmp_path / "model.npz"
    builtin.save(path)
    loaded = MorphableModel.load(path)
    for key in ("mean", "id_basis", "exp_basis", "albedo_mean", "albedo_basis", "uv", "landmark_ids"):
        torch.testing.assert_close(getattr(loaded, key), getattr(builtin, key))
    assert torch.equal(loaded.triangles, builtin.triangles)
    assert loaded.name == builtin.name and loaded.units == "mm"


def flat(a):
    """[N, 3, ...] -> [3N, ...] in x0, y0, z0, x1, ... order."""
    return a.reshape(a.shape[0] * 3, *a.shape[2:])


def test_bfm2009_mat_with_3ddfa_expression(builtin, tmp_path):
    mean = builtin.mean.double().numpy() * 1000  # um
    id_std = np.linspace(3.0, 1.0, 5)
    pcs = builtin.id_basis[:, :, :5].double().numpy() / builtin.id_std[:5].double().numpy()
    tris_cw = builtin.triangles.numpy()[:, [0, 2, 1]] + 1  # BFM: clockwise, 1-based
    scipy.io.savemat(
        tmp_path / "01_MorphableModel.mat",
        {
            "shapeMU": flat(mean)[:, None],
            "shapePC": flat(pcs),
            "shapeEV": id_std[:, None],
            "texMU": flat(builtin.albedo_mean.double().numpy() * 255)[:, None],
            "texPC": flat(np.ones((mean.shape[0], 3, 2))),
            "texEV": np.array([[10.0], [5.0]]),
            "tl": tris_cw,
        },
    )
    w_exp = builtin.exp_basis[:, :, :3].double().numpy()
    scipy.io.savemat(
        tmp_path / "Model_Exp.mat",
        {
            "w_exp": flat(w_exp),
            "sigma_exp": np.array([2.0, 1.0, 0.5]),
            "mu_exp": flat(np.full_like(mean, 7.0))[:, None],
        },
    )
    lms = builtin.landmark_vertices.numpy()
    morphable = MorphableModel.load(
        tmp_path / "01_MorphableModel.mat", expression=tmp_path / "Model_Exp.mat", landmark_vertices=lms
    )
    torch.testing.assert_close(morphable.mean.double(), torch.from_numpy(mean + 7.0), rtol=1e-6, atol=1e-2)
    torch.testing.assert_close(morphable.id_basis.double(), torch.from_numpy(pcs * id_std), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        morphable.exp_basis.double(), torch.from_numpy(w_exp * [2.0, 1.0, 0.5]), rtol=1e-5, atol=1e-5
    )
    assert torch.equal(morphable.triangles, builtin.triangles), "clockwise BFM triangles are re-wound"
    torch.testing.assert_close(morphable.albedo_mean, builtin.albedo_mean, rtol=1e-5, atol=1e-5)
    assert morphable.albedo_basis.shape[2] == 2 and morphable.landmark_vertices.tolist() == lms.tolist()


def test_deep3dfacerecon_mat(builtin, tmp_path):
    mean = builtin.mean.double().numpy()
    scipy.io.savemat(
        tmp_path / "BFM_model_front.mat",
        {
            "meanshape": flat(mean)[None, :],
            "idBase": flat(builtin.id_basis.double().numpy()),
            "exBase": flat(builtin.exp_basis.double().numpy()),
            "meantex": flat(mean * 0 + 128.0)[None, :],
            "texBase": flat(np.zeros(mean.shape + (4,))),
            "tri": builtin.triangles.numpy() + 1,
            "keypoints": builtin.landmark_vertices.numpy()[None, :] + 1,
        },
    )
    morphable = MorphableModel.load(tmp_path / "BFM_model_front.mat")
    torch.testing.assert_close(morphable.mean, builtin.mean, rtol=0, atol=1e-4)
    assert morphable.landmark_vertices.tolist() == builtin.landmark_vertices.tolist()
    assert morphable.num_id == 40 and morphable.num_exp == 12 and morphable.num_albedo == 4


def test_3ddfa_v2_pkl_with_tri_pkl(builtin, tmp_path):
    mean = builtin.mean.double().numpy()
    lms = builtin.landmark_vertices.numpy()
    keypoints = np.stack([3 * lms, 3 * lms + 1, 3 * lms + 2], 1).reshape(-1)
    with open(tmp_path / "bfm_noneck_v3.pkl", "wb") as f:
        pickle.dump(
            {
                "u": flat(mean)[:, None],
                "w_shp": flat(builtin.id_basis.double().numpy()),
                "w_exp": flat(builtin.exp_basis.double().numpy()),
                "keypoints": keypoints,
            },
            f,
        )
    with open(tmp_path / "tri.pkl", "wb") as f:
        pickle.dump(builtin.triangles.numpy()[:, [0, 2, 1]].T.copy(), f)  # [3, T], clockwise
    morphable = MorphableModel.load(tmp_path / "bfm_noneck_v3.pkl")
    assert torch.equal(morphable.triangles, builtin.triangles)
    assert morphable.landmark_vertices.tolist() == lms.tolist()
    torch.testing.assert_close(morphable.id_basis, builtin.id_basis, rtol=1e-5, atol=1e-5)


def test_real_surrey_model():
    morphable = MorphableModel.load(shared_data_file("sfm3448.npz"))
    assert morphable.num_vertices == 3448 and morphable.num_id == 63 and morphable.num_exp == 6
    assert len(morphable.landmark_ids) == 50 and 30 in morphable.landmark_ids.tolist()
    tip = morphable.landmark_vertices[morphable.landmark_ids.tolist().index(30)]
    assert int(tip) == 114
    assert consistently_wound(morphable.triangles) and outward_fraction(morphable.mean, morphable.triangles) > 0.9
    # No colour model in the file: a derived one, smooth and in range.
    albedo = morphable.albedo(torch.zeros(1, morphable.num_albedo))[0]
    assert morphable.albedo_derived and ((albedo > 0.3) & (albedo < 0.9)).all()
    varied = morphable.albedo(torch.ones(1, morphable.num_albedo))[0]
    assert (varied - albedo).abs().max() > 0.05


def test_real_bfm_mesh_and_landmark_models():
    mesh = MorphableModel.load(shared_data_file("bfm_mesh.npz"))
    data = np.load(shared_data_file("bfm_mesh.npz"))
    assert mesh.num_vertices == 38365 and mesh.triangles.shape[0] == 76073 and mesh.num_id == 0
    assert mesh.triangles[0].tolist() == data["noneck_triangles"][0][[0, 2, 1]].tolist(), "BFM re-wound"
    assert consistently_wound(mesh.triangles) and outward_fraction(mesh.mean, mesh.triangles) > 0.9
    assert mesh.landmark_vertices.tolist() == data["noneck_lm68_idx"].tolist()
    full = MorphableModel.load(shared_data_file("bfm_mesh.npz"), subset="full")
    assert full.num_vertices == 53215
    lm = MorphableModel.load(shared_data_file("bfm_landmarks.npz"))
    assert lm.num_vertices == 68 and lm.num_id == 40 and lm.num_exp == 10 and lm.triangles.shape[0] == 0
    # Units of std: the 3DDFA_V2 std scales the raw basis.
    raw = np.load(shared_data_file("bfm_landmarks.npz"))
    torch.testing.assert_close(
        lm.id_basis[:, :, 0].double(),
        torch.from_numpy(raw["shape_basis"][:, :, 0] * raw["param_std_v2"][12]).double(),
        rtol=1e-5,
        atol=1e-3,
    )


def test_outward_triangles_flips_inward_meshes(builtin):
    inward = builtin.triangles.numpy()[:, [0, 2, 1]]
    assert (outward_triangles(builtin.mean.numpy(), inward) == builtin.triangles.numpy()).all()


def test_bad_model_files(tmp_path, builtin):
    with pytest.raises(FileNotFoundError, match="3DMM file not found: .*nothing.npz"):
        MorphableModel.load(tmp_path / "nothing.npz")
    (tmp_path / "model.obj").write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="unsupported 3DMM file type '.obj'"):
        MorphableModel.load(tmp_path / "model.obj")
    np.savez(tmp_path / "weird.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match="not a known 3DMM .npz layout.*found keys foo"):
        MorphableModel.load(tmp_path / "weird.npz")
    np.savez(tmp_path / "partial.npz", format=np.array("pgnface-3dmm-1"), mean=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="missing id_basis"):
        MorphableModel.load(tmp_path / "partial.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="broken.npz: could not read it"):
        MorphableModel.load(tmp_path / "broken.npz")
    (tmp_path / "broken.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(ValueError, match="broken.pkl"):
        MorphableModel.load(tmp_path / "broken.pkl")
    path = tmp_path / "bad_landmarks.npz"
    builtin.save(path)
    data = dict(np.load(path))
    data["landmark_vertices"] = data["landmark_vertices"] + 100000
    np.savez(path, **data)
    with pytest.raises(ValueError, match=r"landmark vertex indices must lie in \[0, \d+\]"):
        MorphableModel.load(path)
