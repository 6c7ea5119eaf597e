"""pgnface.ops.similarity_align and the pose helpers: recovery, reference, gradients, degenerate and bad input."""

import numpy as np
import pytest
import torch
from op_harness import (
    DEVICES,
    DTYPES,
    assert_matches_reference,
    cpu_simd,
    requires_cuda,
    shared_data_file,
    tolerances,
)

import pgnface.ops as ops


def euler_rotation(yaw, pitch, roll, dtype=torch.float64):
    """R = Rz(roll) Ry(yaw) Rx(pitch) from [B] angles in degrees (the documented convention)."""
    y, p, r = (torch.deg2rad(torch.as_tensor(a, dtype=dtype)) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    Rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], -1)
    Ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1)
    Rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], -1)
    shape = y.shape + (3, 3)
    return Rz.reshape(shape) @ Ry.reshape(shape) @ Rx.reshape(shape)


def make_problem(B, P, dtype=torch.float64, device="cpu", noise=0.0, seed=0, yaw=None):
    """Random src points and a known similarity; dst = s R src + t (+ Gaussian noise)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(B, P, 3, dtype=torch.float64, generator=g) * torch.tensor([1.0, 1.3, 0.6], dtype=torch.float64)
    angles = (torch.rand(B, 3, dtype=torch.float64, generator=g) * 2 - 1) * torch.tensor(
        [80.0, 40.0, 30.0], dtype=torch.float64
    )
    if yaw is not None:
        angles[:, 0] = yaw
    R = euler_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
    scale = torch.rand(B, dtype=torch.float64, generator=g) * 2 + 0.5
    t = torch.randn(B, 3, dtype=torch.float64, generator=g) * 5
    dst = scale[:, None, None] * src @ R.mT + t[:, None]
    dst = dst + noise * torch.randn(dst.shape, dtype=torch.float64, generator=g)
    weights = torch.rand(B, P, dtype=torch.float64, generator=g) + 0.1
    out = dict(src=src, dst=dst, weights=weights, scale=scale, R=R, t=t, angles=angles)
    return {k: v.to(device=device, dtype=dtype) for k, v in out.items()}


def flat_align(src, dst, weights=None, estimate_scale=True, fn=None):
    """(scale, R, t) flattened to one [B, 13] tensor, so the harness can compare values and gradients."""
    scale, R, t = fn(src, dst, weights, estimate_scale)
    return torch.cat([scale[:, None], R.flatten(1), t], dim=1)


def ours(**kw):
    return flat_align(**kw, fn=ops.similarity_align)


def reference(**kw):
    return flat_align(**kw, fn=ops.reference.similarity_align)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("yaw", [None, 89.0, -89.9])
def test_recovers_known_similarity_from_noiseless_points(device, dtype, yaw):
    prob = make_problem(64, 68, dtype, device, seed=1, yaw=yaw)
    for weights in (None, prob["weights"]):
        scale, R, t = ops.similarity_align(prob["src"], prob["dst"], weights)
        tol = 2e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(scale, prob["scale"], rtol=tol, atol=tol)
        torch.testing.assert_close(R, prob["R"], rtol=tol, atol=tol)
        torch.testing.assert_close(t, prob["t"], rtol=tol, atol=tol * 10)
        torch.testing.assert_close(torch.det(R), torch.ones_like(scale), rtol=tol, atol=tol)
    if yaw is not None:
        angles = ops.rotation_to_angles(R)
        torch.testing.assert_close(angles[:, 0], prob["angles"][:, 0], rtol=0, atol=0.05)


@pytest.mark.parametrize("device", DEVICES)
def test_recovers_known_similarity_from_noisy_points(device):
    prob = make_problem(200, 68, torch.float64, device, noise=0.02, seed=2)
    scale, R, t = ops.similarity_align(prob["src"], prob["dst"])
    # 68 points at noise 0.02 against a spread of about 1: errors below a degree.
    angle_err = torch.rad2deg(
        torch.arccos(((R.mT @ prob["R"]).diagonal(dim1=1, dim2=2).sum(1) - 1).div(2).clamp(-1, 1))
    )
    assert angle_err.max() < 1.5
    assert ((scale / prob["scale"]) - 1).abs().max() < 0.02
    # And it is the least-squares optimum: the reference solves the same problem.
    ref = ops.reference.similarity_align(prob["src"], prob["dst"])
    for a, b in zip((scale, R, t), ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_weights", [False, True])
@pytest.mark.parametrize("estimate_scale", [True, False])
def test_matches_reference_values_and_gradients(device, dtype, with_weights, estimate_scale):
    prob = make_problem(33, 21, dtype, device, noise=0.3, seed=3)
    args = dict(
        src=prob["src"],
        dst=prob["dst"],
        weights=prob["weights"] if with_weights else None,
        estimate_scale=estimate_scale,
    )
    grad_names = ("src", "dst", "weights") if with_weights else ("src", "dst")
    rtol, atol = tolerances(dtype, 10.0)
    assert_matches_reference(ours, reference, args, grad_names, rtol=rtol, atol=atol)


def test_reflection_is_never_returned():
    # A mirrored copy is best fitted by a reflection; the op must return a rotation.
    prob = make_problem(40, 30, seed=4)
    mirrored = prob["dst"] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    scale, R, t = ops.similarity_align(prob["src"], mirrored)
    torch.testing.assert_close(torch.det(R), torch.ones(40, dtype=torch.float64))
    for a, b in zip((scale, R, t), ops.reference.similarity_align(prob["src"], mirrored)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("estimate_scale", [True, False])
def test_gradcheck(device, estimate_scale):
    prob = make_problem(3, 6, torch.float64, device, noise=0.2, seed=5)
    inputs = tuple(prob[n].clone().requires_grad_(True) for n in ("src", "dst", "weights"))
    assert torch.autograd.gradcheck(lambda s, d, w: ops.similarity_align(s, d, w, estimate_scale), inputs)
    assert torch.autograd.gradcheck(lambda s, d: ops.similarity_align(s, d, None, estimate_scale), inputs[:2])


@pytest.mark.parametrize("device", DEVICES)
def test_degenerate_items_give_the_documented_result(device):
    prob = make_problem(5, 8, torch.float64, device, seed=6)
    src, dst, w = prob["src"].clone(), prob["dst"].clone(), prob["weights"].clone()
    w[0] = 0.0  # no weight at all
    src[1] = src[1, :1]  # all src points coincide
    w[2, 1:] = 0.0  # one effective point
    src[3] = src[3, :1] * torch.linspace(-1, 1, 8, dtype=src.dtype, device=device)[:, None]  # collinear
    leaves = [x.clone().requires_grad_(True) for x in (src, dst, w)]
    scale, R, t = ops.similarity_align(*leaves)
    eye = torch.eye(3, dtype=src.dtype, device=device)
    torch.testing.assert_close(R[0], eye)
    torch.testing.assert_close(scale[0], torch.ones((), dtype=src.dtype, device=device))
    torch.testing.assert_close(t[0], torch.zeros(3, dtype=src.dtype, device=device))
    for b in (1, 2):
        mu_src = (w[b, :, None] * src[b]).sum(0) / w[b].sum()
        mu_dst = (w[b, :, None] * dst[b]).sum(0) / w[b].sum()
        torch.testing.assert_close(R[b], eye)
        torch.testing.assert_close(scale[b], torch.ones((), dtype=src.dtype, device=device))
        torch.testing.assert_close(t[b], mu_dst - mu_src)
    # Collinear src: still a rotation, and the line is mapped onto dst's best-fit line.
    torch.testing.assert_close(R[3] @ R[3].T, eye)
    torch.testing.assert_close(torch.det(R[3]), torch.ones((), dtype=src.dtype, device=device))
    g = torch.Generator().manual_seed(7)
    loss = sum((torch.randn(o.shape, generator=g, dtype=o.dtype).to(device) * o).sum() for o in (scale, R, t))
    loss.backward()
    for leaf in leaves:
        assert torch.isfinite(leaf.grad).all()
    for leaf in leaves:
        assert not leaf.grad[0].any(), "an item without weight must receive no gradient"


def test_symmetric_point_set_with_repeated_singular_values_has_finite_gradients():
    # A regular tetrahedron mapped onto itself: the cross-covariance is a multiple of I.
    tet = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    src = tet[None].clone().requires_grad_(True)
    dst = tet[None].clone().requires_grad_(True)
    scale, R, t = ops.similarity_align(src, dst)
    torch.testing.assert_close(R[0], torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(scale, torch.ones(1, dtype=torch.float64))
    (R.sum() + scale.sum() + t.sum()).backward()
    assert torch.isfinite(src.grad).all() and torch.isfinite(dst.grad).all()
    # R is smooth there (the polar factor of a non-singular matrix): exact gradient.
    assert torch.autograd.gradcheck(
        lambda s, d: ops.similarity_align(s, d)[1],
        (src.detach().clone().requires_grad_(True), dst.detach().clone().requires_grad_(True)),
    )


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    prob = make_problem(4, 9, torch.float32, device, noise=0.1, seed=8)
    for grad in (False, True):
        src, dst, w = (prob[n].clone().requires_grad_(grad) for n in ("src", "dst", "weights"))
        torch.library.opcheck(torch.ops.pgnface.similarity_align.default, (src, dst, w, True))
        torch.library.opcheck(torch.ops.pgnface.similarity_align.default, (src, dst, None, False))
    src, dst, w = prob["src"], prob["dst"], prob["weights"]
    grads = (torch.randn(4, device=device), torch.randn(4, 3, 3, device=device), torch.randn(4, 3, device=device))
    backward = torch.ops.pgnface.similarity_align_backward.default
    sums = torch.ops.pgnface.similarity_align(src, dst, w, True)[3]
    torch.library.opcheck(backward, (*grads, src, dst, w, sums, True))
    sums = torch.ops.pgnface.similarity_align(src, dst, None, True)[3]
    torch.library.opcheck(backward, (*grads, src, dst, None, sums, True))


def expected_sums(src, dst, weights):
    """[B, 17]: W, sum w src, sum w dst, then over centred points sum w dst_c src_c^T (row-major), sum w |src_c|^2."""
    w = torch.ones(src.shape[:2], dtype=src.dtype) if weights is None else weights
    W = w.sum(1)
    sx, sy = (w[..., None] * src).sum(1), (w[..., None] * dst).sum(1)
    xc, yc = src - (sx / W[:, None])[:, None], dst - (sy / W[:, None])[:, None]
    cov = torch.einsum("bp,bpi,bpj->bij", w, yc, xc)
    var = (w * xc.square().sum(-1)).sum(1)
    return torch.cat([W[:, None], sx, sy, cov.flatten(1), var[:, None]], dim=1)


@pytest.mark.parametrize("simd", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_forward_returns_each_items_sums_and_the_backward_solves_from_them(simd, weighted):
    B, P = 11, 9  # a ragged last lane group and a ragged last vector of points
    prob = make_problem(B, P, torch.float64, noise=0.1, seed=17)
    src, dst = prob["src"], prob["dst"]
    w = prob["weights"] if weighted else None
    g = torch.Generator().manual_seed(18)
    grads = [torch.randn(s, generator=g, dtype=torch.float64) for s in ((B,), (B, 3, 3), (B, 3))]
    with cpu_simd(simd):
        *_, sums, status = torch.ops.pgnface.similarity_align(src, dst, w, True)
        assert status.tolist() == [0]
        torch.testing.assert_close(sums, expected_sums(src, dst, w), rtol=1e-12, atol=1e-12)
        backward = torch.ops.pgnface.similarity_align_backward
        got = backward(*grads, src, dst, w, sums, True)
        # The backward reads the item's solve from the sums alone: sums of other points change it.
        other = make_problem(B, P, torch.float64, noise=0.1, seed=19)
        moved = backward(*grads, src, dst, w, expected_sums(other["src"], other["dst"], w), True)
    assert not torch.allclose(got[0], moved[0])
    # The same gradients as autograd through the op (which saves the sums).
    leaves = [x.clone().requires_grad_(True) for x in (src, dst)]
    with cpu_simd(simd):
        out = ops.similarity_align(*leaves, w)
        sum((u * o).sum() for u, o in zip(grads, out)).backward()
    assert torch.equal(leaves[0].grad, got[0]) and torch.equal(leaves[1].grad, got[1])


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_no_graph_break(backend):
    torch._dynamo.reset()

    def loss_fn(src, dst, weights):
        scale, R, t = ops.similarity_align(src, dst, weights)
        aligned = ops.apply_similarity(src, scale, R, t)
        return (aligned - dst).square().sum() + R[:, 0, 1].sum() + scale.sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend=backend)
    prob = make_problem(6, 20, torch.float32, noise=0.1, seed=9)
    names = ("src", "dst", "weights")
    eager_in = [prob[n].clone().requires_grad_(True) for n in names]
    comp_in = [prob[n].clone().requires_grad_(True) for n in names]
    eager, comp = loss_fn(*eager_in), compiled(*comp_in)
    torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-5)
    eager.backward()
    comp.backward()
    for a, b in zip(comp_in, eager_in):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


def test_apply_similarity_and_landmarks_to_pose():
    prob = make_problem(10, 68, seed=10)
    pose = ops.landmarks_to_pose(prob["src"], prob["dst"])
    torch.testing.assert_close(ops.apply_similarity(prob["src"], pose.scale, pose.R, pose.t), prob["dst"])
    torch.testing.assert_close(pose.angles, prob["angles"])


def test_rotation_to_angles_convention():
    # Positive yaw turns +z towards +x; pitch turns +y towards +z; roll turns +x towards +y.
    def R_of(yaw=0.0, pitch=0.0, roll=0.0):
        return euler_rotation(torch.tensor([yaw]), torch.tensor([pitch]), torch.tensor([roll]))

    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(R_of(yaw=90.0)[0] @ z, torch.tensor([1.0, 0, 0], dtype=torch.float64))
    angles = ops.rotation_to_angles(R_of(yaw=30.0, pitch=-20.0, roll=10.0))
    torch.testing.assert_close(angles, torch.tensor([[30.0, -20.0, 10.0]], dtype=torch.float64))
    # Gimbal lock at yaw = 90: roll is reported as 0 and pitch absorbs it.
    locked = ops.rotation_to_angles(R_of(yaw=90.0, pitch=25.0, roll=0.0))
    torch.testing.assert_close(locked, torch.tensor([[90.0, 25.0, 0.0]], dtype=torch.float64))
    # ... and the angles still rebuild the same rotation.
    locked = ops.rotation_to_angles(R_of(yaw=-90.0, pitch=0.0, roll=40.0))
    torch.testing.assert_close(euler_rotation(*locked.T), R_of(yaw=-90.0, roll=40.0))


def test_non_finite_and_negative_weights_rejected():
    prob = make_problem(3, 10, torch.float32, seed=11)
    src, dst, w = prob["src"].clone(), prob["dst"], prob["weights"].clone()
    src[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="src contains 1 non-finite"):
        ops.similarity_align(src, dst, w)
    scale, R, t = ops.similarity_align(src, dst, w, check_values=False)
    assert torch.isnan(R[1]).all() and torch.isfinite(R[[0, 2]]).all()
    w[0, 3] = -0.5
    with pytest.raises(ValueError, match="weights must be non-negative"):
        ops.similarity_align(prob["src"], dst, w)
    w[0, 3] = float("inf")
    with pytest.raises(ValueError, match="weights contains 1 non-finite"):
        ops.similarity_align(prob["src"], dst, w)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(src=torch.zeros(3, 2, 3), dst=torch.zeros(3, 2, 3)), ValueError, r"at least 3 points .*got \[3, 2, 3\]"),
        (dict(src=torch.zeros(3, 10)), ValueError, r"src must have shape \[B, P, 3\]"),
        (dict(dst=torch.zeros(3, 9, 3)), ValueError, r"dst must have shape \[B, P, 3\] = \[3, 10, 3\]"),
        (dict(dst=torch.zeros(3, 10, 3, dtype=torch.float64)), TypeError, "dst must have dtype torch.float32"),
        (dict(weights=torch.ones(3, 9)), ValueError, r"weights must have shape \[B, P\] = \[3, 10\]"),
        (dict(weights=torch.ones(3, 10, dtype=torch.float64)), TypeError, "weights must have dtype"),
        (dict(src=torch.zeros(3, 10, 3, dtype=torch.int64)), TypeError, "src must be float32 or float64"),
        (dict(dst=np.zeros((3, 10, 3))), TypeError, "dst must be a torch.Tensor"),
        (dict(estimate_scale=1), TypeError, "estimate_scale must be a bool"),
        (dict(weights=torch.ones(3, 10, device="meta")), ValueError, "weights must be on cpu"),
    ],
)
def test_bad_input_names_the_argument(change, error, message):
    prob = make_problem(3, 10, torch.float32, seed=12)
    args = dict(src=prob["src"], dst=prob["dst"], weights=prob["weights"], estimate_scale=True)
    args.update(change)
    with pytest.raises(error, match=message):
        ops.similarity_align(**args)


def test_direct_op_call_with_bad_shapes_raises_not_crashes():
    src = torch.zeros(2, 5, 3)
    with pytest.raises(RuntimeError, match="dst must have shape"):
        torch.ops.pgnface.similarity_align(src, torch.zeros(2, 4, 3), None, True)
    with pytest.raises(RuntimeError, match="grad_R must have shape"):
        torch.ops.pgnface.similarity_align_backward(
            torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 3), src, src, None, torch.zeros(2, 17), True
        )
    with pytest.raises(RuntimeError, match=r"sums must have shape \[2, 17\]"):
        torch.ops.pgnface.similarity_align_backward(
            torch.zeros(2), torch.zeros(2, 3, 3), torch.zeros(2, 3), src, src, None, torch.zeros(2, 10), True
        )


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    src = torch.zeros(0, 5, 3, device=device, requires_grad=True)
    scale, R, t = ops.similarity_align(src, src.detach())
    assert scale.shape == (0,) and R.shape == (0, 3, 3) and t.shape == (0, 3)
    (scale.sum() + R.sum() + t.sum()).backward()
    assert src.grad.shape == (0, 5, 3)


def test_real_bfm_landmarks_pose_recovery():
    data = np.load(shared_data_file("bfm_landmarks.npz"))
    mean = torch.from_numpy(data["mean"]).double()  # [68, 3] BFM landmarks
    basis = torch.from_numpy(np.concatenate([data["shape_basis"], data["exp_basis"]], axis=2)).double()
    g = torch.Generator().manual_seed(13)
    B = 16
    coeffs = torch.randn(B, basis.shape[2], generator=g, dtype=torch.float64)
    coeffs[:, :40] *= 2e4  # identity coefficients at the scale of the 3DDFA parameters
    shapes = mean + torch.einsum("ndk,bk->bnd", basis, coeffs)
    yaw = torch.linspace(-89.0, 89.0, B, dtype=torch.float64)
    R_true = euler_rotation(
        yaw, torch.full((B,), 10.0, dtype=torch.float64), torch.full((B,), -5.0, dtype=torch.float64)
    )
    scale_true = torch.full((B,), 1.5e-3, dtype=torch.float64)  # BFM units to a 120-pixel crop
    t_true = torch.tensor([60.0, 60.0, 0.0], dtype=torch.float64).expand(B, 3)
    observed = ops.apply_similarity(shapes, scale_true, R_true, t_true)
    observed = observed + 0.5 * torch.randn(observed.shape, generator=g, dtype=torch.float64)  # half-pixel noise
    for dtype, tol in ((torch.float64, 2.0), (torch.float32, 2.0)):
        pose = ops.landmarks_to_pose(shapes.to(dtype), observed.to(dtype))
        assert (pose.angles[:, 0].double() - yaw).abs().max() < tol
        ref_scale, ref_R, _ = ops.reference.similarity_align(shapes, observed)
        torch.testing.assert_close(pose.R.double(), ref_R, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(pose.scale.double(), ref_scale, rtol=1e-4, atol=1e-8)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    for P in (3, 68, 300):
        prob = make_problem(257, P, dtype, noise=0.1, seed=14)
        names = ("src", "dst", "weights")
        cpu_in = [prob[n].clone().requires_grad_(True) for n in names]
        cuda_in = [prob[n].cuda().requires_grad_(True) for n in names]
        cpu_out, cuda_out = ops.similarity_align(*cpu_in), ops.similarity_align(*cuda_in)
        rtol, atol = tolerances(dtype, 10.0)
        for a, b in zip(cuda_out, cpu_out):
            torch.testing.assert_close(a.cpu(), b, rtol=rtol, atol=atol)
        sum(o.sum() for o in cpu_out).backward()
        sum(o.sum() for o in cuda_out).backward()
        for a, b in zip(cuda_in, cpu_in):
            torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=rtol * 10, atol=atol * 10)


@requires_cuda
def test_cuda_graph_capture():
    prob = make_problem(64, 68, torch.float32, "cuda", noise=0.05, seed=15)
    src = prob["src"].clone().requires_grad_(True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph
        sum(o.sum() for o in ops.similarity_align(src, prob["dst"])).backward()
    torch.cuda.current_stream().wait_stream(stream)
    src.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        scale, R, t = ops.similarity_align(src, prob["dst"])
        (scale.sum() + R.sum() + t.sum()).backward()
    graph.replay()
    torch.cuda.synchronize()
    ref = ops.reference.similarity_align(prob["src"], prob["dst"])
    for a, b in zip((scale, R, t), ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(src.grad).all()


def test_real_aflw2000_yaw_from_landmarks():
    """Yaw solved from AFLW2000-3D's annotated 3D landmarks agrees with its pose labels.

    src: the BFM mean landmarks; dst: each image's pt3d_68 with y flipped to
    point up (image rows grow downwards). The labels' angles are defined with
    the opposite sense of rotation, so our yaw is compared with -yaw_label.
    The mean face is not the subject's face, hence the 5-degree tolerance.
    """
    scipy_io = pytest.importorskip("scipy.io")
    bfm = np.load(shared_data_file("bfm_landmarks.npz"))["mean"].astype(np.float64)
    folder = shared_data_file("aflw2000")
    mats = sorted(folder.glob("*.mat"))
    assert mats, f"no .mat annotations under {folder}"
    dst, labels = [], []
    for path in mats:
        mat = scipy_io.loadmat(str(path))
        points = mat["pt3d_68"].T.astype(np.float64)
        points[:, 1] = -points[:, 1]
        dst.append(points)
        labels.append(np.rad2deg(mat["Pose_Para"][0, 1]))
    dst = torch.from_numpy(np.stack(dst))
    src = torch.from_numpy(bfm).expand_as(dst)
    for dtype in DTYPES:
        dtype = dtype.values[0]
        pose = ops.landmarks_to_pose(src.to(dtype), dst.to(dtype))
        yaw = pose.angles[:, 0].double()
        assert (yaw + torch.tensor(labels)).abs().max() < 5.0, (yaw, labels)
        residual = (ops.apply_similarity(src.to(dtype), pose.scale, pose.R, pose.t) - dst.to(dtype)).norm(dim=-1)
        assert residual.mean() < 8.0  # pixels, in 450 x 450 images


def test_torch_export():
    class PoseHead(torch.nn.Module):
        def forward(self, model_landmarks, landmarks):
            scale, R, t = ops.similarity_align(model_landmarks, landmarks)
            U, S, V = ops.svd3x3(R)
            return scale, R, t, S

    prob = make_problem(4, 12, torch.float32, noise=0.05, seed=16)
    exported = torch.export.export(PoseHead(), (prob["src"], prob["dst"]))
    for a, b in zip(exported.module()(prob["src"], prob["dst"]), PoseHead()(prob["src"], prob["dst"])):
        torch.testing.assert_close(a, b)


# --- SIMD path (points and items in lanes) against the scalar path (what CUDA runs per item) ----


def adversarial_problem(dtype, B, P, seed):
    """src, dst, weights mixing well-posed, degenerate, huge, tiny and non-finite items."""
    prob = make_problem(B, P, torch.float64, noise=0.05, seed=seed)
    src, dst, w = prob["src"], prob["dst"], prob["weights"]
    big, small = (1e25, 1e-25) if dtype == torch.float64 else (1e12, 1e-12)
    w[0] = 0.0  # no weight at all
    src[1] = src[1, :1]  # all src points coincide
    w[2, 1:] = 0.0  # one effective point
    src[3] = src[3, :1] * torch.linspace(-1, 1, P, dtype=torch.float64)[:, None]  # collinear
    dst[4] = dst[4, :1]  # dst collapses to a point
    src[5], dst[5] = src[5] * big, dst[5] * big
    src[6], dst[6] = src[6] * small, dst[6] * small
    src[7] = src[7] + 1e4  # far from the origin
    dst[8] = dst[8] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # best fitted by a reflection
    src[9, 2, 1] = float("nan")
    return src.to(dtype), dst.to(dtype), w.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,P", [(13, 11), (21, 68), (10, 5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_simd_path_matches_scalar_path(dtype, B, P, weighted):
    src, dst, w = adversarial_problem(dtype, B, P, seed=40 + P)
    w = w if weighted else None
    g = torch.Generator().manual_seed(41)
    upstream = [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for shape in ((B,), (B, 3, 3), (B, 3))]

    def run():
        leaves = [x.clone().requires_grad_(True) if x is not None else None for x in (src, dst, w)]
        out = ops.similarity_align(*leaves, check_values=False)
        sum((u * o).sum() for u, o in zip(upstream, out)).backward()
        return [*out, *(x.grad for x in leaves if x is not None)]

    with cpu_simd(False):
        scalar = run()
    with cpu_simd(True):
        simd = run()
    # The item with a NaN gives NaN in exactly the same places; every other item is finite in both.
    for a, b in zip(simd, scalar):
        assert torch.equal(a.isnan(), b.isnan())
        assert a[torch.arange(B) != 9].isfinite().all()
    # Sums over points run in another order: values agree to rounding, relative to each item's size.
    # (Collinear src and collapsed dst leave R free about an axis; both paths are right and differ.)
    eps = torch.finfo(dtype).eps
    ok = (torch.arange(B) != 9) & (torch.arange(B) != 3) & (torch.arange(B) != 4)
    for a, b in zip(simd, scalar):
        a, b = a[ok].double(), b[ok].double()
        size = b.abs().reshape(b.shape[0], -1).amax(dim=1).clamp_min(1e-300).view(-1, *[1] * (b.dim() - 1))
        # Item 7 sits 1e4 from the origin: its centred points carry rounding of 1e4 eps.
        far = (torch.arange(B)[ok] == 7).to(torch.float64) * 99 + 1
        tol = 1e4 * eps * size * far.view(-1, *[1] * (b.dim() - 1))
        assert ((a - b).abs() <= tol).all(), ((a - b).abs() / size).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_fused_check_sets_the_scalar_paths_status_bits(dtype):
    # B = 19 and P = 11 put bad values in whole lane groups, the ragged last group, whole point
    # vectors and the ragged last one; each single bad value sets the same bits on both paths.
    B, P = 19, 11
    g = torch.Generator().manual_seed(50)
    src, dst = torch.randn(B, P, 3, generator=g, dtype=dtype), torch.randn(B, P, 3, generator=g, dtype=dtype)
    w = torch.rand(B, P, generator=g, dtype=dtype)
    op = torch.ops.pgnface.similarity_align.default

    def status(s, d, ww):
        words = []
        for simd in (True, False):
            with cpu_simd(simd):
                words.append(int(op(s, d, ww, True, 1)[-1]))
        return words

    assert status(src, dst, w) == [0, 0] and status(src, dst, None) == [0, 0]
    for b, i in [(0, 0), (7, 10), (8, 3), (18, 10), (18, 0)]:
        for name, bad, bit in [
            ("src", float("nan"), 1),
            ("dst", float("inf"), 2),
            ("w", float("nan"), 4),
            ("w", -1.0, 8),
        ]:
            s, d, ww = src.clone(), dst.clone(), w.clone()
            target = dict(src=s, dst=d, w=ww)[name]
            if name == "w":
                target[b, i] = bad
            else:
                target[b, i, 1] = bad
            assert status(s, d, ww) == [bit, bit], (name, b, i)
            if name != "w":
                assert status(s, d, None) == [bit, bit], (name, b, i)
    # Finite values whose sums overflow are not bad input.
    huge = torch.finfo(dtype).max / 4
    s = src.clone()
    s[5] = huge
    assert status(s, dst, w) == [0, 0] and status(s, dst, None) == [0, 0]
