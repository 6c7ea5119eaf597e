"""Every CUDA kernel of pgnface, run on the CPU through the emulator, against its CPU twin.

Each op's CUDA entry point (csrc/*/*_cuda.cu, compiled unchanged with g++) runs
as torch.ops.pgnface_emu.<op> in three schedules (threads and blocks forward,
reversed, seeded random), with the emulator's checks on (races, barrier and
warp-collective divergence, uninitialised shared memory, out-of-bounds
accesses, launch configuration, stream, guard, launch check). Outputs are held
to the CPU twin torch.ops.pgnface.<op> (bit-exact where the design promises
it: the rasterizer's coverage, depth test and fragments), and outputs of the
kernels without atomics are bit-identical across schedules. Forward outputs
are also held to the pure-PyTorch reference (pgnface.ops.reference), as the
op tests hold the CPU twins (gradients included).
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cuda_emu import extension as emu
from op_harness import DTYPES, OP_NAMES, shared_data_file, tolerances
from test_rasterize import assert_fragments_equal_reference, bfm_noneck_clip, random_scene
from test_synthesize import pose_of_every_backward_path

import pgnface.ops as ops

pytestmark = pytest.mark.cuda_emu

SCHEDULES = ["forward", "reversed", "random1"]


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check_op(name, args, *, exact=(), rtol_scale=1.0, deterministic=True, schedules=SCHEDULES):
    """Runs pgnface_emu::<name> in every schedule and holds it to pgnface::<name> on the CPU.

    Args:
        name: the op.
        args: its arguments (CPU tensors and scalars).
        exact: indices of outputs that must equal the CPU twin bit for bit.
        rtol_scale: scales the dtype's tolerances for the other outputs.
        deterministic: whether outputs must be bit-identical across schedules.
    Returns:
        The outputs of the first schedule.
    """
    cpu = _flat(getattr(torch.ops.pgnface, name)(*args))
    runs = [_flat(emu.call(name, *args, schedule=s)) for s in schedules]
    for schedule, outs in zip(schedules, runs):
        assert len(outs) == len(cpu)
        for i, (got, want) in enumerate(zip(outs, cpu)):
            msg = f"{name} output {i}, schedule {schedule}"
            assert got.shape == want.shape and got.dtype == want.dtype, msg
            if i in exact or not got.is_floating_point():
                assert torch.equal(got, want), msg
            else:
                rtol, atol = tolerances(got.dtype, rtol_scale)
                torch.testing.assert_close(
                    got, want, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m, where=msg: f"{where}: {m}"
                )
    for schedule, outs in zip(schedules[1:], runs[1:]):
        for i, (got, first) in enumerate(zip(outs, runs[0])):
            if deterministic:
                assert torch.equal(got, first), f"{name} output {i}: {schedule} differs from {schedules[0]}"
    return runs[0]


def random_rotations(B, dtype, g):
    q, r = torch.linalg.qr(torch.randn(B, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q[torch.det(q) < 0, :, 0] *= -1
    return q.to(dtype)


# --- synthesize --------------------------------------------------------------------------------


def synthesize_args(B, N, K, dtype, seed=0, noncontiguous=False):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(N, 3, generator=g, dtype=dtype)
    basis = torch.randn(N, K, 3, generator=g, dtype=dtype).transpose(1, 2)
    if not noncontiguous:
        basis = basis.contiguous()
    coeffs = torch.randn(B, K, generator=g, dtype=dtype)
    rotation = random_rotations(B, dtype, g)
    scale = torch.rand(B, generator=g, dtype=dtype) + 0.5
    translation = torch.randn(B, 3, generator=g, dtype=dtype)
    return [mean, basis, coeffs, rotation, scale, translation]


# (B, N, K): one vertex; a K that is not a multiple of the stage; each batch-tile width
# (4, 16, 32) with tails; two batch tiles; an empty batch.
SYNTH_CASES = [(1, 1, 1), (3, 33, 70), (7, 64, 33), (40, 45, 5), (0, 5, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,K", SYNTH_CASES)
def test_synthesize(B, N, K, dtype):
    args = synthesize_args(B, N, K, dtype, noncontiguous=(B == 3))
    out, status = check_op("synthesize", args)
    assert status.tolist() == [0]
    torch.testing.assert_close(
        out, ops.reference.synthesize(*args), rtol=tolerances(dtype)[0], atol=tolerances(dtype)[1]
    )
    grad_out = torch.randn(B, N, 3, dtype=dtype)
    check_op("synthesize_backward", [grad_out, out, *args, B == 7])


# B = 7: one batch tile holding items of both backward paths; B = 40: a second tile whose
# items all take the output path, so it skips the shape recompute.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [7, 40])
def test_synthesize_backward_on_both_paths(B, dtype):
    args = list(pose_of_every_backward_path(B, dtype, seed=B)[0].values())
    out = torch.ops.pgnface.synthesize(*args)[0]
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(B), dtype=dtype)
    check_op("synthesize_backward", [grad_out, out, *args, B == 7])


def test_synthesize_on_the_surrey_model():
    data = np.load(shared_data_file("sfm3448.npz"))
    g = torch.Generator().manual_seed(5)
    mean = torch.from_numpy(data["mean"])
    basis = torch.from_numpy(data["basis"])
    B, K = 3, basis.shape[2]
    coeffs = torch.randn(B, K, generator=g) * torch.from_numpy(data["std"])
    args = [mean, basis, coeffs, random_rotations(B, torch.float32, g), torch.ones(B), torch.zeros(B, 3)]
    out = check_op("synthesize", args, rtol_scale=10)
    assert out[0].abs().max() > 10  # a real face in millimetres, not zeros
    grad_out = torch.randn(B, mean.shape[0], 3, generator=g)
    check_op("synthesize_backward", [grad_out, out[0], *args, False], rtol_scale=10)


# --- rasterize and interpolate ------------------------------------------------------------------


def fragments_and_grads(pos, tris, H, W, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    bary, depth, tri_id, _ = torch.ops.pgnface.rasterize(pos, tris, H, W, 0)
    B, N = pos.shape[:2]
    attr = torch.randn(B, N, C, generator=g, dtype=pos.dtype)
    return bary, depth, tri_id, attr, g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cull", [0, 1, 2])
def test_rasterize_is_bit_exact(dtype, cull):
    pos, tris = random_scene(2, 30, 40, seed=cull, dtype=dtype)
    bary, depth, tri_id, status = check_op("rasterize", [pos, tris, 17, 23, cull], exact=(0, 1, 2))
    assert status.tolist() == [0]
    fragments = SimpleNamespace(bary=bary, depth=depth, tri_id=tri_id)
    assert_fragments_equal_reference(fragments, pos, tris, (17, 23), ["none", "back", "front"][cull])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rasterize_backward_and_interpolate(dtype):
    pos, tris = random_scene(2, 30, 40, seed=4, dtype=dtype)
    H, W = 19, 21
    bary, depth, tri_id, attr, g = fragments_and_grads(pos, tris, H, W)
    grad_bary = torch.randn(bary.shape, generator=g, dtype=dtype)
    grad_depth = torch.randn(depth.shape, generator=g, dtype=dtype)
    # Float atomics: the sums' order depends on the schedule (not bit-identical across schedules).
    check_op("rasterize_backward", [grad_bary, grad_depth, pos, tris, tri_id], deterministic=False)
    image, status = check_op("interpolate", [attr, tri_id, bary, tris])
    assert status.tolist() == [0]
    torch.testing.assert_close(image, ops.reference.interpolate(attr, tri_id, bary, tris))
    check_op("interpolate", [attr[:1].transpose(1, 2).contiguous().transpose(1, 2), tri_id, bary, tris])
    grad_out = torch.randn(*tri_id.shape, attr.shape[2], generator=g, dtype=dtype)
    check_op("interpolate_backward", [grad_out, attr, tri_id, bary, tris], deterministic=False)


def test_rasterize_empty_inputs():
    pos, tris = random_scene(2, 10, 6)
    check_op("rasterize", [pos, tris[:0], 8, 9, 0], exact=(0, 1, 2))
    check_op("rasterize", [pos[:0], tris, 8, 9, 0], exact=(0, 1, 2))
    bary, depth, tri_id, attr, g = fragments_and_grads(pos, tris, 8, 9)
    check_op("rasterize_backward", [torch.zeros_like(bary), torch.zeros_like(depth), pos, tris, tri_id])


def test_rasterize_the_bfm_mesh():
    H = W = 40
    pos, tris = bfm_noneck_clip((H, W))
    bary, depth, tri_id, _ = check_op("rasterize", [pos, tris, H, W, 0], exact=(0, 1, 2), schedules=SCHEDULES[:2])
    assert (tri_id >= 0).float().mean() > 0.3
    g = torch.Generator().manual_seed(0)
    check_op(
        "rasterize_backward",
        [torch.randn(bary.shape, generator=g), torch.randn(depth.shape, generator=g), pos, tris, tri_id],
        deterministic=False,
        schedules=SCHEDULES[:2],
    )


def large_triangle_scene(H, W, dtype=torch.float32):
    """Triangles whose pixel boxes span the image, for the coverage pass's work items.

    A screen-filling quad (two triangles) with a depth gradient, a triangle larger than the
    screen behind it that wins where the quad's depth is larger, slivers along both diagonals
    (under a pixel wide, both windings), a one-pixel-high horizontal and a vertical sliver, and
    a few pixel-sized triangles on the fast path. Vertices are in pixels; returns clip-space
    positions [1, N, 4] and triangles [T, 3].
    """
    px = [
        # quad over the whole screen: depth 0.2 .. 0.8 from left to right
        (0, 0, 0.2),
        (W, 0, 0.8),
        (W, H, 0.8),
        (0, H, 0.2),
        # a triangle beyond the screen at depth 0.5
        (-W, -H, 0.5),
        (3 * W, -H, 0.5),
        (-W, 3 * H, 0.5),
        # diagonal slivers (under a pixel wide), nearer
        (0.3, 0.1, 0.1),
        (W - 0.2, H - 0.4, 0.1),
        (W - 1.1, H - 0.4, 0.1),
        (W - 0.1, 0.2, 0.05),
        (0.4, H - 0.3, 0.05),
        (1.6, H - 0.3, 0.05),
        # horizontal and vertical slivers, one pixel thick
        (0.1, H / 2 + 0.1, 0.0),
        (W - 0.1, H / 2 + 0.1, 0.0),
        (0.1, H / 2 + 1.1, 0.0),
        (W / 3 + 0.1, 0.1, 0.0),
        (W / 3 + 1.1, 0.1, 0.0),
        (W / 3 + 0.1, H - 0.1, 0.0),
        # small triangles
        (5.2, 7.7, -0.1),
        (9.6, 8.1, -0.1),
        (6.3, 12.9, -0.1),
        (W - 20.5, H - 18.2, -0.1),
        (W - 3.1, H - 17.9, -0.1),
        (W - 11.4, H - 2.2, -0.1),
    ]
    tris = [
        (0, 1, 2),
        (0, 2, 3),
        (4, 5, 6),
        (7, 8, 9),
        (10, 12, 11),
        (13, 14, 15),
        (16, 17, 18),
        (19, 20, 21),
        (22, 24, 23),
    ]
    pixels = torch.tensor(px, dtype=torch.float64)
    pos = ops.clip_from_pixels(pixels, (H, W))[None].to(dtype)
    return pos, torch.tensor(tris, dtype=torch.int32)


# The coverage kernels' accesses per depth-tested tile (16 x 16 pixels, one atomic each) plus its
# setup (triangle, vertices, binary search), with room to spare; the old one-thread-per-triangle
# kernel made one access per covered pixel: H * W for a screen-filling triangle.
TILE_ACCESSES = 16 * 16 + 64


def coverage_work():
    work = emu.thread_work()
    return {k.split("<")[0].split(" ")[0]: v for k, v in work.items() if k.startswith("coverage")}


@pytest.mark.parametrize("size", [224, 1024])
def test_rasterize_large_triangles_and_slivers(size):
    pos, tris = large_triangle_scene(size, size)
    emu.thread_work()  # clears the record
    schedules = SCHEDULES if size < 1024 else SCHEDULES[:1]
    bary, depth, tri_id, _ = check_op("rasterize", [pos, tris, size, size, 0], exact=(0, 1, 2), schedules=schedules)
    drawn = set(tri_id.unique().tolist())
    assert {0, 1, 2, 3, 4, 5, 6, 7, 8} <= drawn, f"every triangle wins somewhere, got {sorted(drawn)}"
    # Work per thread is bounded by the large triangles per image, not by their size: each of the
    # 7 large triangles adds at most one tile per thread of the tile kernel (one per screen tile).
    work = coverage_work()
    assert max(work.values()) <= 7 * TILE_ACCESSES, work
    for cull in (1, 2):
        check_op("rasterize", [pos, tris, size, size, cull], exact=(0, 1, 2), schedules=SCHEDULES[:1])


def test_rasterize_one_thread_per_tile_of_a_screen_filling_triangle():
    pos = torch.tensor([[[-1.0, -1.0, 0.5, 1.0], [3.0, -1.0, 0.5, 1.0], [-1.0, 3.0, 0.5, 1.0]]])
    tris = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    emu.thread_work()
    for size in (224, 1024):
        check_op("rasterize", [pos, tris, size, size, 0], exact=(0, 1, 2), schedules=SCHEDULES[:1])
        work = coverage_work()
        assert work["coverage_tiles_kernel"] <= TILE_ACCESSES, work
        assert work["coverage_setup_kernel"] <= 64, work


@pytest.mark.parametrize("size", [224, 1024])
def test_rasterize_the_bfm_mesh_at_full_resolution(size):
    pos, tris = bfm_noneck_clip((size, size))
    emu.thread_work()
    bary, depth, tri_id, _ = check_op("rasterize", [pos, tris, size, size, 0], exact=(0, 1, 2), schedules=SCHEDULES[:1])
    assert (tri_id >= 0).float().mean() > 0.3
    assert max(coverage_work().values()) <= TILE_ACCESSES


# --- svd3x3 and similarity_align ----------------------------------------------------------------


SPECIAL_MATRICES = [
    torch.eye(3),
    torch.zeros(3, 3),
    torch.outer(torch.tensor([1.0, 2, 3]), torch.tensor([0.5, -1, 2])),  # rank 1
    torch.diag(torch.tensor([2.0, 2.0, 1.0])),  # repeated singular values
    -torch.eye(3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [1, 130])
def test_svd3x3(B, dtype):
    g = torch.Generator().manual_seed(B)
    M = torch.randn(B, 3, 3, generator=g, dtype=dtype)
    U, S, V, status = check_op("svd3x3", [M], rtol_scale=10)
    assert status.tolist() == [0]
    torch.testing.assert_close(
        S, ops.reference.svd3x3(M)[1], rtol=tolerances(dtype, 10)[0], atol=tolerances(dtype, 10)[1]
    )
    grads = [torch.randn(t.shape, generator=g, dtype=dtype) for t in (U, S, V)]
    check_op("svd3x3_backward", [*grads, U, S, V], rtol_scale=100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_svd3x3_degenerate_matrices(dtype):
    # Repeated or zero singular values leave U and V free within a subspace, and FMA contraction
    # in the CPU twin's build may pick another basis: hold S to the twin and U, V to the definition.
    M = torch.stack(SPECIAL_MATRICES).to(dtype)
    _, S_cpu, _, _ = torch.ops.pgnface.svd3x3(M)
    rtol, atol = tolerances(dtype, 10)
    for schedule in SCHEDULES:
        U, S, V, _ = emu.call("svd3x3", M, schedule=schedule)
        torch.testing.assert_close(S, S_cpu, rtol=rtol, atol=atol)
        torch.testing.assert_close(U @ torch.diag_embed(S) @ V.mT, M, rtol=rtol, atol=atol)
        eye = torch.eye(3, dtype=dtype).expand_as(M)
        torch.testing.assert_close(U.mT @ U, eye, rtol=rtol, atol=atol)
        torch.testing.assert_close(V.mT @ V, eye, rtol=rtol, atol=atol)


def alignment_args(B, P, dtype, weighted, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(B, P, 3, generator=g, dtype=dtype)
    R = random_rotations(B, dtype, g)
    dst = 1.3 * src @ R.transpose(1, 2) + torch.randn(B, 1, 3, generator=g, dtype=dtype)
    dst = dst + 0.01 * torch.randn(B, P, 3, generator=g, dtype=dtype)
    weights = torch.rand(B, P, generator=g, dtype=dtype) + 0.1 if weighted else None
    return src, dst, weights


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "B,P,weighted,estimate_scale", [(1, 3, False, True), (5, 68, True, True), (6, 33, True, False)]
)
def test_similarity_align(B, P, weighted, estimate_scale, dtype):
    src, dst, weights = alignment_args(B, P, dtype, weighted)
    # The sums (output 3) are held to the CPU twin's like the other outputs.
    scale, R, t, sums, status = check_op("similarity_align", [src, dst, weights, estimate_scale], rtol_scale=10)
    assert status.tolist() == [0]
    rtol, atol = tolerances(dtype, 100)
    for got, want in zip((scale, R, t), ops.reference.similarity_align(src, dst, weights, estimate_scale)):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    g = torch.Generator().manual_seed(2)
    grads = [torch.randn(s, generator=g, dtype=dtype) for s in ((B,), (B, 3, 3), (B, 3))]
    # Both backward kernels solve from the same sums: the CPU twin's forward's.
    cpu_sums = torch.ops.pgnface.similarity_align(src, dst, weights, estimate_scale)[3]
    check_op("similarity_align_backward", [*grads, src, dst, weights, cpu_sums, estimate_scale], rtol_scale=100)
    # End to end: the emulated backward from the emulated forward's sums, against the CPU twin's pair.
    emu_grads = emu.call("similarity_align_backward", *grads, src, dst, weights, sums, estimate_scale)
    cpu_grads = torch.ops.pgnface.similarity_align_backward(*grads, src, dst, weights, cpu_sums, estimate_scale)
    for got, want in zip(emu_grads, cpu_grads):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def test_similarity_align_noncontiguous_and_empty():
    src, dst, weights = alignment_args(4, 40, torch.float64, True)
    check_op("similarity_align", [src.transpose(0, 1).contiguous().transpose(0, 1), dst, weights, True])
    check_op("similarity_align", [src[:0], dst[:0], None, True])


# --- value checks: the kernels' status word (csrc/common/status.h) ------------------------------

RECORD, RAISE = 1, 2  # the forward ops' `check` argument


def status_of(name, args, bits):
    """Runs pgnface_emu::<name> (check=record) in every schedule; its status word must be the CPU twin's and bits."""
    # deterministic=False: outputs hold NaN, which torch.equal never matches; each schedule's outputs
    # and status word are still held to the CPU twin's.
    statuses = {check_op(name, args, deterministic=False)[-1].item()}
    assert statuses == {bits}, f"{name}: status {statuses}, expected {bits}"


def with_nan(x, index):
    x = x.clone(memory_format=torch.contiguous_format)
    x.view(-1)[index] = float("nan")
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_synthesize_status_names_each_non_finite_input(dtype):
    args = synthesize_args(37, 70, 9, dtype)
    status_of("synthesize", [*args, RECORD], 0)
    for position, bit in ((2, 1), (3, 2), (4, 4), (5, 8)):  # coeffs, rotation, scale, translation
        bad = list(args)
        bad[position] = with_nan(bad[position], -1)  # the last item: a tail batch tile
        status_of("synthesize", [*bad, RECORD], bit)
    bad = list(args)
    bad[2], bad[5] = with_nan(bad[2], 0), bad[5].clone().fill_(float("inf"))
    status_of("synthesize", [*bad, RECORD], 1 | 8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rasterize_and_interpolate_status(dtype):
    pos, tris = random_scene(2, 30, 40, seed=4, dtype=dtype)
    status_of("rasterize", [pos, tris, 9, 11, 0, RECORD], 0)
    status_of("rasterize", [with_nan(pos, 4 * 30 + 7), tris, 9, 11, 0, RECORD], 1)
    far = tris.clone()
    far[-1, 2] = 30  # one past the last vertex
    status_of("rasterize", [pos, far, 9, 11, 0, RECORD], 2)
    status_of("rasterize", [with_nan(pos, 0), far, 9, 11, 0, RECORD], 3)
    # More triangle indices than threads in the launch (one 1 x 1 image): the grid-stride check covers all.
    pos1, many = random_scene(1, 30, 400, seed=5, dtype=dtype)
    many[-1, 1] = -7
    status_of("rasterize", [pos1, many, 1, 1, 0, RECORD], 2)
    status_of("rasterize", [with_nan(pos1, 4 * 29 + 3), many.clamp(0, 29), 1, 1, 0, RECORD], 1)
    bary, depth, tri_id, attr, g = fragments_and_grads(pos, tris, 9, 11)
    status_of("interpolate", [attr, tri_id, bary, tris, RECORD], 0)
    neg = tris.clone()
    neg[0, 0] = -1
    status_of("interpolate", [attr, tri_id, bary, neg, RECORD], 1)
    last = tris.clone()
    last[-1, 0] = 29
    status_of("interpolate", [attr[:, :29], tri_id[:, :1, :1], bary[:, :1, :1], last, RECORD], 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_svd3x3_status(dtype):
    M = torch.randn(130, 3, 3, dtype=dtype)
    status_of("svd3x3", [M, RECORD], 0)
    status_of("svd3x3", [with_nan(M, 9 * 129 + 4), RECORD], 1)
    inf = M.clone()
    inf[3, 1, 1] = float("-inf")
    status_of("svd3x3", [inf, RECORD], 1)
    status_of("svd3x3", [torch.zeros(5, 3, 3, dtype=dtype), RECORD], 0)  # zero is not non-finite


@pytest.mark.parametrize("dtype", DTYPES)
def test_similarity_align_status(dtype):
    src, dst, weights = alignment_args(9, 40, dtype, True)
    status_of("similarity_align", [src, dst, weights, True, RECORD], 0)
    status_of("similarity_align", [with_nan(src, 3 * 40 * 8 + 3 * 39 + 2), dst, weights, True, RECORD], 1)
    status_of("similarity_align", [src, with_nan(dst, 5), None, True, RECORD], 2)
    status_of("similarity_align", [src, dst, with_nan(weights, 40 * 2 + 33), True, RECORD], 4)
    neg = weights.clone()
    neg[4, 17] = -0.5
    status_of("similarity_align", [src, dst, neg, False, RECORD], 8)
    inf_w = weights.clone()
    inf_w[1, 0] = float("inf")  # Inf weight with finite points: the sums alone are not enough to say which
    status_of("similarity_align", [src, with_nan(dst, 3 * 40 * 6), inf_w, True, RECORD], 2 | 4)


def test_emulated_entry_points_raise_on_bad_values():
    # check=raise acts on the status word as the CPU twin does (on a GPU: an asynchronous assertion).
    M = with_nan(torch.randn(4, 3, 3), 7)
    with pytest.raises(ValueError, match="M contains 1 non-finite"):
        emu.call("svd3x3", M, RAISE)
    src, dst, _ = alignment_args(3, 10, torch.float32, False)
    with pytest.raises(ValueError, match="dst contains 1 non-finite"):
        emu.call("similarity_align", src, with_nan(dst, 4), None, True, RAISE)


# --- the op entry points' own checks run in emulation too ---------------------------------------


def test_every_op_is_emulated():
    assert set(emu.ops()) == set(OP_NAMES)


def test_bad_arguments_are_rejected_before_any_launch():
    lib = emu.library()
    before = lib.cuda_emu_launches()
    with pytest.raises(RuntimeError, match="tris must be int32"):
        emu.call("rasterize", torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.int64), 4, 4, 0)
    assert lib.cuda_emu_launches() == before
