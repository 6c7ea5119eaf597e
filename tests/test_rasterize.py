"""pgnface.ops.rasterize / interpolate against the reference, gradients, conventions, bad input."""

import numpy as np
import pytest
import torch
from op_harness import DEVICES, DTYPES, cpu_simd, requires_cuda, shared_data_file

import pgnface.ops as ops

ref = ops.reference


def random_scene(B, N, T, seed=0, dtype=torch.float32, device="cpu", perspective=True):
    """Random clip-space triangles, mostly on screen, with w in [0.5, 1.5] (or 1)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(B, N, 4, generator=g, dtype=torch.float64) * 2 - 1
    pos[..., :2] *= 1.1
    pos[..., 3] = torch.rand(B, N, generator=g, dtype=torch.float64) + 0.5 if perspective else 1.0
    pos[..., :3] *= pos[..., 3:4]  # so x/w, y/w, z/w stay in [-1.1, 1.1]
    tris = torch.randint(0, N, (T, 3), generator=g).int()
    return pos.to(device=device, dtype=dtype), tris.to(device)


def grid_mesh(rows, cols, H, W, jitter=0.0, seed=0):
    """A (rows x cols)-cell grid of triangle pairs spanning the image, vertices on pixel centres."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0.5, H - 0.5, rows + 1, dtype=torch.float64)
    xs = torch.linspace(0.5, W - 0.5, cols + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([xx, yy, torch.rand(yy.shape, generator=g, dtype=torch.float64) * jitter], -1)
    idx = torch.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)]).int()
    return ops.clip_from_pixels(pts.reshape(-1, 3), (H, W))[None], tris


def assert_fragments_equal_reference(frag, pos, tris, resolution, cull="none"):
    tri_id, bary, depth = ref.rasterize(pos.cpu(), tris.cpu(), resolution, cull)
    assert torch.equal(frag.tri_id.cpu(), tri_id), "tri_id differs from the reference"
    torch.testing.assert_close(frag.bary.cpu(), bary, rtol=0, atol=1e-5)
    mask = tri_id >= 0
    torch.testing.assert_close(frag.depth.cpu()[mask], depth[mask], rtol=0, atol=1e-5)
    assert torch.isinf(frag.depth.cpu()[~mask]).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cull", ["none", "back", "front"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_exactly(device, dtype, cull, seed):
    pos, tris = random_scene(3, 40, 60, seed=seed, dtype=dtype, device=device)
    frag = ops.rasterize(pos, tris, (23, 31), cull=cull)
    assert frag.tri_id.dtype == torch.int32 and frag.bary.dtype == dtype
    assert frag.mask.float().mean() > 0.3  # the scene actually draws something
    assert_fragments_equal_reference(frag, pos, tris, (23, 31), cull)


@pytest.mark.parametrize("device", DEVICES)
def test_shared_edges_cover_every_pixel_exactly_once(device):
    # Vertices on pixel centres: many pixel centres lie exactly on shared edges
    # and vertices, where only the fill rule decides.
    H, W = 17, 21
    pos, tris = grid_mesh(4, 5, H, W)
    pos = pos.to(device)
    counts = torch.zeros(H, W, dtype=torch.int64)
    for t in range(tris.shape[0]):
        counts += ops.rasterize(pos, tris[t : t + 1].to(device), (H, W)).mask[0].cpu().long()
    inner = counts[1:-1, 1:-1]  # the outermost pixel centres lie on the grid's border edges
    assert (inner == 1).all(), f"pixels covered {inner.unique().tolist()} times"
    frag = ops.rasterize(pos, tris.to(device), (H, W))
    assert frag.mask[0, 1:-1, 1:-1].all()
    assert_fragments_equal_reference(frag, pos, tris, (H, W))


@pytest.mark.parametrize("device", DEVICES)
def test_depth_test_nearest_wins_and_ties_go_to_lower_id(device):
    # Two coplanar copies of one triangle at equal depth, plus a nearer one.
    tri = torch.tensor([[-0.9, -0.9, 0.3, 1.0], [0.9, -0.9, 0.3, 1.0], [0.0, 0.9, 0.3, 1.0]])
    near = tri.clone()
    near[:, 2] = -0.5
    pos = torch.cat([tri, tri, near])[None].to(device)
    tris = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32, device=device)
    frag = ops.rasterize(pos, tris, (16, 16))
    assert set(frag.tri_id[frag.mask].tolist()) == {0}
    # Reversed order: the lower id still wins the tie.
    frag = ops.rasterize(pos, tris.flip(0), (16, 16))
    assert set(frag.tri_id[frag.mask].tolist()) == {0}
    tris3 = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=torch.int32, device=device)
    frag = ops.rasterize(pos, tris3, (16, 16))
    assert set(frag.tri_id[frag.mask].tolist()) == {2}
    torch.testing.assert_close(frag.depth[frag.mask], torch.full_like(frag.depth[frag.mask], -0.5))


@pytest.mark.parametrize("device", DEVICES)
def test_pixel_convention_and_orthographic_barycentrics(device):
    # One triangle in pixel coordinates: interpolating the vertices' pixel
    # coordinates with bary must give back each pixel's centre.
    H, W = 12, 20
    pts = torch.tensor([[1.2, 0.7, 0.0], [18.6, 2.1, 0.5], [6.3, 11.4, 1.0]], dtype=torch.float64)
    pos = ops.clip_from_pixels(pts, (H, W))[None].to(device)
    tris = torch.tensor([[0, 1, 2]], dtype=torch.int32, device=device)
    frag = ops.rasterize(pos, tris, (H, W))
    uv = ops.interpolate(pts[:, :2].to(device), frag, tris)[0]
    rows, cols = torch.nonzero(frag.mask[0], as_tuple=True)
    centres = torch.stack([cols, rows], -1).double() + 0.5
    torch.testing.assert_close(uv[rows, cols], centres.to(device), rtol=0, atol=1e-9)
    # The triangle spans v in [0.7, 11.4]: rows 1..10 (centres 1.5..10.5). Row 0 is
    # the top: the pixel next to the top-right vertex (18.6, 2.1) is drawn, its
    # mirror image near the bottom is not.
    assert sorted(set(rows.tolist())) == list(range(1, 11))
    assert frag.mask[0, 2, 16] and not frag.mask[0, 9, 16]
    torch.testing.assert_close(frag.bary.sum(-1)[frag.mask], torch.ones_like(frag.depth[frag.mask]))


@pytest.mark.parametrize("device", DEVICES)
def test_perspective_correct_barycentrics_recover_the_3d_point(device):
    pos, tris = random_scene(2, 30, 20, seed=3, dtype=torch.float64, device=device)
    frag = ops.rasterize(pos, tris, (19, 25))
    point = ops.interpolate(pos, frag, tris)  # homogeneous point on the triangle
    mask = frag.mask
    ndc = point[..., :2] / point[..., 3:4]
    H, W = 19, 25
    rows, cols = torch.meshgrid(
        torch.arange(H, device=device, dtype=torch.float64),
        torch.arange(W, device=device, dtype=torch.float64),
        indexing="ij",
    )
    expect = torch.stack([(cols + 0.5) * 2 / W - 1, (rows + 0.5) * 2 / H - 1], -1)
    torch.testing.assert_close(ndc[mask], expect.expand_as(ndc)[mask], rtol=0, atol=1e-9)
    torch.testing.assert_close((point[..., 2] / point[..., 3])[mask], frag.depth[mask], rtol=0, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_degenerate_offscreen_and_behind_camera_triangles(device):
    pos = torch.tensor(
        [
            [-0.5, -0.5, 0, 1],
            [0.5, -0.5, 0, 1],
            [0.0, 0.5, 0, 1],  # on screen
            [-0.5, -0.5, 0, 1],
            [0.0, 0.0, 0, 1],
            [0.5, 0.5, 0, 1],  # zero area (collinear)
            [3.0, 3.0, 0, 1],
            [4.0, 3.0, 0, 1],
            [3.5, 4.0, 0, 1],  # entirely off screen
            [-0.5, -0.5, 0, 1],
            [0.5, -0.5, 0, -1],
            [0.0, 0.5, 0, 1],  # a vertex behind the camera
            [-0.5, -0.5, 0, 1],
            [0.5, -0.5, 0, 0],
            [0.0, 0.5, 0, 1],  # w = 0
            [-3.0, -0.2, 0.5, 1],
            [0.0, -0.2, 0.5, 1],
            [-1.5, 3.0, 0.5, 1],  # partly off screen
        ],
        dtype=torch.float32,
    )[None].to(device)
    tris = torch.arange(18, dtype=torch.int32, device=device).reshape(6, 3)
    frag = ops.rasterize(pos, tris, (20, 20))
    drawn = set(frag.tri_id[frag.mask].tolist())
    assert drawn == {0, 5}
    assert_fragments_equal_reference(frag, pos, tris, (20, 20))


@pytest.mark.parametrize("device", DEVICES)
def test_triangle_covering_the_whole_image(device):
    pos = torch.tensor([[[-50.0, -50.0, 0.2, 1.0], [50.0, -50.0, 0.2, 1.0], [0.0, 80.0, 0.2, 1.0]]], device=device)
    tris = torch.tensor([[0, 1, 2]], dtype=torch.int32, device=device)
    frag = ops.rasterize(pos, tris, (33, 47))
    assert frag.mask.all()
    torch.testing.assert_close(frag.depth, torch.full_like(frag.depth, 0.2))


@pytest.mark.parametrize("device", DEVICES)
def test_culling_by_orientation(device):
    # Counter-clockwise in the image (row 0 on top): top-left, bottom, top-right.
    ccw_in_image = torch.tensor([[-0.8, -0.8, 0, 1], [0.0, 0.8, 0, 1], [0.8, -0.8, 0, 1]])
    pos = ccw_in_image[None].to(device)
    front, back = (
        torch.tensor([[0, 1, 2]], dtype=torch.int32, device=device),
        torch.tensor([[0, 2, 1]], dtype=torch.int32, device=device),
    )
    assert ops.rasterize(pos, front, 16, cull="back").mask.any()
    assert not ops.rasterize(pos, front, 16, cull="front").mask.any()
    assert not ops.rasterize(pos, back, 16, cull="back").mask.any()
    assert ops.rasterize(pos, back, 16, cull="front").mask.any()


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_empty_triangle_list(device):
    pos, tris = random_scene(0, 10, 5, device=device)
    frag = ops.rasterize(pos, tris, (8, 9))
    assert frag.tri_id.shape == (0, 8, 9) and frag.bary.shape == (0, 8, 9, 3)
    pos, _ = random_scene(2, 10, 5, device=device)
    frag = ops.rasterize(pos, torch.zeros(0, 3, dtype=torch.int32, device=device), (8, 9))
    assert not frag.mask.any() and torch.isinf(frag.depth).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_triangles_over_no_vertices_are_refused_or_skipped(threads):
    pos, tris = torch.zeros(3, 0, 4), torch.tensor([[0, 1, 2], [2, 1, 0]], dtype=torch.int32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 1: whole images per thread; 2: bands of rows
    try:
        with pytest.raises(ValueError, match="tris"):
            ops.rasterize(pos, tris, (8, 9))
        bary, depth, tri_id, status = torch.ops.pgnface.rasterize(pos, tris, 8, 9, 0, 0)
    finally:
        torch.set_num_threads(before)
    assert (tri_id == -1).all() and torch.isinf(depth).all() and status.tolist() == [0]


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_reference(device):
    pos, tris = random_scene(2, 30, 40, seed=5, dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(0)
    frag_ref = ref.rasterize(pos.cpu(), tris.cpu(), (21, 26))
    gb = torch.randn(frag_ref[1].shape, generator=g, dtype=torch.float64)
    gd = torch.randn(frag_ref[2].shape, generator=g, dtype=torch.float64)
    attr = torch.randn(30, 4, generator=g, dtype=torch.float64)
    gi = torch.randn(2, 21, 26, 4, generator=g, dtype=torch.float64)

    def loss(frag_bary, frag_depth, tri_id, interpolated):
        mask = tri_id >= 0
        return (
            (frag_bary * gb.to(frag_bary.device)).sum()
            + (torch.where(mask, frag_depth, 0) * gd.to(frag_depth.device)).sum()
            + (interpolated * gi.to(interpolated.device)).sum()
        )

    p1 = pos.clone().requires_grad_(True)
    a1 = attr.clone().to(device).requires_grad_(True)
    frag = ops.rasterize(p1, tris, (21, 26))
    loss(frag.bary, frag.depth, frag.tri_id, ops.interpolate(a1, frag, tris)).backward()
    p2 = pos.cpu().clone().requires_grad_(True)
    a2 = attr.clone().requires_grad_(True)
    tri_id, bary, depth = ref.rasterize(p2, tris.cpu(), (21, 26))
    loss(bary, depth, tri_id, ref.interpolate(a2, tri_id, bary, tris.cpu())).backward()
    torch.testing.assert_close(p1.grad.cpu(), p2.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(a1.grad.cpu(), a2.grad, rtol=1e-9, atol=1e-9)
    assert p1.grad.abs().sum() > 0


def degenerate_triangle_soup(centre, size, snap, resolution, g):
    """Unshared triangles around centre [T, 1, 2] (pixels) of size [T, 1, 1], vertices rounded to
    a 1/snap-pixel grid, random depths and w, and the degenerate cases: edge-on (collinear),
    coinciding vertices, behind the camera, beyond the guard band. Returns clip space [1, 3T, 4]."""
    T = centre.shape[0]
    pix = centre + (torch.rand(T, 3, 2, generator=g, dtype=torch.float64) - 0.5) * size
    pix = torch.round(pix * snap) / snap
    pix[::9, 2] = (pix[::9, 0] + pix[::9, 1]) / 2  # edge-on: the third vertex on the first edge
    pix[1::9, 2] = pix[1::9, 1]  # two vertices coincide
    z = torch.rand(T, 3, 1, generator=g, dtype=torch.float64)
    w = torch.where(
        torch.rand(T, 3, 1, generator=g) < 0.5, 1.0, torch.rand(T, 3, 1, generator=g, dtype=torch.float64) + 0.5
    )
    pos = ops.clip_from_pixels(torch.cat([pix, z], -1), resolution) * w
    pos[5::97, 1, 3] = -1.0  # behind the camera
    pos[7::97, 0, 0] = 3e6  # beyond the guard band
    return pos.reshape(1, 3 * T, 4)


def tiny_triangle_scene(seed, dtype, snap):
    """Thousands of sub-pixel and pixel-sized triangles, many with vertices, edges or bounding
    boxes exactly on pixel centres (snap: positions on a 1/2, 1/4 or 1/256 pixel grid), plus
    zero-area, edge-on (collinear), off-screen, behind-the-camera and out-of-range triangles."""
    H, W = 40, 36
    g = torch.Generator().manual_seed(seed)
    N, T = 1500, 3000
    centre = torch.rand(T, 1, 2, generator=g, dtype=torch.float64) * torch.tensor([W + 4.0, H + 4.0]) - 2
    size = torch.rand(T, 1, 1, generator=g, dtype=torch.float64).square() * 10.0
    pos = degenerate_triangle_soup(centre, size, snap, (H, W), g)[:, : N * 3]
    # Triangles past N repeat earlier ones under higher ids: exact depth ties.
    tris = torch.arange(3 * T, dtype=torch.int32).reshape(T, 3) % (3 * N)
    tris[11::97, 1] = 5 * N  # out of range (check_values=False skips them)
    return pos.to(dtype), tris, (H, W)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("snap", [2, 4, 256])
@pytest.mark.parametrize("threads", [1, 3])
def test_bounding_box_prepass_keeps_every_covering_triangle(dtype, snap, threads):
    # The CPU twin rejects triangles whose fixed-point bounding box holds no pixel
    # centre before setting them up, and splits small batches into bands of rows per
    # thread: the fragments must still be the reference's, pixel for pixel.
    pos, tris, res = tiny_triangle_scene(snap, dtype, snap)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for cull in ("none", "back"):
            frag = ops.rasterize(pos, tris, res, cull=cull, check_values=False)
            assert frag.mask.sum() > 150 and torch.unique(frag.tri_id).numel() > 150
            valid = (tris < pos.shape[1]).all(1)
            keep = torch.nonzero(valid).squeeze(1)
            expected = ref.rasterize(pos, tris[valid], res, cull)
            mapped = torch.where(expected[0] >= 0, keep[expected[0].clamp(min=0).long()].int(), -1)
            assert torch.equal(frag.tri_id, mapped), "tri_id differs from the reference"
            mask = mapped >= 0
            torch.testing.assert_close(frag.bary[mask], expected[1][mask], rtol=0, atol=1e-4)
            # Split differently (whole images per thread, one or three images): the same bits.
            three = ops.rasterize(pos.expand(3, -1, -1).contiguous(), tris, res, cull=cull, check_values=False)
            for item in range(3):
                assert torch.equal(three.tri_id[item], frag.tri_id[0])
                assert torch.equal(three.bary[item], frag.bary[0])
                assert torch.equal(three.depth[item], frag.depth[0])
    finally:
        torch.set_num_threads(before)


def mixed_size_scene(dtype, seed=0):
    """Triangles from far below a pixel to several hundred pixels across (past the 128-pixel box
    where the CPU's 32-bit coverage gives way to 64 bits), vertices on a 1/512-pixel grid (so
    X * 256 often ends in .5 and the fixed-point rounding must go to even), with the degenerate
    cases of tiny_triangle_scene; clip space [1, N, 4], tris [T, 3], resolution."""
    H, W = 100, 180
    g = torch.Generator().manual_seed(seed)
    T = 3000
    centre = torch.rand(T, 1, 2, generator=g, dtype=torch.float64) * torch.tensor([W + 40.0, H + 40.0]) - 20
    size = torch.rand(T, 1, 1, generator=g, dtype=torch.float64) ** 4 * 500.0
    pos = degenerate_triangle_soup(centre, size, 512, (H, W), g)
    tris = torch.arange(3 * T, dtype=torch.int32).reshape(T, 3)
    tris[T // 2 :: 50] = tris[: len(tris[T // 2 :: 50])]  # repeated triangles: exact depth ties
    return pos.to(dtype), tris, (H, W)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 3])
def test_simd_coverage_matches_scalar_bit_for_bit(dtype, threads):
    # The CPU twin sets up and shades triangles in SIMD lanes (32-bit coverage of one-pixel and
    # up to 4 x 4-pixel boxes, pixel by pixel beyond, 64-bit past 128-pixel boxes, fragments
    # shaded in float lanes); set_cpu_simd(False) runs the scalar per-triangle path. Both must
    # give the same bits, and the reference's triangles.
    scenes = [mixed_size_scene(dtype), tiny_triangle_scene(3, dtype, 256), tiny_triangle_scene(4, dtype, 2)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for pos, tris, res in scenes:
            for B in (1, 4):
                batch = pos.expand(B, -1, -1).contiguous()
                for cull in ("none", "back", "front"):
                    simd = ops.rasterize(batch, tris, res, cull=cull, check_values=False)
                    with cpu_simd(False):
                        scalar = ops.rasterize(batch, tris, res, cull=cull, check_values=False)
                    assert simd.mask.sum() > 100
                    for a, b in zip(simd, scalar):
                        assert torch.equal(a, b)
        # The largest triangles and some small ones against the reference (O(pixels x triangles)).
        pos, tris, res = scenes[0]
        sub = torch.cat([tris[:100], tris[-100:]])
        frag = ops.rasterize(pos, sub, res, check_values=False)
        assert torch.equal(frag.tri_id, ref.rasterize(pos, sub, res)[0]), "tri_id differs from the reference"
    finally:
        torch.set_num_threads(before)


def test_banded_backward_matches_reference_whatever_the_thread_count():
    # With fewer images than threads an image's rows are split between the threads, which then
    # add every pixel's terms to their own share of the vertices, in pixel order: the sums are
    # those of one sequential pass, whatever the thread count.
    pos, tris = random_scene(1, 60, 90, seed=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    gb = torch.randn(1, 64, 48, 3, generator=g, dtype=torch.float64)
    gd = torch.randn(1, 64, 48, generator=g, dtype=torch.float64)
    before = torch.get_num_threads()
    grads = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            p = pos.clone().requires_grad_(True)
            frag = ops.rasterize(p, tris, (64, 48))
            ((frag.bary * gb).sum() + torch.where(frag.mask, frag.depth * gd, 0).sum()).backward()
            grads.append(p.grad)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(grads[0], other) for other in grads[1:])
    p2 = pos.clone().requires_grad_(True)
    tri_id, bary, depth = ref.rasterize(p2, tris, (64, 48))
    ((bary * gb).sum() + torch.where(tri_id >= 0, depth * gd, 0).sum()).backward()
    torch.testing.assert_close(grads[0], p2.grad, rtol=1e-9, atol=1e-9)
    assert (grads[0] != 0).sum() > 100


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_bits_independent_of_batch_threads_and_lanes(dtype):
    # An image's position gradient is the same bits alone or inside a batch, on one thread or
    # several (whole images per thread, or one image's rows split), in SIMD lanes or scalar.
    # Each vertex gathers terms from many pixels, so a different order of the sums would show.
    pos, tris = random_scene(1, 60, 90, seed=5, dtype=dtype)
    res = H, W = 64, 48
    g = torch.Generator().manual_seed(6)
    others = random_scene(2, 60, 4, seed=7, dtype=dtype)[0]
    batch = torch.cat([others[:1], pos, others[1:]])
    gb = torch.randn(3, H, W, 3, generator=g, dtype=torch.float64).to(dtype)
    gd = torch.randn(3, H, W, generator=g, dtype=torch.float64).to(dtype)

    def grad(p, gb, gd):
        p = p.clone().requires_grad_(True)
        frag = ops.rasterize(p, tris, res, check_values=False)
        ((frag.bary * gb).sum() + torch.where(frag.mask, frag.depth * gd, 0).sum()).backward()
        return p.grad

    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for simd in (True, False):
                with cpu_simd(simd):
                    results.append(grad(pos, gb[1:2], gd[1:2])[0])
                    results.append(grad(batch, gb, gd)[1])
    finally:
        torch.set_num_threads(before)
    assert (results[0] != 0).sum() > 100
    for other in results[1:]:
        assert torch.equal(results[0], other)


def well_separated_scene(device, seed=7):
    """Two triangles covering > 25% of a small image whose edges stay > 0.01 px from
    every pixel centre, so finite differences never change coverage."""
    H, W = 10, 12
    g = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        pos = torch.rand(1, 6, 4, generator=g, dtype=torch.float64) * 2.4 - 1.2
        pos[..., 3] = torch.rand(1, 6, generator=g, dtype=torch.float64) + 0.7
        pos[..., :3] *= pos[..., 3:4]
        X = (pos[0, :, 0] / pos[0, :, 3] + 1) * W / 2
        Y = (pos[0, :, 1] / pos[0, :, 3] + 1) * H / 2
        cx, cy = torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="xy")
        ok = True
        for a, b in [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)]:
            d = torch.stack([X[b] - X[a], Y[b] - Y[a]])
            cross = d[0] * (cy - Y[a]) - d[1] * (cx - X[a])
            ok &= bool((cross.abs() / d.norm() > 0.01).all())
        tris = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
        if ok and ops.rasterize(pos, tris, (H, W)).mask.float().mean() > 0.25:
            return pos.to(device), tris.to(device), (H, W)
    raise AssertionError("no well-separated scene found")


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_barycentrics_depth_and_interpolation(device):
    pos, tris, res = well_separated_scene(device)
    attr = torch.randn(6, 3, dtype=torch.float64, device=device)

    def render(p, a):
        frag = ops.rasterize(p, tris, res)
        depth = torch.where(frag.mask, frag.depth, 0)
        return frag.bary, depth, ops.interpolate(a, frag, tris)

    assert ops.rasterize(pos, tris, res).mask.float().mean() > 0.2
    assert torch.autograd.gradcheck(render, (pos.clone().requires_grad_(True), attr.clone().requires_grad_(True)))


@pytest.mark.parametrize("device", DEVICES)
def test_image_loss_finite_differences(device):
    # A smooth image-space loss of the interpolated colour vs central differences.
    pos, tris, res = well_separated_scene(device, seed=11)
    colours = torch.rand(6, 3, dtype=torch.float64, device=device)
    target = torch.rand(1, *res, 3, dtype=torch.float64, device=device)

    def image_loss(p):
        img = ops.interpolate(colours, ops.rasterize(p, tris, res), tris)
        return ((img - target) ** 2).sum()

    p = pos.clone().requires_grad_(True)
    image_loss(p).backward()
    eps = 1e-6
    numeric = torch.zeros_like(pos)
    for idx in np.ndindex(*pos.shape):
        d = torch.zeros_like(pos)
        d[idx] = eps
        numeric[idx] = (image_loss(pos + d) - image_loss(pos - d)) / (2 * eps)
    torch.testing.assert_close(p.grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared", [True, False])
def test_interpolate_matches_reference(device, shared):
    pos, tris = random_scene(2, 25, 30, seed=9, dtype=torch.float64, device=device)
    frag = ops.rasterize(pos, tris, (14, 15))
    attr = torch.randn(*(() if shared else (2,)), 25, 5, dtype=torch.float64, device=device)
    a1, a2 = attr.clone().requires_grad_(True), attr.cpu().clone().requires_grad_(True)
    b1 = frag.bary.clone().requires_grad_(True)
    b2 = frag.bary.cpu().clone().requires_grad_(True)
    out = ops.interpolate(a1, ops.Fragments(frag.tri_id, b1, frag.depth), tris)
    expect = ref.interpolate(a2, frag.tri_id.cpu(), b2, tris.cpu())
    torch.testing.assert_close(out.cpu(), expect)
    assert (out[~frag.mask] == 0).all()
    upstream = torch.randn(out.shape, dtype=torch.float64)
    out.backward(upstream.to(device))
    expect.backward(upstream)
    torch.testing.assert_close(a1.grad.cpu(), a2.grad)
    torch.testing.assert_close(b1.grad.cpu(), b2.grad)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels", [3, 8, 17])
def test_large_interpolate_output_matches_image_by_image(threads, channels):
    # 12 images of 192 x 192 x C floats pass the 4 MiB beyond which the CPU twin streams its
    # output past the cache (csrc/common/cpu_stream.h); one image at a time stays below it.
    # Both must agree bit for bit, and with the reference.
    pos, tris = random_scene(12, 400, 900, seed=21)
    frag = ops.rasterize(pos, tris, (192, 192))
    attr = torch.randn(400, channels, generator=torch.Generator().manual_seed(5))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        whole = ops.interpolate(attr, frag, tris)
        one_by_one = [
            ops.interpolate(
                attr, ops.Fragments(frag.tri_id[b : b + 1], frag.bary[b : b + 1], frag.depth[b : b + 1]), tris
            )
            for b in range(12)
        ]
    finally:
        torch.set_num_threads(before)
    assert whole.nbytes >= 4 << 20 and one_by_one[0].nbytes < 4 << 20
    assert torch.equal(whole, torch.cat(one_by_one))
    torch.testing.assert_close(whole, ref.interpolate(attr, frag.tri_id, frag.bary, tris))
    assert frag.mask.any() and (whole[~frag.mask] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    pos, tris = random_scene(2, 20, 25, seed=4, device=device)
    for grad in (False, True):
        p = pos.clone().requires_grad_(grad)
        torch.library.opcheck(torch.ops.pgnface.rasterize.default, (p, tris, 9, 11, 0))
    frag = ops.rasterize(pos, tris, (9, 11))
    attr = torch.randn(1, 20, 3, device=device)
    for grad in (False, True):
        torch.library.opcheck(
            torch.ops.pgnface.interpolate.default,
            (attr.clone().requires_grad_(grad), frag.tri_id, frag.bary.clone().requires_grad_(grad), tris),
        )


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    pos, tris = random_scene(2, 20, 25, seed=6)
    colours = torch.rand(20, 3)

    def render_loss(p):
        frag = ops.rasterize(p, tris, (12, 13))
        return ops.interpolate(colours, frag, tris).square().sum()

    compiled = torch.compile(render_loss, fullgraph=True, backend=backend)
    p1, p2 = pos.clone().requires_grad_(True), pos.clone().requires_grad_(True)
    torch.testing.assert_close(compiled(p1), render_loss(p2))
    compiled(p1).backward()
    render_loss(p2).backward()
    torch.testing.assert_close(p1.grad, p2.grad)


def test_deterministic_forward_and_backward():
    pos, tris = random_scene(3, 200, 400, seed=8)
    results = []
    for _ in range(2):
        p = pos.clone().requires_grad_(True)
        frag = ops.rasterize(p, tris, (40, 50))
        (frag.bary.square().sum() + torch.where(frag.mask, frag.depth, 0).sum()).backward()
        results.append((frag.tri_id, frag.bary, p.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p, t: ops.rasterize(p[0], t, 8), ValueError, r"pos must have shape \[B, N, 4\]"),
        (lambda p, t: ops.rasterize(p.long(), t, 8), TypeError, "pos must be float32 or float64"),
        (lambda p, t: ops.rasterize(p, t.float(), 8), TypeError, "tris must be an int32 or int64"),
        (lambda p, t: ops.rasterize(p, t[:, :2], 8), ValueError, r"tris must have shape \[T, 3\]"),
        (lambda p, t: ops.rasterize(p, t + 100, 8), ValueError, r"tris must index vertices in \[0, 9\]"),
        (lambda p, t: ops.rasterize(p, t - 1, 8), ValueError, r"got indices in \[-1,"),
        (lambda p, t: ops.rasterize(p, t, (0, 8)), ValueError, "resolution must lie in"),
        (lambda p, t: ops.rasterize(p, t, (8.0, 8)), TypeError, "resolution must be an int"),
        (lambda p, t: ops.rasterize(p, t, 8, cull="side"), ValueError, "cull must be one of"),
        (
            lambda p, t: ops.rasterize(p.index_fill(1, torch.tensor([2]), float("nan")), t, 8),
            ValueError,
            "pos contains",
        ),
        (
            lambda p, t: ops.interpolate(torch.zeros(5, 3), ops.rasterize(p, t, 8), t),
            ValueError,
            r"tris must index vertices in \[0, 4\]",
        ),
        (
            lambda p, t: ops.interpolate(torch.zeros(3, 10, 3), ops.rasterize(p, t, 8), t),
            ValueError,
            "attr must have shape",
        ),
        (
            lambda p, t: ops.interpolate(torch.zeros(10, 3, dtype=torch.float64), ops.rasterize(p, t, 8), t),
            TypeError,
            "fragments.bary must have dtype torch.float64",
        ),
        (lambda p, t: ops.interpolate(torch.zeros(10, 3), (1, 2), t), TypeError, "fragments must be"),
    ],
)
def test_bad_input_names_the_argument(make, error, message):
    pos, tris = random_scene(2, 10, 6)
    with pytest.raises(error, match=message):
        make(pos, tris)


@pytest.mark.parametrize("device", DEVICES)
def test_out_of_range_indices_unchecked_are_skipped_not_read(device):
    pos, tris = random_scene(1, 10, 6, seed=2, device=device)
    bad = tris.clone()
    bad[1] = torch.tensor([0, 1, 10**6], dtype=torch.int32)
    bad[2] = torch.tensor([-5, 1, 2], dtype=torch.int32)
    frag = ops.rasterize(pos, bad, (16, 16), check_values=False)
    assert not ((frag.tri_id == 1) | (frag.tri_id == 2)).any()
    keep = torch.tensor([0, 3, 4, 5])
    expect = ops.rasterize(pos, tris[keep], (16, 16))
    torch.testing.assert_close(frag.mask, expect.mask)


def test_direct_op_call_with_bad_arguments_raises():
    pos, tris = random_scene(1, 10, 6)
    with pytest.raises(RuntimeError, match="tris must be int32"):
        torch.ops.pgnface.rasterize(pos, tris.long(), 8, 8, 0)
    with pytest.raises(RuntimeError, match="cull must be 0"):
        torch.ops.pgnface.rasterize(pos, tris, 8, 8, 7)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu_exactly(dtype):
    pos, tris = random_scene(4, 300, 600, seed=12, dtype=dtype)
    cpu = ops.rasterize(pos, tris, (64, 80))
    cuda = ops.rasterize(pos.cuda(), tris.cuda(), (64, 80))
    assert torch.equal(cuda.tri_id.cpu(), cpu.tri_id)
    torch.testing.assert_close(cuda.bary.cpu(), cpu.bary, rtol=0, atol=1e-6)


@requires_cuda
def test_cuda_graph_capture():
    pos, tris = random_scene(2, 50, 80, seed=13, device="cuda")
    colours = torch.rand(50, 3, device="cuda")
    p = pos.clone().requires_grad_(True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        ops.interpolate(colours, ops.rasterize(p, tris, 32), tris).sum().backward()
    torch.cuda.current_stream().wait_stream(stream)
    p.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        img = ops.interpolate(colours, ops.rasterize(p, tris, 32), tris)
        img.sum().backward()
    graph.replay()
    torch.cuda.synchronize()
    expect = ops.interpolate(colours, ops.rasterize(pos, tris, 32), tris)
    torch.testing.assert_close(img, expect)


def bfm_noneck_clip(resolution):
    """The real BFM no-neck mesh, orthographic, face filling ~80% of the image height."""
    data = np.load(shared_data_file("bfm_mesh.npz"))
    verts = torch.from_numpy(data["noneck_mean"]).double()
    tris = torch.from_numpy(data["noneck_triangles"]).int()
    centre = (verts.max(0).values + verts.min(0).values) / 2
    extent = (verts - centre).abs().max()
    H, W = resolution
    scale = 0.4 * H / extent
    # BFM: +y up, +z towards the viewer; image rows grow downwards, nearer = smaller depth.
    pixels = torch.stack(
        [(verts[:, 0] - centre[0]) * scale + W / 2, -(verts[:, 1] - centre[1]) * scale + H / 2, verts[:, 2]], -1
    )
    return ops.clip_from_pixels(pixels, resolution, depth_scale=-1e-6)[None].float(), tris


def test_real_bfm_mesh_is_watertight():
    from scipy import ndimage

    H = W = 224
    pos, tris = bfm_noneck_clip((H, W))
    frag = ops.rasterize(pos, tris, (H, W))
    mask = frag.mask[0].numpy()
    assert 0.3 < mask.mean() < 0.8
    # Empty pixels enclosed by the silhouette are either the mesh's own openings
    # (the mouth slit: edges used by one triangle only) or cracks. Every hole
    # pixel must lie next to such a boundary edge.
    holes = ndimage.binary_fill_holes(mask) & ~mask
    t = tris.long().numpy()
    edges = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]
    p = pos[0].double().numpy()
    xy = np.stack([(p[:, 0] + 1) * W / 2, (p[:, 1] + 1) * H / 2], -1)
    a, b = xy[boundary[:, 0]], xy[boundary[:, 1]]
    rows, cols = np.nonzero(holes)
    q = np.stack([cols + 0.5, rows + 0.5], -1)[:, None, :]
    ab = b - a
    s = np.clip(((q - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    dist = np.linalg.norm(q - (a + s[..., None] * ab), axis=-1).min(axis=1) if len(q) else np.zeros(0)
    assert (dist < 1.0).all(), f"cracks: hole pixels {np.argwhere(holes)[dist >= 1.0][:5]} far from any mesh opening"
    # A frontal view shows the near side of the head: depths are z/w < 0 with depth_scale < 0.
    assert frag.depth[frag.mask].max() < 0


def test_real_bfm_mesh_crop_matches_reference():
    pos, tris = bfm_noneck_clip((96, 96))
    frag = ops.rasterize(pos, tris, (96, 96))
    # The reference is O(pixels x triangles): compare the triangles that reach a 12 x 12 crop.
    r0, c0, size = 40, 42, 12
    crop_tris = torch.unique(frag.tri_id[0, r0 : r0 + size, c0 : c0 + size])
    assert (crop_tris >= 0).all() and len(crop_tris) > 20
    sub = tris[crop_tris.long()]
    f_sub = ops.rasterize(pos, sub, (96, 96))
    r_tri, r_bary, _ = ref.rasterize(pos, sub, (96, 96))
    assert torch.equal(f_sub.tri_id, r_tri)
    torch.testing.assert_close(f_sub.bary, r_bary, rtol=0, atol=1e-5)
    # And the crop's winners are the same triangles as in the full render.
    full_crop = frag.tri_id[0, r0 : r0 + size, c0 : c0 + size]
    sub_crop = crop_tris[f_sub.tri_id[0, r0 : r0 + size, c0 : c0 + size].long()]
    assert torch.equal(full_crop, sub_crop.to(full_crop.dtype))
