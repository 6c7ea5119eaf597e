"""pgnface.ops.svd3x3: decomposition accuracy on hard matrices, gradients, opcheck, compile, bad input.

Stated tolerances, relative to max|M_ij| of each matrix:
    reconstruction |U diag(S) V^T - M|:   float32 4e-6,  float64 2e-14
    orthogonality  |U^T U - I|, |V^T V - I|: float32 2e-6, float64 1e-14
    singular values vs numpy (float64):   float32 4e-6,  float64 2e-14
"""

import numpy as np
import pytest
import torch
from op_harness import DEVICES, DTYPES, cpu_simd, requires_cuda

import pgnface.ops as ops

RECON_TOL = {torch.float32: 4e-6, torch.float64: 2e-14}
ORTHO_TOL = {torch.float32: 2e-6, torch.float64: 1e-14}
SVALS_TOL = {torch.float32: 4e-6, torch.float64: 2e-14}


def random_orthogonal(batch, generator, proper=None):
    """[batch, 3, 3] float64 random orthogonal matrices (det +1 if proper, -1 if not proper)."""
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, dtype=torch.float64, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    if proper is not None:
        want = 1.0 if proper else -1.0
        q[torch.det(q) * want < 0, :, 0] *= -1
    return q


def with_singular_values(svals, batch, seed):
    """Random U diag(svals) V^T in float64 for fixed singular values."""
    g = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(svals, dtype=torch.float64).expand(batch, 3)
    return random_orthogonal(batch, g) @ torch.diag_embed(s) @ random_orthogonal(batch, g).mT


def hard_matrices(seed=0):
    """Named [B, 3, 3] float64 batches covering the degenerate cases."""
    g = torch.Generator().manual_seed(seed)
    a, b = (
        torch.randn(50, 3, 1, dtype=torch.float64, generator=g),
        torch.randn(50, 1, 3, dtype=torch.float64, generator=g),
    )
    diag = torch.diag_embed(
        torch.tensor([[-1.0, 3.0, 2.0], [0.0, 5.0, 0.0], [2.0, 2.0, -2.0], [1e-3, 1.0, 1e3]], dtype=torch.float64)
    )
    return {
        "random": torch.randn(500, 3, 3, dtype=torch.float64, generator=g),
        "rank1": a @ b,
        "rank2": with_singular_values([3.0, 0.5, 0.0], 50, seed + 1),
        "repeated_top": with_singular_values([2.0, 2.0, 1.0], 50, seed + 2),
        "repeated_bottom": with_singular_values([3.0, 1.0, 1.0], 50, seed + 3),
        "all_equal": with_singular_values([1.5, 1.5, 1.5], 50, seed + 4),
        "identity": torch.eye(3, dtype=torch.float64).expand(4, 3, 3).clone(),
        "diagonal": diag,
        "reflection": random_orthogonal(50, g, proper=False),
        "det_negative": -random_orthogonal(50, g, proper=True)
        @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)),
        "ill_conditioned": with_singular_values([1.0, 1e-4, 1e-9], 50, seed + 5),
        "zero": torch.zeros(3, 3, 3, dtype=torch.float64),
    }


def check_svd(M, U, S, V):
    """Asserts (U, S, V) is an SVD of M within the stated tolerances (the definition, not a comparison)."""
    dtype = M.dtype
    M64, U64, S64, V64 = (x.detach().double().cpu() for x in (M, U, S, V))
    size = M64.abs().amax(dim=(1, 2)).clamp_min(torch.finfo(torch.float64).tiny)
    recon = U64 @ torch.diag_embed(S64) @ V64.mT
    recon_err = ((recon - M64).abs().amax(dim=(1, 2)) / size).max().item()
    assert recon_err <= RECON_TOL[dtype], f"reconstruction error {recon_err:.2e}"
    eye = torch.eye(3, dtype=torch.float64)
    for name, Q in (("U", U64), ("V", V64)):
        ortho = (Q.mT @ Q - eye).abs().max().item()
        assert ortho <= ORTHO_TOL[dtype], f"{name} orthogonality error {ortho:.2e}"
    assert (S64 >= 0).all(), "singular values must be non-negative"
    assert (S64[:, :-1] >= S64[:, 1:]).all(), "singular values must be sorted descending"
    expected = torch.from_numpy(np.linalg.svd(M64.numpy(), compute_uv=False))
    svals_err = ((S64 - expected).abs().amax(dim=1) / size).max().item()
    assert svals_err <= SVALS_TOL[dtype], f"singular value error {svals_err:.2e}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(hard_matrices()))
def test_decomposition_of_hard_matrices(device, dtype, case):
    M = hard_matrices()[case].to(device=device, dtype=dtype)
    U, S, V = ops.svd3x3(M)
    assert U.shape == M.shape and V.shape == M.shape and S.shape == M.shape[:2]
    check_svd(M, U, S, V)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e-37, 1e-20, 1e20, 1e37])
def test_tiny_and_huge_scales_are_as_accurate_as_unit_ones(device, dtype, magnitude):
    for M in (hard_matrices(1)["random"], hard_matrices(1)["rank2"]):
        M = (M * magnitude).to(device=device, dtype=dtype)
        U, S, V = ops.svd3x3(M)
        assert torch.isfinite(S).all() and torch.isfinite(U).all() and torch.isfinite(V).all()
        check_svd(M, U, S, V)


def test_known_values():
    M = torch.diag(torch.tensor([-1.0, 3.0, 2.0], dtype=torch.float64))[None]
    U, S, V = ops.svd3x3(M)
    torch.testing.assert_close(S[0], torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    U, S, V = ops.svd3x3(torch.zeros(2, 3, 3))
    eye = torch.eye(3).expand(2, 3, 3)
    assert torch.equal(S, torch.zeros(2, 3)) and torch.equal(U, eye) and torch.equal(V, eye)


def test_matches_torch_linalg_svd_up_to_signs():
    M = hard_matrices(2)["random"]
    U, S, V = ops.svd3x3(M)
    U_ref, S_ref, V_ref = ops.reference.svd3x3(M)
    torch.testing.assert_close(S, S_ref, rtol=1e-13, atol=1e-13)
    # Singular vectors agree up to the sign of each (u_i, v_i) pair.
    for i in range(3):
        outer = U[:, :, i, None] * V[:, None, :, i]
        outer_ref = U_ref[:, :, i, None] * V_ref[:, None, :, i]
        torch.testing.assert_close(outer, outer_ref, rtol=1e-9, atol=1e-9)


def invariant_outputs(U, S, V):
    """Functions of the SVD that do not depend on its sign (gauge) choices.

    U diag(a) V^T mixes the U and V parts of the derivative, U diag(b) U^T
    tests the U part alone, V diag(c) V^T the V part alone.
    """
    a = torch.tensor([0.3, -1.1, 2.0], dtype=U.dtype, device=U.device)
    b = torch.tensor([1.0, 0.2, -0.7], dtype=U.dtype, device=U.device)
    c = torch.tensor([-0.5, 1.3, 0.4], dtype=U.dtype, device=U.device)
    return (S, U @ torch.diag(a) @ V.mT, U @ torch.diag(b) @ U.mT, V @ torch.diag(c) @ V.mT)


def well_conditioned(batch, dtype, device, seed):
    """Matrices with singular values near (3, 2, 1): gaps of about 1."""
    g = torch.Generator().manual_seed(seed)
    s = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64) + 0.2 * torch.rand(
        batch, 3, dtype=torch.float64, generator=g
    )
    M = random_orthogonal(batch, g) @ torch.diag_embed(s) @ random_orthogonal(batch, g).mT
    return M.to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_torch_linalg_svd(device, dtype):
    M = well_conditioned(64, dtype, device, seed=3)
    g = torch.Generator().manual_seed(4)
    weights = [
        torch.randn(o.shape, generator=g, dtype=dtype).to(device) for o in invariant_outputs(*ops.reference.svd3x3(M))
    ]
    grads = []
    for fn in (ops.svd3x3, ops.reference.svd3x3):
        leaf = M.clone().requires_grad_(True)
        loss = sum((w * o).sum() for w, o in zip(weights, invariant_outputs(*fn(leaf))))
        loss.backward()
        grads.append(leaf.grad)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(grads[0], grads[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_well_conditioned(device):
    M = well_conditioned(4, torch.float64, device, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: invariant_outputs(*ops.svd3x3(x)), (M,))


@pytest.mark.parametrize("device", DEVICES)
def test_polar_factor_gradient_exact_at_repeated_singular_values(device):
    # U V^T is smooth at repeated singular values; the regularised backward keeps it exact.
    M = with_singular_values([2.0, 2.0, 1.0], 3, seed=6).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: (lambda U, S, V: U @ V.mT)(*ops.svd3x3(x)), (M,))
    M = torch.eye(3, dtype=torch.float64, device=device)[None].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: (lambda U, S, V: U @ V.mT)(*ops.svd3x3(x)), (M,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["rank1", "rank2", "repeated_top", "all_equal", "identity", "zero", "ill_conditioned"])
def test_gradients_finite_on_degenerate_matrices(device, dtype, case):
    M = hard_matrices()[case][:8].to(device=device, dtype=dtype).requires_grad_(True)
    U, S, V = ops.svd3x3(M)
    g = torch.Generator().manual_seed(7)
    loss = sum((torch.randn(o.shape, generator=g, dtype=dtype).to(device) * o).sum() for o in (U, S, V))
    loss.backward()
    assert torch.isfinite(M.grad).all()


def test_singular_value_gradient_is_u_v_outer_product():
    # dS_i/dM = u_i v_i^T, also at repeated values.
    for M in (hard_matrices(8)["random"][:20], hard_matrices(8)["all_equal"][:5]):
        M = M.clone().requires_grad_(True)
        U, S, V = ops.svd3x3(M)
        S[:, 1].sum().backward()
        torch.testing.assert_close(M.grad, U[:, :, 1, None] * V[:, None, :, 1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    M = well_conditioned(5, torch.float32, device, seed=9)
    for grad in (False, True):
        torch.library.opcheck(torch.ops.pgnface.svd3x3.default, (M.clone().requires_grad_(grad),))
    U, S, V = ops.svd3x3(M)
    grads = (torch.randn_like(U), torch.randn_like(S), torch.randn_like(V))
    torch.library.opcheck(torch.ops.pgnface.svd3x3_backward.default, (*grads, U, S, V))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_no_graph_break(backend):
    torch._dynamo.reset()

    def loss_fn(M):
        U, S, V = ops.svd3x3(M)
        return (U @ V.mT).square().sum() + S.sum() + (U[:, :, 0] * V[:, :, 0]).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend=backend)
    M = well_conditioned(6, torch.float32, "cpu", seed=10)
    eager_in, comp_in = M.clone().requires_grad_(True), M.clone().requires_grad_(True)
    eager, comp = loss_fn(eager_in), compiled(comp_in)
    torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-5)
    eager.backward()
    comp.backward()
    torch.testing.assert_close(comp_in.grad, eager_in.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_and_empty(device):
    M = hard_matrices(11)["random"][:30].to(device)
    strided = M.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    for a, b in zip(ops.svd3x3(strided), ops.svd3x3(M)):
        assert torch.equal(a, b)
    U, S, V = ops.svd3x3(torch.zeros(0, 3, 3, device=device))
    assert U.shape == (0, 3, 3) and S.shape == (0, 3) and V.shape == (0, 3, 3)


def test_non_finite_rejected_or_propagated_per_matrix():
    M = hard_matrices(12)["random"][:4].float()
    M[2, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="M contains 1 non-finite"):
        ops.svd3x3(M)
    U, S, V = ops.svd3x3(M, check_values=False)
    assert torch.isnan(S[2]).all() and torch.isnan(U[2]).all()
    assert torch.isfinite(S[[0, 1, 3]]).all() and torch.isfinite(U[[0, 1, 3]]).all()
    M[2, 1, 1] = float("inf")
    assert torch.isnan(ops.svd3x3(M, check_values=False)[1][2]).all()


@pytest.mark.parametrize(
    "M, error, message",
    [
        (torch.zeros(3, 3), ValueError, r"M must have shape \[B, 3, 3\], got \[3, 3\]"),
        (torch.zeros(2, 3, 4), ValueError, r"M must have shape \[B, 3, 3\]"),
        (torch.zeros(2, 3, 3, dtype=torch.int32), TypeError, "M must be float32 or float64"),
        (torch.zeros(2, 3, 3, dtype=torch.float16), TypeError, "M must be float32 or float64"),
        (np.zeros((2, 3, 3)), TypeError, "M must be a torch.Tensor"),
    ],
)
def test_bad_input_names_the_argument(M, error, message):
    with pytest.raises(error, match=message):
        ops.svd3x3(M)


def test_direct_op_call_with_bad_shapes_raises_not_crashes():
    with pytest.raises(RuntimeError, match="M must have 3 dimensions"):
        torch.ops.pgnface.svd3x3(torch.zeros(3, 3))
    U = torch.eye(3).expand(2, 3, 3).contiguous()
    with pytest.raises(RuntimeError, match="grad_S must have shape"):
        torch.ops.pgnface.svd3x3_backward(U, torch.zeros(2, 2), U, U, torch.ones(2, 3), U)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    for M in hard_matrices(13).values():
        M = M.to(dtype)
        cpu = ops.svd3x3(M)
        cuda = ops.svd3x3(M.cuda())
        check_svd(M, *cuda)
        torch.testing.assert_close(cuda[1].cpu(), cpu[1], rtol=1e-5, atol=1e-5 * float(M.abs().max()))


@requires_cuda
def test_cuda_graph_capture():
    M = well_conditioned(1000, torch.float32, "cuda", seed=14).requires_grad_(True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph
        sum(o.sum() for o in ops.svd3x3(M)).backward()
    torch.cuda.current_stream().wait_stream(stream)
    M.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        U, S, V = ops.svd3x3(M)
        S.sum().backward()
    graph.replay()
    torch.cuda.synchronize()
    check_svd(M, U, S, V)
    torch.testing.assert_close(
        M.grad,
        U[:, :, 0, None] * V[:, None, :, 0] + U[:, :, 1, None] * V[:, None, :, 1] + U[:, :, 2, None] * V[:, None, :, 2],
        rtol=1e-5,
        atol=1e-5,
    )


# --- SIMD path (one matrix per lane) against the scalar path (what CUDA runs) ------------------


def adversarial_matrices(dtype):
    """A [B, 3, 3] batch of hard matrices at unit, huge and tiny scales, in an order that mixes them within lanes."""
    base = torch.cat(list(hard_matrices(21).values()))
    big, small = (1e30, 1e-30) if dtype == torch.float64 else (1e18, 1e-18)
    g = torch.Generator().manual_seed(22)
    M = torch.cat([base, base * big, base * small]).to(dtype)
    return M[torch.randperm(M.shape[0], generator=g)]


def separated(S, rel):
    """[B, 3] mask of singular values at least rel * S[0] away from both neighbours."""
    gap = torch.full_like(S, float("inf"))
    diff = (S[:, :-1] - S[:, 1:]).abs()
    gap[:, :-1] = diff
    gap[:, 1:] = torch.minimum(gap[:, 1:], diff)
    return gap > rel * S[:, :1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_path_matches_scalar_path(dtype):
    M = adversarial_matrices(dtype)
    with cpu_simd(False):
        U0, S0, V0 = ops.svd3x3(M)
    with cpu_simd(True):
        U1, S1, V1 = ops.svd3x3(M)
    check_svd(M, U1, S1, V1)
    size = M.double().abs().amax(dim=(1, 2), keepdim=True)[:, :, 0]
    eps = torch.finfo(dtype).eps
    # Same arithmetic per lane; only where the compiler fuses a multiply-add differs.
    assert ((S1.double() - S0.double()).abs() <= 16 * eps * size).all()
    # Singular vectors are unique up to sign only for separated values (and the sign of a vector
    # whose value is 0 is rounding noise): compare their projectors u u^T, v v^T there.
    sep = separated(S0.double() / size.clamp_min(1e-300), 1e-3)
    for a, b in ((U0, U1), (V0, V1)):
        a, b = a.double(), b.double()
        err = (a[:, :, None, :] * a[:, None, :, :] - b[:, :, None, :] * b[:, None, :, :]).abs().amax(dim=(1, 2))
        assert (err[sep] <= 1e3 * eps).all(), err[sep].max()
    # Zero matrices are exact in both paths.
    zero = (M == 0).flatten(1).all(dim=1)
    assert zero.any() and torch.equal(U1[zero], U0[zero]) and torch.equal(S1[zero], S0[zero])


def test_simd_path_non_finite_and_ragged_batches():
    M = hard_matrices(23)["random"][:21].float()
    M[3, 1, 2] = float("nan")
    M[12, 0, 0] = float("inf")
    bad = torch.zeros(21, dtype=torch.bool)
    bad[[3, 12]] = True
    for B in (1, 3, 8, 9, 16, 17, 21):
        U, S, V = ops.svd3x3(M[:B], check_values=False)
        for out in (U, S, V):
            flat = out.flatten(1)
            assert flat[bad[:B]].isnan().all() and flat[~bad[:B]].isfinite().all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_lanes_are_independent(dtype):
    # Each matrix's result, bit for bit, whatever shares its SIMD group (position, neighbours, batch size).
    M = adversarial_matrices(dtype)[:45]
    U, S, V = ops.svd3x3(M)
    perm = torch.randperm(45, generator=torch.Generator().manual_seed(24))
    Up, Sp, Vp = ops.svd3x3(M[perm])
    assert torch.equal(Up, U[perm]) and torch.equal(Sp, S[perm]) and torch.equal(Vp, V[perm])
    for i in (0, 7, 44):
        Ui, Si, Vi = ops.svd3x3(M[i : i + 1])
        assert torch.equal(Ui[0], U[i]) and torch.equal(Si[0], S[i]) and torch.equal(Vi[0], V[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_backward_matches_scalar_path(dtype):
    M = with_singular_values([3.0, 1.0, 0.2], 37, 25).to(dtype)
    M = torch.cat([M, with_singular_values([2.0, 2.0, 1.0], 11, 26).to(dtype), torch.zeros(2, 3, 3, dtype=dtype)])
    U, S, V = ops.svd3x3(M)
    g = torch.Generator().manual_seed(27)
    grads = [torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype) for x in (U, S, V)]
    with cpu_simd(False):
        g0 = torch.ops.pgnface.svd3x3_backward(*grads, U, S, V)
    with cpu_simd(True):
        g1 = torch.ops.pgnface.svd3x3_backward(*grads, U, S, V)
    scale = g0.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1.0)
    assert ((g1 - g0).abs() <= 64 * torch.finfo(dtype).eps * scale).all()


def test_no_grad_calls_skip_the_python_autograd_layer():
    # pgnface.ops._no_autograd.call steps below autograd itself only where no gradient can flow.
    from pgnface.ops._no_autograd import call

    def autograd_excluded(*args):
        return torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.AutogradFunctionality)

    x, w = torch.randn(2, 3, 3), torch.randn(2, 3, 3, requires_grad=True)
    assert call(autograd_excluded, (x, None))
    assert not call(autograd_excluded, (x, w))  # a gradient can flow: full dispatch
    with torch.no_grad():
        assert call(autograd_excluded, (x, w))

    class Sub(torch.Tensor):
        pass

    assert not call(autograd_excluded, (x.as_subclass(Sub),))  # a subclass may dispatch anywhere


def test_no_grad_and_grad_calls_agree():
    M = torch.randn(5, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast = ops.svd3x3(M)
    leaf = M.clone().requires_grad_(True)
    full = ops.svd3x3(leaf)
    assert all(f.grad_fn is None for f in fast) and all(g.grad_fn is not None for g in full)
    for f, g in zip(fast, full):
        assert torch.equal(f, g.detach())
    with pytest.raises(ValueError, match="M contains 1 non-finite"):
        with torch.no_grad():
            ops.svd3x3(torch.tensor([[[float("nan"), 0, 0], [0, 1, 0], [0, 0, 1]]]))
