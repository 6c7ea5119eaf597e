"""Vertex normals and second-order spherical-harmonics (SH) Lambertian shading.

SH lighting uses the 9 real SH basis functions of the surface normal with
the Lambertian (clamped-cosine) convolution folded in, so that
``irradiance(n) = sum_k gamma_k * H_k(n)`` per colour channel; 27 numbers
(9 x RGB) per image. Normals are expressed in the *view frame*: x right, y up,
z towards the camera. ``gamma = [1, 0, ...]`` is uniform light of irradiance 1
(the ambient term is scaled so that H_0 = 1); a light from the camera adds to
gamma_2 (the z-linear term).
"""

import math

import torch

# Lambertian-convolved SH constants: A_l * Y_lm normalisation, with the ambient
# term rescaled to 1 so that gamma_0 is the uniform irradiance.
_C0 = 1.0
_C1 = (2.0 * math.pi / 3.0) * math.sqrt(3.0 / (4.0 * math.pi)) / (math.pi * math.sqrt(1.0 / (4.0 * math.pi)))
_C2 = (math.pi / 4.0) * 0.5 * math.sqrt(15.0 / math.pi) / (math.pi * math.sqrt(1.0 / (4.0 * math.pi)))
_C3 = (math.pi / 4.0) * 0.25 * math.sqrt(5.0 / math.pi) / (math.pi * math.sqrt(1.0 / (4.0 * math.pi)))


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, differentiable.

    Args:
        vertices: [B, N, 3] positions.
        triangles: [T, 3] int, counter-clockwise seen from outside.

    Returns:
        [B, N, 3] unit normals pointing out of the surface (zero-area neighbourhoods give 0).
    """
    tris = triangles.long()
    v0, v1, v2 = vertices[:, tris[:, 0]], vertices[:, tris[:, 1]], vertices[:, tris[:, 2]]
    face = torch.cross(v1 - v0, v2 - v0, dim=-1)  # |face| = 2 * area
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals = normals.index_add(1, tris[:, k], face)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The Lambertian-convolved spherical-harmonics basis H_k(n), 9 bands (l <= 2).

    Args:
        normals: [..., 3] unit normals in the view frame.

    Returns:
        [..., 9] basis values.
    """
    x, y, z = normals.unbind(-1)
    one = torch.ones_like(x)
    return torch.stack(
        [
            _C0 * one,
            _C1 * y,
            _C1 * z,
            _C1 * x,
            _C2 * x * y,
            _C2 * y * z,
            _C3 * (3 * z * z - 1),
            _C2 * x * z,
            0.5 * _C2 * (x * x - y * y),
        ],
        -1,
    )


def sh_irradiance(normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Irradiance at normals under SH lighting.

    Args:
        normals: [B, N, 3] unit normals in the view frame.
        gamma: [B, 9, 3] SH coefficients per colour channel.

    Returns:
        [B, N, 3] irradiance.

    Raises:
        ValueError: gamma is not [B, 9, 3].
    """
    if gamma.dim() != 3 or gamma.shape[1:] != (9, 3):
        raise ValueError(f"gamma (SH lighting) must have shape [B, 9, 3], got {list(gamma.shape)}")
    return torch.einsum("bnk,bkc->bnc", sh_basis(normals), gamma)


def directional_gamma(
    batch: int,
    ambient: float = 0.6,
    diffuse: float = 0.6,
    direction=(0.0, 0.0, 1.0),
    colour=(1.0, 1.0, 1.0),
    dtype=torch.float32,
    device=None,
) -> torch.Tensor:
    """SH coefficients of ambient light plus one distant light (first order).

    Args:
        batch: B.
        ambient: ambient intensity.
        diffuse: intensity of the distant light.
        direction: towards the light, view frame (x right, y up, z to the camera).
        colour: RGB of both lights.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        [B, 9, 3] SH coefficients.
    """
    d = torch.nn.functional.normalize(torch.tensor(direction, dtype=torch.float64), dim=0)
    gamma = torch.zeros(9, dtype=torch.float64)
    gamma[0] = ambient
    # A clamped cosine lobe max(0, n.d) has SH projection 1/4 (l=0), 1/2 (l=1) in these units.
    gamma[0] += diffuse * 0.25
    gamma[1], gamma[2], gamma[3] = (diffuse * 0.5 / _C1 * d[1], diffuse * 0.5 / _C1 * d[2], diffuse * 0.5 / _C1 * d[0])
    rgb = torch.tensor(colour, dtype=torch.float64)
    return (gamma[:, None] * rgb).to(dtype=dtype, device=device).expand(batch, 9, 3).contiguous()
