"""pgnface.ops.synthesize against its reference, gradcheck, opcheck, torch.compile, bad input."""

import numpy as np
import pytest
import torch
from op_harness import (
    DEVICES,
    DTYPES,
    assert_matches_reference,
    cpu_simd_width,
    requires_cuda,
    shared_data_file,
    tolerances,
)

import pgnface.ops as ops

POSE_NAMES = ("coeffs", "rotation", "scale", "translation")
ALL_NAMES = ("mean", "basis") + POSE_NAMES


def random_rotations(batch, dtype, generator):
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    q[torch.det(q) < 0, :, 0] *= -1  # proper rotations
    return q.to(dtype)


def make_inputs(B, N, K, dtype=torch.float64, device="cpu", seed=0):
    """Random model and pose of the given sizes (model values of unit scale)."""
    g = torch.Generator().manual_seed(seed)
    args = dict(
        mean=torch.randn(N, 3, dtype=dtype, generator=g),
        basis=torch.randn(N, 3, K, dtype=dtype, generator=g) / max(K, 1) ** 0.5,
        coeffs=torch.randn(B, K, dtype=dtype, generator=g),
        rotation=random_rotations(B, dtype, g),
        scale=torch.rand(B, dtype=dtype, generator=g) + 0.5,
        translation=torch.randn(B, 3, dtype=dtype, generator=g),
    )
    return {k: v.to(device) for k, v in args.items()}


# (B, N, K): odd N (half-filled CPU vertex tile), B around every CUDA batch
# tile (4 / 16 / 32) and the CPU lane counts (8 / 16), K below and above the
# CUDA shared-memory stage (16 / 32 components), K = 1. B = 8 in float32 is a
# single CPU lane vector; K = 17 / 40 / 70 / 33 leave partial component tiles.
SIZES = [(1, 7, 3), (3, 37, 5), (4, 33, 1), (8, 45, 13), (9, 64, 17), (17, 101, 40), (33, 150, 70), (70, 65, 33)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,K", SIZES)
def test_matches_reference_values_and_gradients(device, dtype, B, N, K):
    args = make_inputs(B, N, K, dtype, device, seed=B * 1000 + N + K)
    rtol, atol = tolerances(dtype)
    assert_matches_reference(ops.synthesize, ops.reference.synthesize, args, ALL_NAMES, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
def test_pose_only_gradients_skip_model_gradients(device):
    args = make_inputs(5, 40, 6, torch.float64, device)
    rtol, atol = tolerances(torch.float64)
    assert_matches_reference(ops.synthesize, ops.reference.synthesize, args, POSE_NAMES, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_all_inputs(device):
    args = make_inputs(3, 9, 4, torch.float64, device, seed=1)
    inputs = tuple(args[n].clone().requires_grad_(True) for n in ALL_NAMES)
    assert torch.autograd.gradcheck(lambda *x: ops.synthesize(*x), inputs)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_pose_and_coefficients(device):
    args = make_inputs(6, 11, 3, torch.float64, device, seed=2)
    mean, basis = args["mean"], args["basis"]
    inputs = tuple(args[n].clone().requires_grad_(True) for n in POSE_NAMES)
    assert torch.autograd.gradcheck(lambda *x: ops.synthesize(mean, basis, *x), inputs)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for B, N, K in [(2, 5, 3), (5, 17, 9)]:
        args = make_inputs(B, N, K, torch.float32, device, seed=3)
        for grad in (False, True):
            inputs = tuple(args[n].clone().requires_grad_(grad) for n in ALL_NAMES)
            torch.library.opcheck(torch.ops.pgnface.synthesize.default, inputs)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_no_graph_break(backend):
    torch._dynamo.reset()
    args = make_inputs(4, 30, 6, torch.float32, "cpu", seed=4)

    def loss_fn(mean, basis, coeffs, rotation, scale, translation):
        verts = ops.synthesize(mean, basis, coeffs, rotation, scale, translation)
        return (verts**2).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend=backend)
    eager_args = {k: v.clone().requires_grad_(k in POSE_NAMES) for k, v in args.items()}
    comp_args = {k: v.clone().requires_grad_(k in POSE_NAMES) for k, v in args.items()}
    eager = loss_fn(**eager_args)
    comp = compiled(**comp_args)
    torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-5)
    eager.backward()
    comp.backward()
    for name in POSE_NAMES:
        torch.testing.assert_close(comp_args[name].grad, eager_args[name].grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_default_pose_and_float_scale(device):
    args = make_inputs(3, 20, 4, torch.float64, device)
    mean, basis, coeffs = args["mean"], args["basis"], args["coeffs"]
    expected = ops.reference.synthesize(mean, basis, coeffs)
    torch.testing.assert_close(ops.synthesize(mean, basis, coeffs), expected)
    torch.testing.assert_close(ops.synthesize(mean, basis, coeffs, scale=2.5), 2.5 * expected)
    t = args["translation"]
    torch.testing.assert_close(ops.synthesize(mean, basis, coeffs, translation=t), expected + t[:, None, :])


@pytest.mark.parametrize("device", DEVICES)
def test_index_synthesizes_only_selected_vertices(device):
    args = make_inputs(4, 50, 6, torch.float64, device)
    index = torch.tensor([0, 7, 49, 7, 13], device=device)
    full = ops.synthesize(**args)
    torch.testing.assert_close(ops.synthesize(**args, index=index), full[:, index])
    torch.testing.assert_close(ops.synthesize(**args, index=index.int()), full[:, index])
    # Gradients reach the selected model rows only.
    basis = args["basis"].clone().requires_grad_(True)
    ops.synthesize(args["mean"], basis, args["coeffs"], index=index).sum().backward()
    touched = basis.grad.abs().sum(dim=(1, 2)) > 0
    assert touched.nonzero().flatten().tolist() == [0, 7, 13, 49]


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    args = make_inputs(5, 23, 7, torch.float64, device)
    strided = {
        "mean": args["mean"].t().contiguous().t(),
        "basis": args["basis"].permute(2, 0, 1).contiguous().permute(1, 2, 0),
        "coeffs": torch.stack([args["coeffs"], args["coeffs"]], dim=2).flatten(1)[:, ::2],
        "rotation": args["rotation"].transpose(1, 2).contiguous().transpose(1, 2),
        "scale": torch.stack([args["scale"], args["scale"]], dim=1)[:, 0],
        "translation": args["translation"].t().contiguous().t(),
    }
    assert not any(v.is_contiguous() for v in strided.values())
    rtol, atol = tolerances(torch.float64)
    assert_matches_reference(ops.synthesize, ops.reference.synthesize, strided, ALL_NAMES, rtol=rtol, atol=atol)
    torch.testing.assert_close(ops.synthesize(**strided), ops.synthesize(**args))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_empty_mesh(device):
    args = make_inputs(0, 12, 4, torch.float32, device)
    args = {k: v.requires_grad_(True) for k, v in args.items()}
    out = ops.synthesize(**args)
    assert out.shape == (0, 12, 3)
    out.sum().backward()
    assert args["mean"].grad.shape == (12, 3) and not args["mean"].grad.any()
    args = make_inputs(3, 0, 4, torch.float32, device)
    assert ops.synthesize(**args).shape == (3, 0, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_no_basis_components(device):
    args = make_inputs(3, 10, 0, torch.float64, device)
    torch.testing.assert_close(ops.synthesize(**args), ops.reference.synthesize(**args))


def test_deterministic_backward():
    args = make_inputs(40, 3000, 30, torch.float32, "cpu", seed=5)
    grads = []
    for _ in range(2):
        leaves = {k: v.clone().requires_grad_(True) for k, v in args.items()}
        ops.synthesize(**leaves).square().sum().backward()
        grads.append([leaves[n].grad for n in ALL_NAMES])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def pose_of_every_backward_path(B, dtype, seed=0):
    """Inputs whose items cover both backward paths (the output's p = out - t, or a recompute).

    Items 0-6 of 7 or more: scale 0, 1e-300 (0 in float32), 1e-12 and 1e-3 (t swamps
    s R shape: recompute); a singular rotation (an orthographic projection: recompute); a
    well-conditioned general matrix and, at scale 1, a translation of 5 model scales per axis
    (the output path). The rest: random rotations and scales (the output path). B = 4 (the CPU
    small-batch schedule) takes items 0, 5, 3, 6.

    Returns:
        The inputs as a dict and the indices of the items that take the recompute path.
    """
    args = make_inputs(max(B, 7), 61, 7, dtype, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    args["scale"][:4] = torch.tensor([0.0, 1e-300, 1e-12, 1e-3], dtype=torch.float64).to(dtype)
    args["rotation"][4] = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=dtype))
    args["rotation"][5] = torch.eye(3, dtype=dtype) + 0.3 * torch.randn(3, 3, generator=g, dtype=dtype)
    args["scale"][6] = 1
    args["translation"][6] = 5 * args["mean"].abs().max()
    items = [0, 5, 3, 6] if B == 4 else list(range(B))
    args = {k: v if k in ("mean", "basis") else v[items] for k, v in args.items()}
    return args, [i for i, item in enumerate(items) if item <= 4]


@pytest.mark.parametrize("B", [4, 9, 20])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_paths_match_the_reference_per_item(B, dtype):
    args, _ = pose_of_every_backward_path(B, dtype)
    index = torch.tensor([3, 60, 0, 17, 3])

    def reference(args, upstream, kwargs):
        leaves = {k: v.detach().double().clone().requires_grad_(k in POSE_NAMES) for k, v in args.items()}
        model = {k: leaves[k][kwargs["index"]] if kwargs else leaves[k] for k in ("mean", "basis")}
        ops.reference.synthesize(**model, **{n: leaves[n] for n in POSE_NAMES}).backward(upstream)
        return {n: leaves[n].grad for n in POSE_NAMES}

    for kwargs in ({}, {"index": index}):
        ours = {k: v.clone().requires_grad_(k in POSE_NAMES) for k, v in args.items()}
        out = ops.synthesize(**ours, **kwargs)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        out.backward(upstream.to(dtype))
        want = reference(args, upstream, kwargs)
        # Each gradient against the sum of its terms' magnitudes (the gradient of |inputs| under
        # |upstream|): a tiny scale makes the rotation gradient tiny too, and cancelling terms
        # make the scale gradient small; plain tolerances would check nothing or too much.
        size = reference({k: v.abs() for k, v in args.items()}, upstream.abs(), kwargs)
        tol = 2e-5 if dtype == torch.float32 else 1e-13
        for name in POSE_NAMES:
            err = (ours[name].grad.double() - want[name]).abs()
            bad = err > tol * size[name]
            assert not bad.any(), (name, kwargs, bad.nonzero().tolist(), err[bad], size[name][bad])


@pytest.mark.parametrize("B", [4, 9])
def test_gradcheck_on_every_backward_path(B):
    args, _ = pose_of_every_backward_path(B, torch.float64, seed=3)
    args = {k: v[:9] if k in ("mean", "basis") else v for k, v in args.items()}
    inputs = tuple(args[n].clone().requires_grad_(True) for n in ALL_NAMES)
    assert torch.autograd.gradcheck(lambda *x: ops.synthesize(*x), inputs)


@pytest.mark.parametrize("B", [4, 7, 9, 20])
@pytest.mark.parametrize("dtype", DTYPES)
def test_output_path_is_taken_exactly_where_it_is_accurate(B, dtype):
    # Shifting the output the backward receives moves the pose gradients of the items it
    # serves and leaves those of recomputed items (and every coefficient gradient) alone.
    args, recomputed = pose_of_every_backward_path(B, dtype)
    out = ops.synthesize(**args)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    call = [*args.values(), False]
    exact = torch.ops.pgnface.synthesize_backward(grad_out, out, *call)
    shifted = torch.ops.pgnface.synthesize_backward(grad_out, out + 0.5, *call)
    moved = [b for b in range(B) if not torch.equal(exact[3][b], shifted[3][b])]
    assert moved == [b for b in range(B) if b not in recomputed]
    assert torch.equal(exact[3][recomputed], shifted[3][recomputed])  # rotation
    assert torch.equal(exact[4][recomputed], shifted[4][recomputed])  # scale
    assert torch.equal(exact[2], shifted[2])  # coeffs
    assert torch.equal(exact[5], shifted[5])  # translation


def test_non_finite_coefficients_rejected_or_propagated_per_item():
    args = make_inputs(3, 10, 4, torch.float32, "cpu")
    args["coeffs"][1, 2] = float("nan")
    with pytest.raises(ValueError, match="coeffs contains 1 non-finite"):
        ops.synthesize(**args)
    out = ops.synthesize(**args, check_values=False)
    assert torch.isnan(out[1]).all()
    assert torch.isfinite(out[[0, 2]]).all()
    args = make_inputs(3, 10, 4, torch.float32, "cpu")
    args["translation"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="translation contains"):
        ops.synthesize(**args)


# B = 2: the CPU small-batch schedule (checked by its first vertex task); 9 and 20: the
# lane schedule's narrow and wide batch tiles (checked as coeffs and the pose are packed).
@pytest.mark.parametrize("B", [2, 9, 20])
@pytest.mark.parametrize("dtype", DTYPES)
def test_value_check_status_bits_on_every_cpu_schedule(B, dtype):
    args = make_inputs(B, 13, 11, dtype, "cpu")
    names = ("coeffs", "rotation", "scale", "translation")
    assert torch.ops.pgnface.synthesize(*args.values(), 1)[1].tolist() == [0]
    for bit, name in enumerate(names):
        for value in (float("nan"), float("-inf")):
            bad = dict(args, **{name: args[name].clone(memory_format=torch.contiguous_format)})
            bad[name].view(-1)[-1] = value
            out, status = torch.ops.pgnface.synthesize(*bad.values(), 1)
            assert status.tolist() == [1 << bit], (name, value)
            assert torch.isfinite(out[:-1]).all()  # recorded, then computed as usual
            with pytest.raises(ValueError, match=f"{name} contains 1 non-finite"):
                ops.synthesize(**bad)
            assert torch.ops.pgnface.synthesize(*bad.values(), 0)[1].tolist() == [0]


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(mean=torch.zeros(10, 2)), ValueError, r"mean must have shape \[N, 3\]"),
        (dict(basis=torch.zeros(9, 3, 4)), ValueError, r"basis must have shape \[N, 3, K\] = \[10, 3, K\]"),
        (dict(coeffs=torch.zeros(3, 5)), ValueError, r"coeffs must have shape \[B, K\] = \[3, 4\]"),
        (dict(coeffs=torch.zeros(4)), ValueError, r"for a single face pass coeffs\[None\]"),
        (dict(rotation=torch.zeros(3, 3)), ValueError, r"rotation must have shape \[B, 3, 3\]"),
        (dict(scale=torch.ones(2)), ValueError, r"scale must have shape \[B\] = \[3\]"),
        (dict(translation=torch.zeros(3, 2)), ValueError, r"translation must have shape \[B, 3\]"),
        (dict(coeffs=torch.zeros(3, 4, dtype=torch.float64)), TypeError, "coeffs must have dtype torch.float32"),
        (dict(mean=torch.zeros(10, 3, dtype=torch.int64)), TypeError, "mean must be float32 or float64"),
        (dict(basis=np.zeros((10, 3, 4))), TypeError, "basis must be a torch.Tensor"),
        (dict(rotation=torch.zeros(3, 3, 3, device="meta")), ValueError, "rotation must be on cpu"),
    ],
)
def test_bad_input_names_the_argument(change, error, message):
    args = make_inputs(3, 10, 4, torch.float32, "cpu")
    args.update(change)
    with pytest.raises(error, match=message):
        ops.synthesize(**args)


def test_bad_index():
    args = make_inputs(2, 10, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match=r"index must lie in \[0, 9\], got values in \[-1, 3\]"):
        ops.synthesize(**args, index=torch.tensor([3, -1]))
    with pytest.raises(ValueError, match=r"index must lie in \[0, 9\]"):
        ops.synthesize(**args, index=torch.tensor([10]))
    with pytest.raises(TypeError, match="index must be an int32 or int64 tensor"):
        ops.synthesize(**args, index=torch.tensor([1.0]))


def test_direct_op_call_with_bad_shapes_raises_not_crashes():
    args = make_inputs(3, 10, 4, torch.float32, "cpu")
    with pytest.raises(RuntimeError, match=r"basis.shape\[0\] must be 10"):
        torch.ops.pgnface.synthesize(
            args["mean"], args["basis"][:5], args["coeffs"], args["rotation"], args["scale"], args["translation"]
        )
    with pytest.raises(RuntimeError, match="grad_out must have shape"):
        torch.ops.pgnface.synthesize_backward(torch.zeros(3, 9, 3), torch.zeros(3, 10, 3), *args.values(), False)
    with pytest.raises(RuntimeError, match="out must have shape"):
        torch.ops.pgnface.synthesize_backward(torch.zeros(3, 10, 3), torch.zeros(3, 9, 3), *args.values(), False)


requires_avx512 = pytest.mark.skipif(
    torch.ops.pgnface.max_cpu_simd_width() < 512, reason="the CPU (or this build) has no AVX-512 kernels"
)


def forward_and_backward(args):
    """The synthesize op's outputs, then its backward op's (model gradients included) on a fixed upstream."""
    out, status = torch.ops.pgnface.synthesize(*args.values())
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(11), dtype=out.dtype)
    return [out, status, *torch.ops.pgnface.synthesize_backward(upstream, out, *args.values(), True)]


# The 512-bit kernels run batches above one 256-bit vector (B > 8 in float32, B > 4 in
# float64): B = 64 fills four float32 vectors, 9 / 17 / 33 / 70 leave a partial last one (and a
# single-vector tile), N = 45 / 101 / 150 / 65 partial vertex tiles, K = 13 / 40 / 70 / 33
# partial component tiles.
@requires_avx512
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,K", [(9, 45, 13), (17, 101, 40), (33, 150, 70), (64, 203, 50), (70, 65, 33)])
def test_avx512_matches_reference(dtype, B, N, K):
    args = make_inputs(B, N, K, dtype, seed=B * 1000 + N + K)
    rtol, atol = tolerances(dtype)
    with cpu_simd_width(512):
        assert_matches_reference(ops.synthesize, ops.reference.synthesize, args, ALL_NAMES, rtol=rtol, atol=atol)


@requires_avx512
@pytest.mark.parametrize("B", [6, 9])
def test_avx512_gradcheck(B):
    # B = 9: items 0-4 take the recompute path and the rest the output path (pose_of_every_backward_path).
    args, _ = pose_of_every_backward_path(B, torch.float64, seed=4)
    args = {k: v[:11] if k in ("mean", "basis") else v for k, v in args.items()}
    inputs = tuple(args[n].clone().requires_grad_(True) for n in ALL_NAMES)
    with cpu_simd_width(512):
        assert torch.autograd.gradcheck(lambda *x: ops.synthesize(*x), inputs)


@requires_avx512
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,K", [(5, 37, 7), (9, 45, 13), (17, 101, 40), (20, 61, 7), (33, 150, 70), (64, 203, 50)])
def test_avx512_equals_avx2_bit_for_bit(dtype, B, N, K):
    # Each lane sums over the components and the vertices in the same order at either vector
    # size, so the 512- and 256-bit kernels agree exactly, forward and backward, on both
    # backward paths (B = 20: pose_of_every_backward_path's recomputed items among the rest).
    if B == 20:
        args, _ = pose_of_every_backward_path(B, dtype)
    else:
        args = make_inputs(B, N, K, dtype, seed=B + N + K)
    with cpu_simd_width(256):
        narrow = forward_and_backward(args)
    with cpu_simd_width(512):
        wide = forward_and_backward(args)
    for i, (a, b) in enumerate(zip(narrow, wide)):
        assert torch.equal(a, b), i


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bits", [256, 512])
@pytest.mark.parametrize(
    "dtype,B,N,parts", [(torch.float32, 24, 15_001, 2), (torch.float64, 12, 15_001, 2), (torch.float32, 600, 2_001, 4)]
)
def test_large_output_matches_vertex_parts(threads, bits, dtype, B, N, parts):
    # The whole output passes the 4 MiB beyond which the CPU twin stages its output and streams it
    # past the cache (csrc/common/cpu_stream.h); each part of the vertices stays below it. Item
    # rows of N x 3 values start at every 4-byte offset within a cache line, so the copies meet
    # partial lines at both ends; B = 600 stages fewer vertices per piece. All must agree bit for
    # bit, and with the reference.
    if bits > torch.ops.pgnface.max_cpu_simd_width():
        pytest.skip("the CPU (or this build) has no AVX-512 kernels")
    args = make_inputs(B, N, 5, dtype, seed=3)
    bounds = [N * i // parts // 4 * 4 for i in range(parts)] + [N]
    pieces = [{**args, "mean": args["mean"][a:b], "basis": args["basis"][a:b]} for a, b in zip(bounds[:-1], bounds[1:])]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with cpu_simd_width(bits):
            whole = ops.synthesize(**args)
            by_parts = [ops.synthesize(**piece) for piece in pieces]
    finally:
        torch.set_num_threads(before)
    assert whole.nbytes >= 4 << 20 and max(part.nbytes for part in by_parts) < 4 << 20
    assert torch.equal(whole, torch.cat(by_parts, dim=1))
    rtol, atol = tolerances(dtype)
    torch.testing.assert_close(whole, ops.reference.synthesize(**args), rtol=rtol, atol=atol)


def test_cpu_simd_width_rejects_other_sizes():
    with pytest.raises(RuntimeError, match="bits must be 256 or 512"):
        torch.ops.pgnface.set_cpu_simd_width(128)
    assert torch.ops.pgnface.max_cpu_simd_width() in (256, 512)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu_on_large_batch(dtype):
    args = make_inputs(70, 2000, 50, dtype, "cpu", seed=6)
    cpu = ops.synthesize(**args)
    cuda = ops.synthesize(**{k: v.cuda() for k, v in args.items()})
    rtol, atol = tolerances(dtype, 10.0)
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=rtol, atol=atol)


@requires_cuda
def test_cuda_graph_capture():
    args = make_inputs(8, 500, 20, torch.float32, "cuda", seed=7)
    leaves = {k: v.clone().requires_grad_(k in POSE_NAMES) for k, v in args.items()}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph
        ops.synthesize(**leaves).sum().backward()
    torch.cuda.current_stream().wait_stream(stream)
    for v in leaves.values():
        v.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.synthesize(**leaves)
        out.square().sum().backward()
    graph.replay()
    torch.cuda.synchronize()
    expected = ops.reference.synthesize(**args)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_real_surrey_model_and_landmarks():
    path = shared_data_file("sfm3448.npz")
    data = np.load(path)
    mean = torch.from_numpy(data["mean"]).double()
    basis = torch.from_numpy(data["basis"] * data["std"]).double()  # coefficients in units of std
    basis = torch.cat([basis, torch.from_numpy(data["expr_blendshapes"]).double()], dim=2)
    g = torch.Generator().manual_seed(8)
    B, K = 4, basis.shape[2]
    coeffs = torch.randn(B, K, generator=g, dtype=torch.float64)
    args = dict(
        mean=mean,
        basis=basis,
        coeffs=coeffs,
        rotation=random_rotations(B, torch.float64, g),
        scale=torch.full((B,), 0.01, dtype=torch.float64),
        translation=torch.randn(B, 3, generator=g, dtype=torch.float64),
    )
    out = assert_matches_reference(ops.synthesize, ops.reference.synthesize, args, POSE_NAMES, rtol=1e-9, atol=1e-9)
    landmarks = torch.from_numpy(data["ibug68_idx"]).long()
    defined = landmarks[landmarks >= 0]
    assert len(defined) == 50
    torch.testing.assert_close(ops.synthesize(**args, index=defined), out[:, defined])
    # The mean face at coefficient 0 is the model's mean, nose tip (iBUG 31) frontmost.
    zero = ops.synthesize(mean, basis, torch.zeros(1, K, dtype=torch.float64))[0]
    torch.testing.assert_close(zero, mean)
    assert int(landmarks[30]) == 114
