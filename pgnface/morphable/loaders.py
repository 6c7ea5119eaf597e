"""Readers for 3DMM files. ``MorphableModel.load(path)`` picks the reader from the file.

Supported files:

- **pgnface .npz** (``MorphableModel.save`` writes it): a ``format`` entry equal to
  ``"pgnface-3dmm-1"`` and ``mean`` [N,3], ``id_basis`` [N,3,Ki], ``id_std``
  [Ki], ``exp_basis`` [N,3,Ke], ``exp_std`` [Ke], ``triangles`` [T,3]
  (0-based), ``landmark_vertices`` [L], ``landmark_ids`` [L] (iBUG-68 indices,
  0-based); optional ``albedo_mean`` [N,3] (RGB in [0,1]), ``albedo_basis``
  [N,3,Ka], ``albedo_std`` [Ka], ``uv`` [N,2], ``name``, ``units``. Bases are
  stored already multiplied by their standard deviations.
- **Surrey Face Model** as converted in ../shared/data (``sfm3448.npz``: keys
  ``mean``, ``basis``, ``std``, ``triangles``, ``ibug68_idx``,
  ``expr_blendshapes``, ``texcoords``): identity in units of std, the 6
  expression blendshapes as the expression basis (coefficient 1 = the full
  blendshape), the 50 defined landmarks. Millimetres.
- **BFM mean mesh** as converted in ../shared/data (``bfm_mesh.npz``): a
  model with no shape basis (Ki = Ke = 0) of the 3DDFA_V2 no-neck mesh
  (default) or the full 53,215-vertex cut (``subset="full"``). Micrometres.
- **BFM at 68 landmarks** as converted in ../shared/data
  (``bfm_landmarks.npz``): a landmark-only model (no triangles) with 3DDFA's
  40 identity and 10 expression components, scaled by the 3DDFA_V2 training
  parameter std so that coefficients are in units of std.
- **Basel Face Model 2009** ``01_MorphableModel.mat`` (``shapeMU``,
  ``shapePC``, ``shapeEV``, ``texMU``, ``texPC``, ``texEV``, ``tl`` 1-based),
  with an optional expression file (``expression=``) in the 3DDFA layout
  (``w_exp`` [3N,Ke], optional ``mu_exp`` [3N,1] added to the mean and
  ``sigma_exp`` [Ke] std) and optional ``landmark_vertices`` (68 0-based
  indices; the BFM file itself defines none). Colours are divided by 255.
- **Deep3DFaceRecon** ``BFM_model_front.mat`` (``meanshape``, ``idBase``,
  ``exBase``, ``meantex``, ``texBase``, ``tri`` and ``keypoints`` 1-based).
- **3DDFA_V2** ``bfm_noneck_v3.pkl`` (a pickled dict with ``u``, ``w_shp``,
  ``w_exp``, ``keypoints`` as 3*vertex flat indices, and ``tri`` [3,T], or
  a ``tri.pkl`` next to it), coefficients in the file's own units (std 1).

Every reader returns triangles counter-clockwise seen from outside (files that
wind the other way, like the BFM, are flipped) and validates indices. A missing
file raises FileNotFoundError, a malformed one ValueError naming the file and
what was expected.
"""

import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pgnface.morphable.array_pickle import load_array_pickle

FORMAT_TAG = "pgnface-3dmm-1"


def _require(data, keys: Sequence[str], path, layout: str):
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(
            f"{path}: not a valid {layout} file: missing {', '.join(missing)} "
            f"(found: {', '.join(sorted(map(str, data.keys())))})"
        )


def _tensor(array, dtype=torch.float32):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array))).to(dtype)


def outward_triangles(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles re-wound so their normals point away from the mesh's centroid (the majority vote).

    Works for closed heads and for open face masks, whose centroid lies behind the surface.
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    if len(triangles) == 0:
        return triangles.astype(np.int32)
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    normals = np.cross(b - a, c - a)
    outward = (a + b + c) / 3 - v.mean(0)
    if (normals * outward).sum() < 0:
        triangles = triangles[:, [0, 2, 1]]
    return np.ascontiguousarray(triangles, dtype=np.int32)


def _flat_to_vertices(flat, name, path):
    """[3N] or [3N, K] flat x0,y0,z0,x1,... -> [N, 3] or [N, 3, K]."""
    a = np.asarray(flat, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2 and a.shape[0] == 1 and a.shape[1] % 3 == 0:
        a = a[0]
    if a.shape[0] % 3:
        raise ValueError(f"{path}: {name} must have 3N rows (x, y, z per vertex), got shape {a.shape}")
    return a.reshape(a.shape[0] // 3, 3, *a.shape[1:])


def _model(
    path,
    mean,
    id_basis,
    exp_basis,
    triangles,
    lm_vertices,
    lm_ids,
    units,
    *,
    id_std=None,
    exp_std=None,
    albedo_mean=None,
    albedo_basis=None,
    albedo_std=None,
    uv=None,
    name=None,
    fix_winding=True,
):
    mean = np.asarray(mean, dtype=np.float64)
    tris = outward_triangles(mean, triangles) if fix_winding else np.asarray(triangles, np.int32)
    N = mean.shape[0]
    lm_vertices = np.asarray(lm_vertices, dtype=np.int64).reshape(-1)
    if lm_vertices.size and (lm_vertices.min() < 0 or lm_vertices.max() >= N):
        raise ValueError(
            f"{path}: landmark vertex indices must lie in [0, {N - 1}], got [{lm_vertices.min()}, {lm_vertices.max()}]"
        )
    return dict(
        mean=_tensor(mean),
        id_basis=_tensor(id_basis),
        exp_basis=_tensor(exp_basis),
        triangles=_tensor(tris, torch.int32),
        landmark_vertices=_tensor(lm_vertices, torch.int64),
        landmark_ids=_tensor(lm_ids, torch.int64),
        albedo_mean=None if albedo_mean is None else _tensor(albedo_mean),
        albedo_basis=None if albedo_basis is None else _tensor(albedo_basis),
        uv=None if uv is None else _tensor(uv),
        id_std=None if id_std is None else _tensor(id_std),
        exp_std=None if exp_std is None else _tensor(exp_std),
        albedo_std=None if albedo_std is None else _tensor(albedo_std),
        name=name or Path(path).name,
        units=units,
    )


def read_fields(path, *, expression=None, landmark_vertices=None, subset: str = "noneck") -> dict:
    """Reads a 3DMM file of any supported layout (see the module docstring).

    Args:
        path: the model file (.npz, .mat or .pkl).
        expression: BFM2009 only: an expression-basis .mat in the 3DDFA layout.
        landmark_vertices: BFM2009 only: 68 0-based iBUG landmark vertex indices.
        subset: bfm_mesh.npz only: "noneck" (38,365 vertices) or "full" (53,215).

    Returns:
        The keyword arguments of ``MorphableModel`` (tensors, name, units).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a supported 3DMM layout or is inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"3DMM file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            return _load_npz(path, subset)
        if suffix == ".mat":
            return _load_mat(path, expression, landmark_vertices)
        if suffix == ".pkl":
            return _load_3ddfa_pkl(path)
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        ImportError,
    ) as err:
        raise ValueError(f"{path}: could not read it as a 3DMM file ({type(err).__name__}: {err})") from err
    raise ValueError(f"{path}: unsupported 3DMM file type {suffix!r}; expected .npz, .mat or .pkl")


def _load_npz(path, subset):
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = dict(archive)
    except (ValueError, OSError) as err:  # not a zip of plain arrays
        raise ValueError(f"{path}: could not read it as a .npz of arrays ({err})") from err
    if "format" in data:
        if str(data["format"]) != FORMAT_TAG:
            raise ValueError(f"{path}: unknown pgnface model format {str(data['format'])!r}, expected {FORMAT_TAG!r}")
        return _load_pgnface_npz(path, data)
    if "ibug68_idx" in data and "basis" in data:
        return _load_sfm(path, data)
    if "noneck_idx" in data:
        return _load_bfm_mesh(path, data, subset)
    if "shape_basis" in data and "exp_basis" in data:
        return _load_bfm_landmarks(path, data)
    raise ValueError(
        f"{path}: not a known 3DMM .npz layout: expected a pgnface model (a 'format' entry), "
        f"the Surrey model (basis, ibug68_idx), bfm_mesh.npz (noneck_idx) or bfm_landmarks.npz "
        f"(shape_basis, exp_basis); found keys {', '.join(sorted(data))}"
    )


def _load_pgnface_npz(path, data):
    _require(
        data,
        ["mean", "id_basis", "exp_basis", "triangles", "landmark_vertices", "landmark_ids"],
        path,
        "pgnface .npz model",
    )
    get = data.get
    return _model(
        path,
        data["mean"],
        data["id_basis"],
        data["exp_basis"],
        data["triangles"],
        data["landmark_vertices"],
        data["landmark_ids"],
        str(get("units", "unknown")),
        id_std=get("id_std"),
        exp_std=get("exp_std"),
        albedo_mean=get("albedo_mean"),
        albedo_basis=get("albedo_basis"),
        albedo_std=get("albedo_std"),
        uv=get("uv"),
        name=str(get("name", path.name)),
    )


def write_npz(morphable, path) -> None:
    """Writes a ``MorphableModel`` in the pgnface .npz format (see the module docstring)."""
    arrays = {"format": np.array(FORMAT_TAG), "name": np.array(morphable.name), "units": np.array(morphable.units)}
    for key in (
        "mean",
        "id_basis",
        "exp_basis",
        "triangles",
        "landmark_vertices",
        "landmark_ids",
        "albedo_mean",
        "albedo_basis",
        "albedo_std",
        "uv",
        "id_std",
        "exp_std",
    ):
        value = getattr(morphable, key)
        if value is not None:
            arrays[key] = value.detach().cpu().numpy()
    np.savez_compressed(path, **arrays)


def _load_sfm(path, data):
    _require(data, ["mean", "basis", "std", "triangles", "ibug68_idx"], path, "Surrey Face Model .npz")
    mean, basis, std = data["mean"], data["basis"], data["std"]
    idx = np.asarray(data["ibug68_idx"]).astype(np.int64)
    defined = np.nonzero(idx >= 0)[0]
    exp = data.get("expr_blendshapes", np.zeros(mean.shape + (0,)))
    return _model(
        path,
        mean,
        basis * std,
        exp,
        data["triangles"],
        idx[defined],
        defined,
        "mm",
        id_std=std,
        exp_std=np.ones(exp.shape[-1]),
        uv=data.get("texcoords"),
        name="Surrey Face Model 3448 (" + path.name + ")",
    )


def _load_bfm_mesh(path, data, subset):
    if subset == "noneck":
        _require(data, ["noneck_mean", "noneck_triangles", "noneck_lm68_idx"], path, "bfm_mesh.npz")
        mean, tris, lms = data["noneck_mean"], data["noneck_triangles"], data["noneck_lm68_idx"]
        uv = data["uv"][data["noneck_idx"]] if "uv" in data else None
    elif subset == "full":
        _require(data, ["mean", "triangles", "lm68_idx"], path, "bfm_mesh.npz")
        mean, tris, lms, uv = data["mean"], data["triangles"], data["lm68_idx"], data.get("uv")
    else:
        raise ValueError(f"subset must be 'noneck' or 'full', got {subset!r}")
    N = mean.shape[0]
    empty = np.zeros((N, 3, 0))
    return _model(
        path, mean, empty, empty, tris, lms, np.arange(68), "um", uv=uv, name=f"BFM mean mesh, {subset} ({path.name})"
    )


def _load_bfm_landmarks(path, data):
    _require(data, ["mean", "shape_basis", "exp_basis"], path, "bfm_landmarks.npz")
    std = data.get("param_std_v2")
    id_std = std[12:52] if std is not None else np.ones(data["shape_basis"].shape[-1])
    exp_std = std[52:62] if std is not None else np.ones(data["exp_basis"].shape[-1])
    return _model(
        path,
        data["mean"],
        data["shape_basis"] * id_std,
        data["exp_basis"] * exp_std,
        np.zeros((0, 3), np.int32),
        np.arange(68),
        np.arange(68),
        "um",
        id_std=id_std,
        exp_std=exp_std,
        name=f"BFM (3DDFA) at 68 landmarks ({path.name})",
    )


def _loadmat(path):
    import scipy.io  # noqa: PLC0415 (optional: only BFM .mat files need scipy)

    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5) files
        raise ValueError(
            f"{path}: MATLAB v7.3 files are not supported; re-save it with save(..., '-v7') ({err})"
        ) from err


def _load_mat(path, expression, landmark_vertices):
    data = _loadmat(path)
    if "shapeMU" in data:
        return _load_bfm2009(path, data, expression, landmark_vertices)
    if "meanshape" in data and "idBase" in data:
        return _load_deep3d(path, data)
    raise ValueError(
        f"{path}: not a known 3DMM .mat layout: expected BFM2009 (shapeMU, shapePC, shapeEV, "
        f"tl) or Deep3DFaceRecon (meanshape, idBase, exBase, tri, keypoints)"
    )


def _load_bfm2009(path, data, expression, landmark_vertices):
    _require(data, ["shapeMU", "shapePC", "shapeEV", "tl"], path, "BFM2009 01_MorphableModel.mat")
    mean = _flat_to_vertices(data["shapeMU"], "shapeMU", path)
    id_std = np.asarray(data["shapeEV"], dtype=np.float64).reshape(-1)
    id_basis = _flat_to_vertices(data["shapePC"], "shapePC", path) * id_std
    N = mean.shape[0]
    tris = np.asarray(data["tl"], dtype=np.int64) - 1
    albedo_mean = albedo_basis = albedo_std = None
    if "texMU" in data and "texPC" in data and "texEV" in data:
        albedo_std = np.asarray(data["texEV"], dtype=np.float64).reshape(-1) / 255.0
        albedo_mean = _flat_to_vertices(data["texMU"], "texMU", path) / 255.0
        albedo_basis = _flat_to_vertices(data["texPC"], "texPC", path) * albedo_std
    exp_basis, exp_std = np.zeros((N, 3, 0)), np.zeros(0)
    if expression is not None:
        exp = _loadmat(Path(expression)) if Path(expression).is_file() else None
        if exp is None:
            raise FileNotFoundError(f"expression basis file not found: {expression}")
        _require(exp, ["w_exp"], expression, "3DDFA expression .mat")
        exp_basis = _flat_to_vertices(exp["w_exp"], "w_exp", expression)
        if exp_basis.shape[0] != N:
            raise ValueError(f"{expression}: w_exp has {exp_basis.shape[0]} vertices, the model {N}")
        exp_std = (
            np.asarray(exp["sigma_exp"], dtype=np.float64).reshape(-1)
            if "sigma_exp" in exp
            else np.ones(exp_basis.shape[-1])
        )
        exp_basis = exp_basis * exp_std
        if "mu_exp" in exp:
            mean = mean + _flat_to_vertices(exp["mu_exp"], "mu_exp", expression)
    lms = np.zeros(0, np.int64) if landmark_vertices is None else np.asarray(landmark_vertices, np.int64)
    if lms.size not in (0, 68):
        raise ValueError(f"landmark_vertices must hold 68 indices, got {lms.size}")
    return _model(
        path,
        mean,
        id_basis,
        exp_basis,
        tris,
        lms,
        np.arange(lms.size),
        "um",
        id_std=id_std,
        exp_std=exp_std,
        albedo_mean=albedo_mean,
        albedo_basis=albedo_basis,
        albedo_std=albedo_std,
        name=f"BFM2009 ({path.name})",
    )


def _load_deep3d(path, data):
    _require(data, ["meanshape", "idBase", "exBase", "tri"], path, "Deep3DFaceRecon BFM_model_front.mat")
    mean = _flat_to_vertices(data["meanshape"], "meanshape", path)
    id_basis = _flat_to_vertices(data["idBase"], "idBase", path)
    exp_basis = _flat_to_vertices(data["exBase"], "exBase", path)
    tris = np.asarray(data["tri"], dtype=np.int64) - 1
    lms = (np.asarray(data["keypoints"], dtype=np.int64).reshape(-1) - 1) if "keypoints" in data else np.zeros(0)
    albedo_mean = albedo_basis = None
    if "meantex" in data and "texBase" in data:
        albedo_mean = _flat_to_vertices(data["meantex"], "meantex", path) / 255.0
        albedo_basis = _flat_to_vertices(data["texBase"], "texBase", path) / 255.0
    return _model(
        path,
        mean,
        id_basis,
        exp_basis,
        tris,
        lms,
        np.arange(lms.size),
        "mm",
        albedo_mean=albedo_mean,
        albedo_basis=albedo_basis,
        name=f"Deep3DFaceRecon BFM ({path.name})",
    )


def _load_3ddfa_pkl(path):
    data = load_array_pickle(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a pickled dict (3DDFA_V2 bfm_noneck_v3.pkl), got {type(data).__name__}")
    _require(data, ["u", "w_shp", "w_exp", "keypoints"], path, "3DDFA_V2 bfm_noneck_v3.pkl")
    mean = _flat_to_vertices(data["u"], "u", path)
    id_basis = _flat_to_vertices(data["w_shp"], "w_shp", path)
    exp_basis = _flat_to_vertices(data["w_exp"], "w_exp", path)
    if "tri" in data:
        tris = np.asarray(data["tri"])
    else:
        tri_path = path.with_name("tri.pkl")
        if not tri_path.is_file():
            raise ValueError(f"{path}: no 'tri' entry and no tri.pkl next to it")
        tris = np.asarray(load_array_pickle(tri_path))
    if tris.shape[0] == 3 and tris.shape[1] != 3:
        tris = tris.T
    keypoints = np.asarray(data["keypoints"], dtype=np.int64).reshape(-1)
    lms = keypoints[0::3] // 3 if keypoints.size == 204 else keypoints
    return _model(
        path,
        mean,
        id_basis,
        exp_basis,
        tris,
        lms,
        np.arange(lms.size),
        "um",
        id_std=np.ones(id_basis.shape[-1]),
        exp_std=np.ones(exp_basis.shape[-1]),
        name=f"3DDFA_V2 BFM ({path.name})",
    )
