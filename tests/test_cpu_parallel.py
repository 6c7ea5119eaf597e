"""The CPU twins' parallel loops (csrc/common/cpu_parallel.h), on torch's threads and on pgnface's
pool (csrc/common/cpu_pool.h): the same results on any thread count, from concurrent callers and
in forked children."""

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import pgnface.ops as ops


def scene():
    g = torch.Generator().manual_seed(7)
    M = torch.randn(40_000, 3, 3, generator=g)
    src = torch.randn(1_000, 68, 3, generator=g)
    dst = src @ torch.linalg.qr(torch.randn(3, 3, generator=g))[0] + 0.01 * torch.randn(1_000, 68, 3, generator=g)
    pos = torch.rand(3, 300, 4, generator=g) * 1.6 - 0.8
    pos[..., 3] = 1.0
    tris = torch.randint(0, 300, (500, 3), generator=g, dtype=torch.int32)
    attr = torch.randn(300, 3, generator=g)
    model = dict(
        mean=torch.randn(5_000, 3, generator=g),
        basis=torch.randn(5_000, 3, 10, generator=g),
        coeffs=torch.randn(24, 10, generator=g),
        rotation=torch.linalg.qr(torch.randn(24, 3, 3, generator=g))[0],
        scale=torch.rand(24, generator=g) + 0.5,
        translation=torch.randn(24, 3, generator=g),
    )
    return M, src, dst, pos, tris, attr, model


def run_ops(M, src, dst, pos, tris, attr, model):
    """Every CPU op's outputs, forward and backward, as one list."""
    outputs = list(ops.svd3x3(M))
    outputs += list(ops.similarity_align(src, dst))
    frag = ops.rasterize(pos, tris, (64, 48))
    outputs += [frag.tri_id, frag.bary, ops.interpolate(attr, frag, tris)]
    coeffs = model["coeffs"].clone().requires_grad_(True)
    shape = ops.synthesize(**{**model, "coeffs": coeffs})
    (grad,) = torch.autograd.grad(shape.square().sum(), coeffs)
    return outputs + [shape.detach(), grad]


@pytest.fixture(params=[False, True], ids=["torch_threads", "pool"])
def pool(request):
    before = ops.use_cpu_thread_pool(request.param)
    yield request.param
    ops.use_cpu_thread_pool(before)


def with_threads(threads, fn, *args):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def assert_all_equal(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert torch.equal(x, y), i


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_results_do_not_depend_on_the_thread_count(threads, pool):
    inputs = scene()
    assert_all_equal(with_threads(1, run_ops, *inputs), with_threads(threads, run_ops, *inputs))


def test_concurrent_callers_get_their_own_results(pool):
    # Calls from several threads at once: on torch's threads each runs its own parallel region;
    # the pool runs one job at a time and the calls made meanwhile on their own thread. Either
    # way each caller gets exactly what a lone call gives.
    inputs = scene()
    expected = with_threads(1, run_ops, *inputs)

    def call(_):
        return run_ops(*inputs)

    with ThreadPoolExecutor(4) as pool:
        results = with_threads(2, lambda: list(pool.map(call, range(8))))
    for result in results:
        assert_all_equal(result, expected)


def _svd_in_child(queue):
    torch.set_num_threads(2)
    M = torch.randn(40_000, 3, 3, generator=torch.Generator().manual_seed(3))
    queue.put(ops.svd3x3(M)[1].tolist())  # plain values: a tensor would travel by a file descriptor


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this system")
def test_forked_child_runs_on_the_pool():
    # The parent's pool threads do not exist in a forked child (a DataLoader worker, say): the
    # child starts threads of its own, and a job never waits for a thread that has not started.
    # (torch's OpenMP threads are not fork-safe: a child that uses them after its parent did can
    # hang, so only the pool is tested here.)
    M = torch.randn(40_000, 3, 3, generator=torch.Generator().manual_seed(3))
    before = ops.use_cpu_thread_pool(True)
    try:
        expected = with_threads(2, ops.svd3x3, M)[1]  # the parent's pool threads are running
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_svd_in_child, args=(queue,))
        child.start()
        try:
            got = queue.get(timeout=120)
        finally:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    finally:
        ops.use_cpu_thread_pool(before)
    assert child.exitcode == 0
    assert got == expected.tolist()


def test_use_cpu_thread_pool_wants_a_bool():
    with pytest.raises(TypeError, match="enabled must be a bool"):
        ops.use_cpu_thread_pool(1)
