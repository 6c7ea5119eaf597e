"""Deterministic CUDA gradients, run in emulation: bit-identical across schedules and devices.

With ``torch.use_deterministic_algorithms(True)`` the CUDA backward of
rasterize and interpolate gathers each vertex's contributions in pixel order
instead of scattering them with float atomics (csrc/rasterize/rasterize_cuda.cu),
so every schedule the emulator tries gives the same bits. The CPU twin adds
rasterize's terms in pixel order too, whatever its thread count and batch, and
interpolate's when each batch item has its own attributes: there the results
equal it bit for bit; with shared attributes they agree within the op tests'
tolerances (float32: rtol = atol = 1e-4; float64: 1e-10), the rounding of a
differently grouped sum. synthesize's backward has no atomics and splits its
partial sums independently of the device: its gradients are the same bits
whatever SM count the emulated device reports.
"""

import contextlib

import pytest
import torch
from cuda_emu import extension as emu
from cuda_emu.schedules import SCHEDULE_IDS
from op_harness import DTYPES, tolerances
from test_cuda_emu_ops import synthesize_args
from test_rasterize import grid_mesh, random_scene

pytestmark = pytest.mark.cuda_emu


@contextlib.contextmanager
def deterministic_algorithms(enabled=True):
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def emulated_runs(name, args, *, deterministic=True, schedules=SCHEDULE_IDS):
    with deterministic_algorithms(deterministic):
        return [emu.call(name, *args, schedule=s) for s in schedules]


def assert_bit_identical(runs, name):
    first = runs[0] if isinstance(runs[0], (tuple, list)) else [runs[0]]
    for schedule, run in zip(SCHEDULE_IDS[1:], runs[1:]):
        run = run if isinstance(run, (tuple, list)) else [run]
        for i, (got, want) in enumerate(zip(run, first)):
            assert torch.equal(got, want), f"{name} output {i}: schedule {schedule} differs from {SCHEDULE_IDS[0]}"


def two_triangles(B, H, W, dtype, seed=0):
    """Two triangles covering the whole image: hundreds of pixels send gradients to each vertex."""
    pos, tris = grid_mesh(1, 1, H, W)
    g = torch.Generator().manual_seed(seed)
    pos = pos.repeat(B, 1, 1)
    pos[..., 2] = torch.rand(B, pos.shape[1], generator=g, dtype=pos.dtype)
    pos[..., 3] = torch.rand(B, pos.shape[1], generator=g, dtype=pos.dtype) + 0.5
    pos[..., :3] *= pos[..., 3:4]
    return pos.to(dtype), tris


# name: (pos, tris, H, W). The CPU twin sums each vertex's contributions in pixel order, as the
# deterministic CUDA path does.
SCENES = {
    "random": lambda dtype: (*random_scene(2, 30, 40, seed=4, dtype=dtype), 19, 21),
    "two_triangles": lambda dtype: (*two_triangles(2, 24, 20, dtype), 24, 20),
}


def rasterize_backward_args(pos, tris, H, W, seed=1):
    bary, depth, tri_id, _ = torch.ops.pgnface.rasterize(pos, tris, H, W, 0)
    g = torch.Generator().manual_seed(seed)
    grad_bary = torch.randn(bary.shape, generator=g, dtype=pos.dtype)
    grad_depth = torch.randn(depth.shape, generator=g, dtype=pos.dtype)
    return [grad_bary, grad_depth, pos, tris, tri_id], (bary, tri_id)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scene", sorted(SCENES))
def test_rasterize_backward_is_bit_identical_across_schedules(scene, dtype):
    pos, tris, H, W = SCENES[scene](dtype)
    args, _ = rasterize_backward_args(pos, tris, H, W)
    runs = emulated_runs("rasterize_backward", args)
    assert_bit_identical(runs, "rasterize_backward")
    assert runs[0].abs().sum() > 0
    # The CPU twin sums in the same order here (one band): the same bits.
    assert torch.equal(runs[0], torch.ops.pgnface.rasterize_backward(*args))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scene", sorted(SCENES))
def test_interpolate_backward_is_bit_identical_across_schedules(scene, dtype):
    pos, tris, H, W = SCENES[scene](dtype)
    _, (bary, tri_id) = rasterize_backward_args(pos, tris, H, W)
    g = torch.Generator().manual_seed(2)
    B, N = pos.shape[:2]
    for attr in (torch.randn(B, N, 5, generator=g, dtype=dtype), torch.randn(1, N, 3, generator=g, dtype=dtype)):
        grad_out = torch.randn(B, H, W, attr.shape[2], generator=g, dtype=dtype)
        args = [grad_out, attr, tri_id, bary, tris]
        runs = emulated_runs("interpolate_backward", args)
        assert_bit_identical(runs, "interpolate_backward")
        grad_attr, grad_bary = runs[0]
        cpu_attr, cpu_bary = torch.ops.pgnface.interpolate_backward(*args)
        assert torch.equal(grad_bary, cpu_bary)
        if attr.shape[0] == B:  # per-item attributes: the CPU twin's order
            assert torch.equal(grad_attr, cpu_attr)
        else:  # shared attributes: the CPU twin sums per item, then over items
            rtol, atol = tolerances(dtype)
            torch.testing.assert_close(grad_attr, cpu_attr, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_gradients_match_the_cpu_twin_whatever_its_threads(dtype):
    # 48 rows and one image: with several threads the CPU twin splits the rows between them, then
    # adds every pixel's terms in pixel order, each thread to its share of the vertices.
    pos, tris = two_triangles(1, 48, 20, dtype, seed=3)
    args, _ = rasterize_backward_args(pos, tris, 48, 20)
    runs = emulated_runs("rasterize_backward", args)
    assert_bit_identical(runs, "rasterize_backward")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(runs[0], torch.ops.pgnface.rasterize_backward(*args))
    finally:
        torch.set_num_threads(before)


def test_the_default_path_depends_on_the_schedule():
    # What deterministic mode is for: float atomicAdd sums in the order threads run.
    pos, tris, H, W = SCENES["two_triangles"](torch.float32)
    args, (bary, tri_id) = rasterize_backward_args(pos, tris, H, W)
    runs = emulated_runs("rasterize_backward", args, deterministic=False, schedules=["forward", "reversed"])
    assert not torch.equal(runs[0], runs[1])
    grad_out = torch.randn(*tri_id.shape, 3)
    args = [grad_out, torch.randn(1, pos.shape[1], 3), tri_id, bary, tris]
    runs = emulated_runs("interpolate_backward", args, deterministic=False, schedules=["forward", "reversed"])
    assert not torch.equal(runs[0][0], runs[1][0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_rasterize_backward_on_empty_and_degenerate_inputs(dtype):
    pos, tris, H, W = SCENES["random"](dtype)
    args, (bary, tri_id) = rasterize_backward_args(pos, tris, H, W)
    grad_bary, grad_depth = args[:2]
    cases = [
        [torch.zeros_like(grad_bary), torch.zeros_like(grad_depth), pos, tris, tri_id],  # nothing to send
        [grad_bary, grad_depth, pos, tris, torch.full_like(tri_id, -1)],  # empty image
        [grad_bary[:0], grad_depth[:0], pos[:0], tris, tri_id[:0]],  # empty batch
    ]
    for case in cases:
        runs = emulated_runs("rasterize_backward", case, schedules=SCHEDULE_IDS[:2])
        assert_bit_identical(runs, "rasterize_backward")
        assert torch.equal(runs[0], torch.ops.pgnface.rasterize_backward(*case))
    grad_out = torch.randn(*tri_id.shape, 0, dtype=dtype)
    case = [grad_out, torch.randn(2, pos.shape[1], 0, dtype=dtype), tri_id, bary, tris]  # no channels
    for got, want in zip(emulated_runs("interpolate_backward", case)[0], torch.ops.pgnface.interpolate_backward(*case)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_synthesize_backward_does_not_depend_on_the_device(dtype):
    # 10 vertex tiles, 2 batch tiles: splitting by the SM count would group the partial sums
    # differently on a 2-SM and a 132-SM device.
    B, N, K = 40, 300, 45
    args = synthesize_args(B, N, K, dtype)
    grad_out = torch.randn(B, N, 3, generator=torch.Generator().manual_seed(3), dtype=dtype)
    out = torch.ops.pgnface.synthesize(*args)[0]
    runs = []
    try:
        for sms in (132, 2, 7):
            emu.set_multiprocessors(sms)
            runs.append(emu.call("synthesize_backward", grad_out, out, *args, True))
    finally:
        emu.set_multiprocessors(132)
    assert_bit_identical(runs, "synthesize_backward")
    rtol, atol = tolerances(dtype)
    for got, want in zip(runs[0], torch.ops.pgnface.synthesize_backward(grad_out, out, *args, True)):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
