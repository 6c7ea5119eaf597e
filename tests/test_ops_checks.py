"""Value checks (check_values=True, the default) fused into the kernels: status words, CPU errors, torch.compile.

The kernels report bad values through a status word each forward op returns
(csrc/common/status.h); on CPU the op raises ValueError naming the argument,
on CUDA it asserts asynchronously. Nothing in the wrappers reads a value, so
the checks stay on under torch.compile(fullgraph=True). The emulated CUDA
kernels' status words are tested in test_cuda_emu_ops.py.
"""

import pytest
import torch

import pgnface.ops as ops

RECORD = 1  # the ops' `check` argument: fill the status word, raise nothing


def _nan_at(x, flat_index):
    x = x.clone()
    x.view(-1)[flat_index] = float("nan")
    return x


def _synthesize_inputs(B=5, N=12, K=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return dict(
        mean=torch.randn(N, 3, generator=g, dtype=dtype),
        basis=torch.randn(N, 3, K, generator=g, dtype=dtype),
        coeffs=torch.randn(B, K, generator=g, dtype=dtype),
        rotation=torch.eye(3, dtype=dtype).repeat(B, 1, 1),
        scale=torch.ones(B, dtype=dtype),
        translation=torch.zeros(B, 3, dtype=dtype),
    )


def _scene(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(2, 10, 4, generator=g, dtype=dtype) * 1.6 - 0.8
    pos[..., 3] = 1.0
    tris = torch.randint(0, 10, (12, 3), generator=g, dtype=torch.int32)
    return pos, tris


def _alignment(B=4, P=9, dtype=torch.float32):
    g = torch.Generator().manual_seed(2)
    src = torch.randn(B, P, 3, generator=g, dtype=dtype)
    dst = 2 * src + 1 + 0.01 * torch.randn(B, P, 3, generator=g, dtype=dtype)
    return src, dst, torch.rand(B, P, generator=g, dtype=dtype) + 0.1


# --- the status word of each op (CPU kernels) ------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_synthesize_status_bits(dtype):
    args = _synthesize_inputs(dtype=dtype)
    names = ["coeffs", "rotation", "scale", "translation"]
    assert torch.ops.pgnface.synthesize(*args.values(), RECORD)[1].tolist() == [0]
    for bit, name in enumerate(names):
        bad = dict(args, **{name: _nan_at(args[name], -1)})
        out, status = torch.ops.pgnface.synthesize(*bad.values(), RECORD)
        assert status.tolist() == [1 << bit], name
        assert torch.isnan(out[-1]).any() and not torch.isnan(out[:-1]).any()  # recorded, then computed as usual
    # check=0: nothing is checked, the word stays 0.
    bad = dict(args, coeffs=_nan_at(args["coeffs"], 0))
    assert torch.ops.pgnface.synthesize(*bad.values(), 0)[1].tolist() == [0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rasterize_and_interpolate_status_bits(dtype):
    pos, tris = _scene(dtype)
    assert torch.ops.pgnface.rasterize(pos, tris, 8, 9, 0, RECORD)[3].tolist() == [0]
    assert torch.ops.pgnface.rasterize(_nan_at(pos, 37), tris, 8, 9, 0, RECORD)[3].tolist() == [1]
    inf = pos.clone()
    inf[1, 9, 3] = float("inf")  # an Inf w
    assert torch.ops.pgnface.rasterize(inf, tris, 8, 9, 0, RECORD)[3].tolist() == [1]
    far = tris.clone()
    far[5, 1] = 10
    assert torch.ops.pgnface.rasterize(pos, far, 8, 9, 0, RECORD)[3].tolist() == [2]
    bary, depth, tri_id, _ = torch.ops.pgnface.rasterize(pos, tris, 8, 9, 0)
    attr = torch.randn(10, 2, dtype=dtype)[None]
    assert torch.ops.pgnface.interpolate(attr, tri_id, bary, tris, RECORD)[1].tolist() == [0]
    assert torch.ops.pgnface.interpolate(attr, tri_id, bary, far, RECORD)[1].tolist() == [1]


@pytest.mark.parametrize("threads", [1, 4])
def test_rasterize_and_interpolate_checks_reach_every_value(threads):
    """The CPU checks ride on the kernels' parallel first reads: vertex projection (in chunks when an
    image is split into bands of rows, as with fewer images than threads), the bounding-box pass over
    the triangles (per band), and interpolate's pixel tasks, each with its share of tris. A bad value
    anywhere is found, whichever task reads it, including a triangle no pixel shows."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(3)
        N, T, H, W = 5000, 3000, 80, 72  # > 4096 vertices (two projection chunks), > 512 triangles
        pos = torch.rand(2, N, 4, generator=g) * 1.6 - 0.8
        pos[..., 3] = 1.0
        tris = torch.randint(0, N, (T, 3), generator=g, dtype=torch.int32)
        assert torch.ops.pgnface.rasterize(pos, tris, H, W, 0, RECORD)[3].tolist() == [0]
        for flat in (0, 4 * 4500 + 2, 4 * N + 7, pos.numel() - 1):
            assert torch.ops.pgnface.rasterize(_nan_at(pos, flat), tris, H, W, 0, RECORD)[3].tolist() == [1], flat
        bary, _, tri_id, _ = torch.ops.pgnface.rasterize(pos, tris, H, W, 0)
        hidden = sorted(set(range(T)) - set(tri_id.unique().tolist()))
        attr = torch.randn(1, N, 2, generator=g)
        assert torch.ops.pgnface.interpolate(attr, tri_id, bary, tris, RECORD)[1].tolist() == [0]
        for t, value in ((0, -1), (1700, N), (T - 1, N + 5), (hidden[0], N), (hidden[-1], -7)):
            bad = tris.clone()
            bad[t, t % 3] = value
            assert torch.ops.pgnface.rasterize(pos, bad, H, W, 0, RECORD)[3].tolist() == [2], t
            assert torch.ops.pgnface.rasterize(_nan_at(pos, 9), bad, H, W, 0, RECORD)[3].tolist() == [3], t
            assert torch.ops.pgnface.interpolate(attr, tri_id, bary, bad, RECORD)[1].tolist() == [1], t
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_svd3x3_status_bit(dtype):
    M = torch.randn(2000, 3, 3, dtype=dtype)  # more than one parallel chunk
    assert torch.ops.pgnface.svd3x3(M, RECORD)[3].tolist() == [0]
    assert torch.ops.pgnface.svd3x3(torch.zeros(3, 3, 3, dtype=dtype), RECORD)[3].tolist() == [0]
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = M.clone()
        bad[1999, 2, 0] = value
        assert torch.ops.pgnface.svd3x3(bad, RECORD)[3].tolist() == [1]
    huge = torch.full((1, 3, 3), torch.finfo(dtype).max / 2, dtype=dtype)  # finite, S overflows
    assert torch.ops.pgnface.svd3x3(huge, RECORD)[3].tolist() == [0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_similarity_align_status_bits(dtype):
    src, dst, w = _alignment(dtype=dtype)
    op = torch.ops.pgnface.similarity_align
    assert op(src, dst, w, True, RECORD)[-1].tolist() == [0]
    assert op(_nan_at(src, 50), dst, w, True, RECORD)[-1].tolist() == [1]
    assert op(src, _nan_at(dst, 0), None, True, RECORD)[-1].tolist() == [2]
    assert op(src, dst, _nan_at(w, 35), True, RECORD)[-1].tolist() == [4]
    neg = w.clone()
    neg[2, 4] = -1e-3
    assert op(src, dst, neg, True, RECORD)[-1].tolist() == [8]
    # A zero weight on an Inf point still makes the sums NaN (0 * Inf), so the point is named.
    zero = w.clone()
    zero[0, 0] = 0
    inf = src.clone()
    inf[0, 0, 1] = float("inf")
    assert op(inf, dst, zero, False, RECORD)[-1].tolist() == [1]
    # Finite points whose weighted sums overflow are not reported as non-finite inputs.
    big = torch.full_like(src, torch.finfo(dtype).max / 4)
    assert op(big, dst, None, True, RECORD)[-1].tolist() == [0]


# --- CPU errors name the argument -------------------------------------------------------------------


def test_cpu_errors_name_the_argument():
    args = _synthesize_inputs()
    with pytest.raises(ValueError, match="translation contains 1 non-finite"):
        ops.synthesize(**dict(args, translation=_nan_at(args["translation"], 4)))
    pos, tris = _scene()
    with pytest.raises(ValueError, match="pos contains 2 non-finite"):
        ops.rasterize(_nan_at(_nan_at(pos, 3), 60), tris, 8)
    src, dst, w = _alignment()
    with pytest.raises(ValueError, match="dst contains 1 non-finite"):
        ops.similarity_align(src, _nan_at(dst, 7), w)
    neg = w.clone()
    neg[1, 1] = -2.0
    with pytest.raises(ValueError, match=r"weights must be non-negative, got minimum -2"):
        ops.similarity_align(src, dst, neg)
    # The direct op raises too (check=2 is the schema's default).
    with pytest.raises(ValueError, match="M contains 1 non-finite"):
        torch.ops.pgnface.svd3x3(_nan_at(torch.randn(2, 3, 3), 0))


# --- torch.compile(fullgraph=True): checks on, no graph break ---------------------------------------


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="aot_eager")


def test_synthesize_checks_under_compile():
    args = _synthesize_inputs()
    compiled = _compiled(lambda a: ops.synthesize(**a).sum())
    torch.testing.assert_close(compiled(args), ops.synthesize(**args).sum())
    with pytest.raises(ValueError, match="coeffs contains 1 non-finite"):
        compiled(dict(args, coeffs=_nan_at(args["coeffs"], 3)))
    with pytest.raises(ValueError, match="rotation contains 45 non-finite"):
        compiled(dict(args, rotation=torch.full_like(args["rotation"], float("inf"))))


def test_synthesize_index_is_asserted_under_compile():
    args = _synthesize_inputs()
    compiled = _compiled(lambda a, index: ops.synthesize(**a, index=index).sum())
    index = torch.tensor([0, 5, 11])
    torch.testing.assert_close(compiled(args, index), ops.synthesize(**args, index=index).sum())
    with pytest.raises(RuntimeError, match=r"index must lie in \[0, 11\]"):
        compiled(args, torch.tensor([0, 12]))


def test_rasterize_and_interpolate_checks_under_compile():
    pos, tris = _scene()
    attr = torch.randn(10, 3)

    def render(p, t):
        return ops.interpolate(attr, ops.rasterize(p, t, 8), t).sum()

    compiled = _compiled(render)
    torch.testing.assert_close(compiled(pos, tris), render(pos, tris))
    with pytest.raises(ValueError, match="pos contains 1 non-finite"):
        compiled(_nan_at(pos, 5), tris)
    far = tris.clone()
    far[0, 0] = 10
    with pytest.raises(ValueError, match=r"tris must index vertices in \[0, 9\], got indices in \[0, 10\]"):
        compiled(pos, far)


def test_interpolate_checks_under_compile():
    pos, tris = _scene()
    frag = ops.rasterize(pos, tris, 8)
    compiled = _compiled(lambda a, f, t: ops.interpolate(a, f, t).sum())
    torch.testing.assert_close(
        compiled(torch.ones(10, 1), frag, tris), ops.interpolate(torch.ones(10, 1), frag, tris).sum()
    )
    nine = tris.clone()
    nine[0, 0] = 9
    with pytest.raises(ValueError, match=r"tris must index vertices in \[0, 8\]"):
        compiled(torch.ones(9, 1), frag, nine)


def test_svd3x3_checks_under_compile():
    compiled = _compiled(lambda M: ops.svd3x3(M)[1].sum())
    M = torch.randn(6, 3, 3)
    torch.testing.assert_close(compiled(M), ops.svd3x3(M)[1].sum())
    with pytest.raises(ValueError, match="M contains 1 non-finite"):
        compiled(_nan_at(M, 20))


def test_similarity_align_checks_under_compile():
    src, dst, w = _alignment()
    compiled = _compiled(lambda s, d, w: sum(x.sum() for x in ops.similarity_align(s, d, w)))
    torch.testing.assert_close(compiled(src, dst, w), sum(x.sum() for x in ops.similarity_align(src, dst, w)))
    with pytest.raises(ValueError, match="weights contains 1 non-finite"):
        compiled(src, dst, _nan_at(w, 2))
    with pytest.raises(ValueError, match="src contains 1 non-finite"):
        compiled(_nan_at(src, 2), dst, w)


@pytest.mark.parametrize("backend", ["inductor"])
def test_checks_survive_inductor(backend):
    torch._dynamo.reset()
    compiled = torch.compile(lambda M: ops.svd3x3(M)[1].sum() * 2, fullgraph=True, backend=backend)
    M = torch.randn(4, 3, 3)
    torch.testing.assert_close(compiled(M), ops.svd3x3(M)[1].sum() * 2)
    with pytest.raises(ValueError, match="M contains 1 non-finite"):
        compiled(_nan_at(M, 0))


def test_check_values_false_lets_values_through_under_compile():
    compiled = _compiled(lambda M: ops.svd3x3(M, check_values=False)[1])
    S = compiled(_nan_at(torch.randn(3, 3, 3), 0))
    assert torch.isnan(S[0]).all() and torch.isfinite(S[1:]).all()


# --- CUDA: no host synchronisation, capturable (needs a GPU and a CUDA build) -----------------------

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.cuda_built()), reason="needs a GPU and a CUDA build of pgnface"
)


def _cuda_calls():
    args = {k: v.cuda() for k, v in _synthesize_inputs().items()}
    pos, tris = (x.cuda() for x in _scene())
    src, dst, w = (x.cuda() for x in _alignment())
    M = torch.randn(64, 3, 3, device="cuda")
    attr = torch.randn(10, 3, device="cuda")
    index = torch.tensor([0, 3, 7], device="cuda")
    wide = tris.long()
    return [
        lambda: ops.synthesize(**args),
        lambda: ops.synthesize(**args, index=index),
        lambda: ops.interpolate(attr, ops.rasterize(pos, tris, 8), tris),
        lambda: ops.interpolate(attr, ops.rasterize(pos, wide, 8), wide),
        lambda: ops.svd3x3(M),
        lambda: ops.similarity_align(src, dst, w),
    ]


@needs_cuda
def test_default_checks_never_synchronise_on_cuda():
    calls = _cuda_calls()
    for call in calls:
        call()  # warm-up: first calls may initialise (and synchronise) the allocator and kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for call in calls:
            call()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@needs_cuda
def test_default_checks_are_captured_in_cuda_graphs():
    calls = _cuda_calls()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    torch.cuda.synchronize()
