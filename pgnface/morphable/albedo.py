"""A colour (albedo) model for meshes whose file has none, derived from the mesh.

Mean: a uniform mid skin tone. Basis: a global skin-tone axis (light to dark,
with the warmer/cooler shift real skin shows), a global redness axis, and
smooth per-vertex colour fields: the lowest non-constant eigenvectors of the
mesh's graph Laplacian, which vary slowly over the surface, each modulating
brightness and redness. This is documented as *derived*: it gives plausible,
varied renders for self-supervision and synthetic data, not a real albedo
model.
"""

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

# Mean skin tone and the std of the global axes, in linear RGB [0, 1].
MEAN_SKIN = (0.72, 0.55, 0.46)
TONE_AXIS = (0.16, 0.14, 0.12)  # lighter / darker, slightly warmer when darker
REDNESS_AXIS = (0.05, -0.02, -0.02)
FIELD_STD = 0.035


def laplacian_fields(num_vertices: int, triangles: np.ndarray, count: int) -> np.ndarray:
    """Smooth fields on a mesh: the lowest non-constant eigenvectors of its uniform graph Laplacian.

    Args:
        num_vertices: N.
        triangles: [T, 3] vertex indices.
        count: how many fields.

    Returns:
        [N, count] fields, each scaled to a largest magnitude of 1 (fewer columns
        when the mesh has too few vertices).
    """
    t = np.asarray(triangles, dtype=np.int64)
    rows = np.concatenate([t[:, 0], t[:, 1], t[:, 2], t[:, 1], t[:, 2], t[:, 0]])
    cols = np.concatenate([t[:, 1], t[:, 2], t[:, 0], t[:, 0], t[:, 1], t[:, 2]])
    adjacency = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices,) * 2).tocsr()
    adjacency.data[:] = 1.0
    laplacian = sp.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency
    k = min(count + 1, num_vertices - 1)
    _, vectors = sla.eigsh(laplacian.tocsc(), k=k, sigma=-1e-3, which="LM")
    fields = vectors[:, 1:]  # drop the constant vector
    return fields / np.abs(fields).max(axis=0, keepdims=True)


def with_derived_albedo(morphable, num_fields: int = 8):
    """A copy of a 3DMM with a derived albedo model (see the module docstring).

    Without triangles (landmark-only models) only the two global axes are used.

    Args:
        morphable: the MorphableModel.
        num_fields: how many smooth Laplacian brightness fields to add.

    Returns:
        A MorphableModel with albedo_mean [N, 3], albedo_basis [N, 3, Ka]
        (Ka = 2 + num_fields, or 2), albedo_std [Ka] and albedo_derived True.
    """
    N = morphable.num_vertices
    dtype, device = morphable.mean.dtype, morphable.mean.device
    columns = [np.tile(np.asarray(TONE_AXIS), (N, 1)), np.tile(np.asarray(REDNESS_AXIS), (N, 1))]
    if morphable.triangles.numel() and N > num_fields + 2:
        fields = laplacian_fields(N, morphable.triangles.cpu().numpy(), num_fields)
        for j in range(fields.shape[1]):
            brightness = fields[:, j : j + 1] * FIELD_STD * np.array([[1.0, 0.9, 0.85]])
            columns.append(brightness)
    basis = torch.from_numpy(np.stack(columns, axis=-1)).to(device=device, dtype=dtype)  # [N, 3, Ka]
    mean = torch.tensor(MEAN_SKIN, dtype=dtype, device=device).expand(N, 3).contiguous()
    std = basis.reshape(-1, basis.shape[-1]).abs().amax(0)
    return replace(morphable, albedo_mean=mean, albedo_basis=basis, albedo_std=std, albedo_derived=True, _basis=None)
