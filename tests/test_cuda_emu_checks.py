"""The emulator's checks bite: each mutant of a real kernel's pattern is caught, in every schedule.

The kernels are in tests/cuda_emu/kernels/mutants.cu: staging through shared
memory (svd3x3_kernel), a barrier before the tail check
(synthesize_forward_kernel), a warp all-reduce (similarity_align_kernel) and an
atomic scatter (rasterize_backward_kernel); each entry point takes the mutation
to apply, 0 for the correct kernel, which must pass and match numpy.
"""

import numpy as np
import pytest
from cuda_emu import core
from cuda_emu.schedules import SCHEDULE_IDS

pytestmark = pytest.mark.cuda_emu

SCHEDULES = pytest.mark.parametrize("schedule", SCHEDULE_IDS)


def _matrices(B, seed=0):
    return np.random.default_rng(seed).standard_normal((B, 3, 3)).astype(np.float32)


@SCHEDULES
@pytest.mark.parametrize("B", [1, 128, 300])
def test_staging_kernel_is_clean_and_correct(schedule, B):
    M = _matrices(B)
    out = np.zeros_like(M)
    assert core.run("emu_transpose", schedule, M, out, B, core.CORRECT) is None
    np.testing.assert_array_equal(out, M.transpose(0, 2, 1))


@SCHEDULES
def test_removed_barrier_is_caught(schedule):
    M = _matrices(300)
    error = core.run("emu_transpose", schedule, M, np.zeros_like(M), 300, core.REMOVE_BARRIER)
    assert error is not None and ("uninitialised shared memory" in error or "data race on shared" in error), error


@SCHEDULES
def test_off_by_one_tail_is_caught(schedule):
    M = _matrices(300)
    error = core.run("emu_transpose", schedule, M, np.zeros_like(M), 300, core.TAIL_OFF_BY_ONE)
    assert error is not None and "out-of-bounds" in error, error


@SCHEDULES
def test_off_by_one_global_tail_read_is_caught(schedule):
    # 120 matrices: one partial block, so the extra element lies past the input, not past m_s.
    M = _matrices(120)
    error = core.run("emu_transpose", schedule, M, np.zeros_like(M), 120, core.TAIL_OFF_BY_ONE)
    assert error is not None and "out-of-bounds or untracked global read" in error, error


@SCHEDULES
def test_shared_overrun_is_caught(schedule):
    M = _matrices(256)
    error = core.run("emu_transpose", schedule, M, np.zeros_like(M), 256, core.SHARED_OVERRUN)
    assert error is not None and (
        "out-of-bounds shared-memory read" in error or "uninitialised" in error or "data race" in error
    ), error


@SCHEDULES
@pytest.mark.parametrize("N", [128, 300])
def test_barrier_before_tail_check(schedule, N):
    x = np.random.default_rng(1).random(N).astype(np.float32)
    out = np.zeros_like(x)
    assert core.run("emu_scale_by_block_sum", schedule, x, out, N, core.CORRECT) is None
    sums = np.repeat([x[i : i + 128].sum(dtype=np.float64) for i in range(0, N, 128)], 128)[:N]
    np.testing.assert_allclose(out, x * sums, rtol=1e-5)
    error = core.run("emu_scale_by_block_sum", schedule, x, np.zeros_like(x), N, core.EARLY_RETURN)
    if N % 128 == 0:
        assert error is None  # no thread is past the end, the mutation changes nothing
    else:
        assert error is not None and "barrier divergence" in error and "has exited" in error, error


@SCHEDULES
@pytest.mark.parametrize("P", [20, 32, 77])
def test_warp_allreduce_and_divergent_shuffle(schedule, P):
    x = np.random.default_rng(2).random((9, P)).astype(np.float32)
    out = np.zeros(9, np.float32)
    assert core.run("emu_row_sum", schedule, x, out, 9, P, core.CORRECT) is None
    np.testing.assert_allclose(out, x.sum(1), rtol=1e-5)
    error = core.run("emu_row_sum", schedule, x, np.zeros(9, np.float32), 9, P, core.DIVERGENT_SHUFFLE)
    if P >= 32:
        assert error is None  # every lane takes the branch
    else:
        assert error is not None and "__shfl_xor_sync" in error and "exited lane" in error, error


@SCHEDULES
def test_atomic_scatter_and_racy_update(schedule):
    rng = np.random.default_rng(3)
    values = rng.random(500).astype(np.float32)
    index = rng.integers(0, 10, 500).astype(np.int32)
    out = np.zeros(10, np.float32)
    assert core.run("emu_scatter_add", schedule, values, index, out, 500, 10, core.CORRECT) is None
    np.testing.assert_allclose(out, np.bincount(index, values, 10), rtol=1e-5)
    error = core.run("emu_scatter_add", schedule, values, index, np.zeros(10, np.float32), 500, 10, core.RACY_UPDATE)
    assert error is not None and "data race on global memory" in error, error


def test_warp_collectives_and_atomics():
    lanes = 32
    out = np.zeros((lanes, 8), np.int32)
    counters = np.array([2**63, 0, 0, 0, 0], np.uint64)
    total = np.zeros(1)
    assert core.run("emu_collectives", "forward", out, counters, total, lanes, 0) is None
    lane = np.arange(lanes)
    np.testing.assert_array_equal(out[:, 0], 30)
    np.testing.assert_array_equal(out[:, 1], np.where(lane >= 2, (lane - 2) * 10, lane * 10))
    np.testing.assert_array_equal(out[:, 2], np.where(lane + 2 < lanes, (lane + 2) * 10, lane * 10))
    np.testing.assert_array_equal(out[:, 3], (lane ^ 1) * 10)
    np.testing.assert_array_equal(out[:, 4].view(np.uint32), sum(1 << i for i in range(lanes) if i % 3 == 0))
    np.testing.assert_array_equal(out[:, 5], 1)
    np.testing.assert_array_equal(out[:, 6], 1)
    np.testing.assert_array_equal(out[:, 7].view(np.uint32), 0xFFFFFFFF)
    assert counters.tolist() == [1000 - (lanes - 1), lanes - 1, lanes, 1, 7]  # forward: lane 0 wins the CAS
    assert total[0] == 0.5 * lane.sum()


def test_shuffle_from_a_lane_outside_the_mask_is_caught():
    # A 20-thread block: __activemask() is 0x000fffff, and lane 18's __shfl_down_sync by 2 reads lane 20.
    out = np.zeros((20, 8), np.int32)
    error = core.run("emu_collectives", "forward", out, np.zeros(5, np.uint64), np.zeros(1), 20, 0)
    assert error is not None and "reads lane 20, which is not in the mask 0x000fffff" in error, error


def test_mask_naming_lanes_the_block_lacks_is_caught():
    out = np.zeros((20, 8), np.int32)
    error = core.run("emu_collectives", "forward", out, np.zeros(5, np.uint64), np.zeros(1), 20, 1)
    assert error is not None and "names lane 20 in mask 0xffffffff, which does not exist" in error, error


@SCHEDULES
def test_threads_at_different_barriers_are_caught(schedule):
    x = np.ones(128, np.float32)
    error = core.run("emu_scale_by_block_sum", schedule, x, np.zeros_like(x), 128, core.SPLIT_BARRIER)
    assert error is not None and "barrier divergence" in error and "waits at __syncthreads at" in error, error


@pytest.mark.parametrize(
    "rule,message",
    [
        (0, "has no blocks"),
        (1, "grid.y or grid.z above 65535"),
        (2, "1025 threads per block"),
        (3, "static shared memory"),
        (4, "no device guard"),
        (5, "not on the current stream"),
        (6, "without C10_CUDA_KERNEL_LAUNCH_CHECK"),
        (7, None),
    ],
)
def test_launch_rules(rule, message):
    error = core.run("emu_bad_launch", "forward", np.zeros(1024, np.float32), rule)
    if message is None:
        assert error is None
    else:
        assert error is not None and message in error, error


def test_dynamic_shared_memory_and_its_bounds():
    x = np.arange(10, dtype=np.float32)
    out = np.zeros_like(x)
    assert core.run("emu_dynamic_shared", "reversed", x, out, 10, 40) is None
    np.testing.assert_array_equal(out, x[::-1])
    error = core.run("emu_dynamic_shared", "forward", x, np.zeros_like(x), 10, 36)
    assert error is not None and "out-of-bounds shared-memory write" in error, error
