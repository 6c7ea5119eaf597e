"""Cameras, SH shading and the face renderer against analytic images; gradients; visibility."""

import math

import torch

from pgnface.morphable import (
    FRONTAL,
    MorphableModel,
    PerspectiveCamera,
    WeakPerspectiveCamera,
    directional_gamma,
    render,
    sh_basis,
    vertex_normals,
)


def uv_sphere(rows=90, cols=180, radius=1.0):
    """A closed UV sphere, counter-clockwise seen from outside. [N, 3], [T, 3]."""
    theta = torch.linspace(0, math.pi, rows + 1, dtype=torch.float64)[1:-1]
    phi = torch.linspace(0, 2 * math.pi, cols + 1, dtype=torch.float64)[:-1]
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    verts = (
        torch.cat(
            [torch.tensor([[0, 1.0, 0]], dtype=torch.float64), ring, torch.tensor([[0, -1.0, 0]], dtype=torch.float64)]
        )
        * radius
    )
    idx = torch.arange(ring.shape[0]).reshape(rows - 1, cols) + 1
    nxt = idx.roll(-1, dims=1)
    tris = [torch.stack([torch.zeros(cols, dtype=torch.long), nxt[0], idx[0]], -1)]
    tris.append(torch.stack([idx[:-1], nxt[:-1], nxt[1:]], -1).reshape(-1, 3))
    tris.append(torch.stack([idx[:-1], nxt[1:], idx[1:]], -1).reshape(-1, 3))
    south = verts.shape[0] - 1
    tris.append(torch.stack([torch.full((cols,), south), idx[-1], nxt[-1]], -1))
    tris = torch.cat(tris)
    # Orient outwards (normals . position > 0).
    v = verts[tris]
    if (torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=1) * v.mean(1)).sum() < 0:
        tris = tris[:, [0, 2, 1]]
    return verts.float(), tris.int()


def frontal_camera(B, scale, centre, dtype=torch.float32):
    return WeakPerspectiveCamera(
        scale=torch.full((B,), float(scale), dtype=dtype),
        rotation=FRONTAL.to(dtype).expand(B, 3, 3),
        translation=torch.tensor([[centre, centre, 1000.0]], dtype=dtype).expand(B, 3),
    )


def test_flat_plane_matches_the_analytic_colour():
    # A square facing the camera: constant normal, so the image is constant inside.
    verts = torch.tensor([[[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]]])
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    albedo = torch.tensor([0.8, 0.5, 0.3]).expand(4, 3)
    gamma = torch.randn(1, 9, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    gamma[0, 0] += 1.0
    background = torch.tensor([0.1, 0.2, 0.9])
    out = render(verts, tris, albedo, gamma, frontal_camera(1, 10.0, 16.0), 32, background=background)
    normal = torch.tensor([0.0, 0.0, 1.0])  # view frame: towards the camera
    expected = albedo[0] * (sh_basis(normal) @ gamma[0])
    assert out.mask[0, 8:24, 8:24].all() and not out.mask[0, :5].any()
    torch.testing.assert_close(out.image[0, 8:24, 8:24], expected.expand(16, 16, 3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.image[0, :5, :5], background.expand(5, 5, 3))


def test_sphere_matches_the_analytic_sh_image():
    verts, tris = uv_sphere()
    size, radius_px = 96, 40.0
    gamma = directional_gamma(1, ambient=0.3, diffuse=0.9, direction=(0.5, 0.6, 0.6))
    gamma[0, 4:] += torch.tensor([0.05, -0.04, 0.06, 0.03, -0.05])[:, None]  # second-order terms too
    out = render(verts[None], tris, torch.ones(verts.shape[0], 3), gamma, frontal_camera(1, radius_px, size / 2), size)
    rows, cols = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    x = (cols - size / 2) / radius_px
    y = -(rows - size / 2) / radius_px  # view frame: y up
    r2 = x * x + y * y
    inner = r2 < 0.85**2
    normal = torch.stack([x, y, torch.sqrt((1 - r2).clamp(min=0))], -1)
    expected = sh_basis(normal) @ gamma[0]
    assert out.mask[0][inner].all() and not out.mask[0][r2 > 1.05].any()
    error = (out.image[0][inner] - expected[inner]).abs().max()
    assert error < 0.01, f"Gouraud sphere deviates from the analytic SH image by {error:.4f}"


def test_vertex_normals_of_a_sphere_point_outwards():
    verts, tris = uv_sphere(30, 60)
    normals = vertex_normals(verts[None], tris)[0]
    cosine = (normals * verts / verts.norm(dim=1, keepdim=True)).sum(1)
    assert cosine.min() > 0.999, f"normals deviate from the radial direction: min cos {cosine.min():.5f}"


def test_visibility_agrees_with_the_depth_buffer():
    verts, tris = uv_sphere(40, 80)
    out = render(
        verts[None], tris, torch.ones(verts.shape[0], 3), directional_gamma(1), frontal_camera(1, 30.0, 32.0), 64
    )
    z = verts[:, 2]  # model +z faces the camera
    assert out.visible[0][z > 0.35].all()  # near the rim one pixel spans a steep depth range
    assert not out.visible[0][z < -0.3].any()
    # The pixels of the clearly visible vertices are drawn.
    uv = out.image_points[0][z > 0.35]
    cols, rows = uv[:, 0].long(), uv[:, 1].long()
    assert out.mask[0, rows, cols].all()


def test_gradients_reach_every_parameter():
    morphable = MorphableModel.builtin()
    B, size = 2, 64
    g = torch.Generator().manual_seed(3)
    idc = (torch.randn(B, morphable.num_id, generator=g) * 0.5).requires_grad_(True)
    expc = (torch.randn(B, morphable.num_exp, generator=g) * 0.3).requires_grad_(True)
    albc = (torch.randn(B, morphable.num_albedo, generator=g) * 0.5).requires_grad_(True)
    gamma = directional_gamma(B).clone().requires_grad_(True)
    scale = torch.full((B,), 0.25, requires_grad=True)
    angle = torch.tensor([0.2, -0.3], requires_grad=True)
    trans = torch.tensor([[32.0, 34.0, 500.0]] * B, requires_grad=True)
    c, s = torch.cos(angle), torch.sin(angle)
    yaw = torch.stack(
        [torch.stack([c, 0 * c, s], -1), torch.stack([0 * c, 0 * c + 1, 0 * c], -1), torch.stack([-s, 0 * c, c], -1)], 1
    )
    camera = WeakPerspectiveCamera(scale, FRONTAL @ yaw, trans)
    out = render(morphable.vertices(idc, expc), morphable.triangles, morphable.albedo(albc), gamma, camera, size)
    target = torch.rand(B, size, size, 3, generator=g)
    ((out.image - target) ** 2).sum().backward()
    for name, p in [
        ("id", idc),
        ("exp", expc),
        ("albedo", albc),
        ("gamma", gamma),
        ("scale", scale),
        ("rotation", angle),
        ("translation", trans),
    ]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert trans.grad[:, 2].abs().max() == 0  # depth offset does not change a weak-perspective image


def test_perspective_camera_projects_consistently_with_the_rasterizer():
    size = 80
    cam = PerspectiveCamera(
        focal=torch.tensor([[90.0, 95.0]]),
        principal=torch.tensor([[41.0, 38.5]]),
        rotation=FRONTAL.expand(1, 3, 3),
        translation=torch.tensor([[0.0, 0.0, 5.0]]),
    )
    pts = torch.tensor([[[0.3, -0.2, 0.1], [-0.5, 0.4, -0.2], [0.1, 0.1, 0.5]]])
    uvz = cam.project(pts)
    clip = cam.clip(pts, size)
    u_from_clip = (clip[..., 0] / clip[..., 3] + 1) * size / 2
    v_from_clip = (clip[..., 1] / clip[..., 3] + 1) * size / 2
    torch.testing.assert_close(u_from_clip, uvz[..., 0])
    torch.testing.assert_close(v_from_clip, uvz[..., 1])
    # Depth grows with distance: the nearer point (model z = 0.5, towards the camera) has smaller z/w.
    depth = clip[..., 2] / clip[..., 3]
    assert depth[0, 2] < depth[0, 0] < depth[0, 1]
    # A model point above the origin (+y) appears above the image centre (smaller v).
    assert uvz[0, 1, 1] < 38.5
