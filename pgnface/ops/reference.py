"""Readable pure-PyTorch versions of every pgnface op.

These are the ground truth the tests hold the CPU and CUDA kernels against
(values and gradients, via ordinary autograd) and the baselines the
benchmarks compare with. They favour clarity over speed and memory.
"""

from typing import Optional

import torch


def synthesize(
    mean: torch.Tensor,
    basis: torch.Tensor,
    coeffs: torch.Tensor,
    rotation: Optional[torch.Tensor] = None,
    scale: Optional[torch.Tensor] = None,
    translation: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reference of pgnface.ops.synthesize: s * R (mean + basis @ c) + t.

    Args:
        mean: [N, 3] mean shape.
        basis: [N, 3, K] basis.
        coeffs: [B, K] coefficients.
        rotation: [B, 3, 3] or None.
        scale: [B] or None.
        translation: [B, 3] or None.

    Returns:
        [B, N, 3].
    """
    shape = mean + torch.einsum("ndk,bk->bnd", basis, coeffs)  # [B, N, 3]
    if rotation is not None:
        shape = shape @ rotation.transpose(1, 2)
    if scale is not None:
        shape = shape * scale[:, None, None]
    if translation is not None:
        shape = shape + translation[:, None, :]
    return shape


# --- rasterizer ------------------------------------------------------------------
# Follows the conventions of csrc/rasterize/rasterize_kernel.h step by step, so
# that coverage and the depth test agree with the kernels exactly; everything
# is vectorised over pixels x triangles, so keep images and meshes small.

_SUBPIXEL = 256
_GUARD_BAND = 1048576.0
_MIN_W = {torch.float32: 2.0**-32, torch.float64: 2.0**-256}
_CULL = {"none": 0, "back": 1, "front": 2}


def _screen(pos: torch.Tensor, height: int, width: int):
    """Screen X, Y (pixels), z/w, fixed-point X, Y and validity of [N, 4] clip positions.

    A vertex is valid when it is finite, w >= _MIN_W and it lands within
    +-_GUARD_BAND pixels; triangles using an invalid vertex are culled.
    """
    x, y, z, w = pos.unbind(-1)
    valid = (w >= _MIN_W[pos.dtype]) & torch.isfinite(pos).all(-1)
    w_safe = torch.where(valid, w, torch.ones_like(w))
    X = ((x / w_safe) + 1) * (width * 0.5)
    Y = ((y / w_safe) + 1) * (height * 0.5)
    valid = valid & (X.abs() <= _GUARD_BAND) & (Y.abs() <= _GUARD_BAND)
    X = torch.where(valid, X, torch.zeros_like(X))
    Y = torch.where(valid, Y, torch.zeros_like(Y))
    zeta = z / w_safe
    fx = torch.round(X.detach() * _SUBPIXEL).long()
    fy = torch.round(Y.detach() * _SUBPIXEL).long()
    return X, Y, zeta, fx, fy, valid


def _edge(ax, ay, bx, by, qx, qy):
    return (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)


def _owns_edge(dx, dy):
    return (dy > 0) | ((dy == 0) & (dx > 0))


def rasterize(pos: torch.Tensor, tris: torch.Tensor, resolution, cull: str = "none"):
    """Reference of pgnface.ops.rasterize (small images only: memory is O(H W T)).

    Args:
        pos: [B, N, 4] clip-space positions.
        tris: [T, 3] integer vertex indices.
        resolution: (height, width), or one int.
        cull: "none", "back" or "front".

    Returns:
        (tri_id [B,H,W] int32, bary [B,H,W,3], depth [B,H,W]); bary and depth
        differentiable w.r.t. pos.
    """
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    tris = tris.long()
    B, T = pos.shape[0], tris.shape[0]
    device, dtype = pos.device, pos.dtype
    if T == 0:  # nothing to draw
        return (
            torch.full((B, height, width), -1, dtype=torch.int32, device=device),
            pos.new_zeros((B, height, width, 3)),
            pos.new_full((B, height, width), float("inf")),
        )
    rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    qx_fixed = (cols.reshape(-1) * _SUBPIXEL + _SUBPIXEL // 2)[:, None]
    qy_fixed = (rows.reshape(-1) * _SUBPIXEL + _SUBPIXEL // 2)[:, None]
    qx = (cols.reshape(-1).to(dtype) + 0.5)[:, None]
    qy = (rows.reshape(-1).to(dtype) + 0.5)[:, None]
    tri_ids, barys, depths = [], [], []
    for b in range(B):
        X, Y, zeta, fx, fy, valid = _screen(pos[b], height, width)
        F, G = fx[tris], fy[tris]  # [T, 3]
        area = _edge(F[:, 0], G[:, 0], F[:, 1], G[:, 1], F[:, 2], G[:, 2])
        ok = valid[tris].all(1) & (area != 0)
        if _CULL[cull] == 1:  # front-facing = counter-clockwise in the image = negative area
            ok &= area < 0
        elif _CULL[cull] == 2:
            ok &= area > 0
        sign = torch.where(area > 0, 1, -1)
        inside = ok[None, :].expand(qx.shape[0], T).clone()
        Xt, Yt, Zt = X.detach()[tris], Y.detach()[tris], zeta.detach()[tris]
        e = []
        for k in range(3):
            a, c = (k + 1) % 3, (k + 2) % 3
            e_fixed = sign * _edge(F[:, a], G[:, a], F[:, c], G[:, c], qx_fixed, qy_fixed)
            owns = _owns_edge(sign * (F[:, c] - F[:, a]), sign * (G[:, c] - G[:, a]))
            inside &= (e_fixed > 0) | ((e_fixed == 0) & owns)
            e.append(_edge(Xt[:, a], Yt[:, a], Xt[:, c], Yt[:, c], qx, qy))
        A = (e[0] + e[1]) + e[2]
        lam = [ek / A for ek in e]
        depth_all = ((lam[0] * Zt[:, 0] + lam[1] * Zt[:, 1]) + lam[2] * Zt[:, 2]) + 0.0
        inside &= (A != 0) & torch.isfinite(depth_all)
        key = torch.where(inside, depth_all.float(), torch.full_like(depth_all, float("inf"), dtype=torch.float32))
        best = torch.argmin(key, dim=1)  # first minimum = lowest triangle id on ties
        hit = inside.any(1)
        tri_id = torch.where(hit, best, torch.full_like(best, -1))

        # Differentiable barycentrics and depth of the winning triangle.
        t = best.clamp(min=0)
        v = tris[t]  # [P, 3]
        Xp, Yp, Zp, Wp = X[v], Y[v], zeta[v], pos[b, :, 3][v]
        ep = torch.stack(
            [
                _edge(Xp[:, 1], Yp[:, 1], Xp[:, 2], Yp[:, 2], qx[:, 0], qy[:, 0]),
                _edge(Xp[:, 2], Yp[:, 2], Xp[:, 0], Yp[:, 0], qx[:, 0], qy[:, 0]),
                _edge(Xp[:, 0], Yp[:, 0], Xp[:, 1], Yp[:, 1], qx[:, 0], qy[:, 0]),
            ],
            dim=1,
        )
        Ap = ep.sum(1, keepdim=True)
        Ap = torch.where(hit[:, None], Ap, torch.ones_like(Ap))
        lam_p = ep / Ap
        u = lam_p / torch.where(hit[:, None], Wp, torch.ones_like(Wp))
        bary = u / u.sum(1, keepdim=True)
        depth = (lam_p * Zp).sum(1)
        bary = torch.where(hit[:, None], bary, torch.zeros_like(bary))
        depth = torch.where(hit, depth, torch.full_like(depth, float("inf")))
        tri_ids.append(tri_id.to(torch.int32).reshape(height, width))
        barys.append(bary.reshape(height, width, 3))
        depths.append(depth.reshape(height, width))
    if B == 0:
        return (
            torch.empty((0, height, width), dtype=torch.int32, device=device),
            pos.new_empty((0, height, width, 3)),
            pos.new_empty((0, height, width)),
        )
    return torch.stack(tri_ids), torch.stack(barys), torch.stack(depths)


def interpolate(attr: torch.Tensor, tri_id: torch.Tensor, bary: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    """Reference of pgnface.ops.interpolate.

    Args:
        attr: [B, N, C] or [N, C] per-vertex attributes.
        tri_id: [B, H, W] triangle per pixel (-1 empty).
        bary: [B, H, W, 3] barycentrics.
        tris: [T, 3] vertex indices.

    Returns:
        [B, H, W, C], zero where tri_id < 0.
    """
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    attr = attr.expand(tri_id.shape[0], -1, -1)
    if tris.shape[0] == 0:  # no triangles: nothing is hit
        return attr.new_zeros(tri_id.shape + (attr.shape[-1],))
    hit = tri_id >= 0
    v = tris.long()[tri_id.long().clamp(min=0)]  # [B, H, W, 3]
    gathered = (
        torch.stack([torch.stack([attr[b][v[b, ..., k]] for k in range(3)], dim=-2) for b in range(tri_id.shape[0])])
        if tri_id.shape[0]
        else attr.new_zeros(tri_id.shape + (3, attr.shape[-1]))
    )
    out = (bary.unsqueeze(-1) * gathered).sum(-2)
    return torch.where(hit.unsqueeze(-1), out, torch.zeros_like(out))


def svd3x3(M: torch.Tensor):
    """Reference of pgnface.ops.svd3x3 via torch.linalg.svd.

    Args:
        M: [B, 3, 3].

    Returns:
        (U [B, 3, 3], S [B, 3], V [B, 3, 3]) with M = U diag(S) V^T. The signs
        of matching columns of U and V may differ from pgnface's.
    """
    U, S, Vh = torch.linalg.svd(M)
    return U, S, Vh.mT


def similarity_align(
    src: torch.Tensor,
    dst: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    estimate_scale: bool = True,
):
    """Reference of pgnface.ops.similarity_align (weighted Umeyama, torch.linalg.svd).

    Args:
        src: [B, P, 3] source points.
        dst: [B, P, 3] target points.
        weights: [B, P] non-negative, or None for all ones.
        estimate_scale: fit the scale (else it is 1).

    Returns:
        (scale [B], R [B, 3, 3], t [B, 3]) minimising
        sum_i w_i |scale R src_i + t - dst_i|^2, with the same conventions as
        the op for degenerate items (R = I, scale = 1, t = mu_dst - mu_src).
    """
    if weights is None:
        weights = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device)
    W = weights.sum(1)  # [B]
    inv_w = torch.where(W > 0, 1.0 / torch.where(W > 0, W, torch.ones_like(W)), torch.zeros_like(W))
    mu_x = torch.einsum("bp,bpd->bd", weights, src) * inv_w[:, None]
    mu_y = torch.einsum("bp,bpd->bd", weights, dst) * inv_w[:, None]
    xc = src - mu_x[:, None]
    yc = dst - mu_y[:, None]
    cov = torch.einsum("bp,bpi,bpj->bij", weights, yc, xc) * inv_w[:, None, None]
    var_x = torch.einsum("bp,bpd->b", weights, xc * xc) * inv_w
    eps = torch.finfo(src.dtype).eps
    degenerate = (W <= 0) | ~(var_x > 256 * eps * eps * (mu_x * mu_x).sum(1)) | ~(var_x > 0)
    U, D, Vh = torch.linalg.svd(cov)
    d = torch.where(torch.det(U) * torch.det(Vh) < 0, -1.0, 1.0).to(src.dtype)
    flip = torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=1)  # [B, 3]
    R = (U * flip[:, None, :]) @ Vh
    if estimate_scale:
        safe_var = torch.where(degenerate, torch.ones_like(var_x), var_x)
        scale = (D * flip).sum(1) / safe_var
    else:
        scale = torch.ones_like(var_x)
    eye = torch.eye(3, dtype=src.dtype, device=src.device).expand_as(R)
    R = torch.where(degenerate[:, None, None], eye, R)
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    t = mu_y - scale[:, None] * (R @ mu_x[:, :, None])[..., 0]
    return scale, R, t
