"""Property-based tests of the ops over their argument space (Hypothesis).

Each example draws sizes (empty ones included), a dtype, a memory layout
(contiguous, strided, stored transposed), a magnitude (extreme ones included)
and at most one fault (a NaN or Inf, a wrong shape, a wrong dtype) in one
argument. The op must then either raise TypeError / ValueError naming the
faulty argument, or, without a fault, return what pgnface.ops.reference
returns. The profile is fixed (derandomized, no example database) so CI runs
the same examples in well under a minute.
"""

from typing import Dict, Optional, Tuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pgnface.ops as ops

ref = ops.reference

PROFILE = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FLOATS = (torch.float32, torch.float64)
TOL = {torch.float32: 1e-4, torch.float64: 1e-9}
LAYOUTS = ("contiguous", "strided", "transposed")
FAULTS = (None, None, None, "nan", "inf", "shape", "dtype")

Case = Tuple[Dict[str, object], Optional[str]]  # (op arguments, the faulty argument or None)


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout: every other element of a wider buffer, or stored transposed."""
    if layout == "strided" and t.dim():
        wide = t.new_zeros(*t.shape[:-1], 2 * t.shape[-1])
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "transposed" and t.dim() >= 2:
        return t.mT.contiguous().mT
    return t


def inject(args: Dict[str, object], name: str, fault: str, gen: torch.Generator) -> None:
    """Puts `fault` into args[name] in place of the valid tensor."""
    t = args[name]
    if fault in ("nan", "inf"):
        t = t.clone()
        flat = t.view(-1) if t.is_contiguous() else None
        value = float("nan") if fault == "nan" else -float("inf")
        if flat is not None:
            flat[int(torch.randint(t.numel(), (), generator=gen))] = value
        else:
            t[(0,) * t.dim()] = value
    elif fault == "shape":  # one more axis: the error must name this argument whatever else is bound
        t = t.unsqueeze(-1)
    elif fault == "dtype":
        t = t.to(torch.float16 if t.is_floating_point() else torch.float32)
    args[name] = t


def expect_error_naming(call, name: str) -> None:
    with pytest.raises((TypeError, ValueError)) as err:
        call()
    assert name in str(err.value), f"the error does not name {name!r}: {err.value}"


def random(shape, dtype, gen, magnitude=1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * magnitude).to(dtype)


# --- svd3x3 --------------------------------------------------------------------------------


@st.composite
def svd_cases(draw) -> Case:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    dtype = draw(st.sampled_from(FLOATS))
    exponent = draw(st.integers(-30, 30))  # the op rescales each matrix, so any magnitude is accurate
    rank = draw(st.integers(0, 3))
    B = draw(st.integers(0, 5))
    M = random((B, 3, rank), torch.float64, gen) @ random((B, rank, 3), torch.float64, gen)
    args = {"M": with_layout((M * 10.0**exponent).to(dtype), draw(st.sampled_from(LAYOUTS)))}
    fault = draw(st.sampled_from(FAULTS))
    if fault in ("nan", "inf") and B == 0:
        fault = None
    if fault:
        inject(args, "M", fault, gen)
    return args, "M" if fault else None


@PROFILE
@given(svd_cases())
def test_svd3x3_errors_name_the_argument_or_match_the_reference(case):
    args, bad = case
    if bad:
        return expect_error_naming(lambda: ops.svd3x3(**args), bad)
    M = args["M"]
    U, S, V = ops.svd3x3(M)
    _, S_ref, _ = ref.svd3x3(M.double())
    size = M.abs().amax(dim=(1, 2), keepdim=True).double().clamp_min(torch.finfo(M.dtype).tiny)
    tol = 10 * TOL[M.dtype]
    torch.testing.assert_close(S.double() / size[:, :, 0], S_ref / size[:, :, 0], rtol=tol, atol=tol)
    rebuilt = (U.double() * S.double()[:, None, :]) @ V.double().mT
    torch.testing.assert_close(rebuilt / size, M.double() / size, rtol=tol, atol=tol)
    eye = torch.eye(3, dtype=torch.float64).expand_as(rebuilt)
    torch.testing.assert_close(U.double().mT @ U.double(), eye, rtol=tol, atol=tol)
    torch.testing.assert_close(V.double().mT @ V.double(), eye, rtol=tol, atol=tol)


# --- synthesize ----------------------------------------------------------------------------


@st.composite
def synthesize_cases(draw) -> Case:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    dtype = draw(st.sampled_from(FLOATS))
    magnitude = 10.0 ** draw(st.integers(-8, 8) if dtype == torch.float32 else st.integers(-60, 60))
    N, K, B = draw(st.integers(0, 7)), draw(st.integers(0, 5)), draw(st.integers(0, 4))
    args = {
        "mean": random((N, 3), dtype, gen, magnitude),
        "basis": random((N, 3, K), dtype, gen, magnitude),
        "coeffs": random((B, K), dtype, gen),
    }
    for name, shape, present in (
        ("rotation", (B, 3, 3), draw(st.booleans())),
        ("scale", (B,), draw(st.booleans())),
        ("translation", (B, 3), draw(st.booleans())),
    ):
        if present:
            args[name] = random(shape, dtype, gen, magnitude if name == "translation" else 1.0)
    for name in list(args):
        args[name] = with_layout(args[name], draw(st.sampled_from(LAYOUTS)))
    fault = draw(st.sampled_from(FAULTS))
    # Values are checked in coeffs and the pose (mean and basis are the model's, and propagate NaN).
    checked = [n for n in ("coeffs", "rotation", "scale", "translation") if n in args and args[n].numel()]
    candidates = checked if fault in ("nan", "inf") else list(args)
    if not fault or not candidates:
        return args, None
    name = draw(st.sampled_from(candidates))
    inject(args, name, fault, gen)
    return args, name


@PROFILE
@given(synthesize_cases())
def test_synthesize_errors_name_the_argument_or_match_the_reference(case):
    args, bad = case
    if bad:
        return expect_error_naming(lambda: ops.synthesize(**args), bad)
    out = ops.synthesize(**args)
    expect = ref.synthesize(**{k: v.double() for k, v in args.items()})
    dtype = args["mean"].dtype
    size = expect.abs().amax().item() if expect.numel() else 1.0
    assert out.dtype == dtype and out.shape == expect.shape
    torch.testing.assert_close(out.double(), expect, rtol=TOL[dtype], atol=TOL[dtype] * max(size, 1e-300))


# --- similarity_align ----------------------------------------------------------------------


@st.composite
def similarity_cases(draw) -> Case:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    dtype = draw(st.sampled_from(FLOATS))
    exponents = st.integers(-6, 6) if dtype == torch.float32 else st.integers(-40, 40)
    B, P = draw(st.integers(0, 4)), draw(st.integers(3, 9))
    src = random((B, P, 3), torch.float64, gen, 10.0 ** draw(exponents))
    R = torch.linalg.qr(random((B, 3, 3), torch.float64, gen))[0]
    R = R * torch.det(R)[:, None, None]  # a rotation
    dst = 10.0 ** draw(exponents) * (src @ R.mT) + random((B, 1, 3), torch.float64, gen, 10.0 ** draw(exponents))
    dst = dst + random((B, P, 3), torch.float64, gen) * (dst.abs().amax() if B else 1.0) * 1e-2  # noise
    args = {"src": src.to(dtype), "dst": dst.to(dtype)}
    if draw(st.booleans()):
        weights = torch.rand((B, P), generator=gen, dtype=torch.float64) + 0.1
        args["weights"] = weights.to(dtype)
    for name in list(args):
        args[name] = with_layout(args[name], draw(st.sampled_from(LAYOUTS)))
    args["estimate_scale"] = draw(st.booleans())
    fault = draw(st.sampled_from(FAULTS + ("negative",)))
    tensors = [n for n in ("src", "dst", "weights") if n in args]
    if not fault or (fault != "shape" and fault != "dtype" and B == 0):
        return args, None
    if fault == "negative":
        if "weights" not in args:
            return args, None
        args["weights"] = args["weights"].clone()
        args["weights"][0, 0] = -1.0
        return args, "weights"
    name = draw(st.sampled_from(tensors))
    inject(args, name, fault, gen)
    return args, name


@PROFILE
@given(similarity_cases())
def test_similarity_align_errors_name_the_argument_or_match_the_reference(case):
    args, bad = case
    if bad:
        return expect_error_naming(lambda: ops.similarity_align(**args), bad)
    scale, R, t = ops.similarity_align(**args)
    ref_args = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    scale_ref, R_ref, t_ref = ref.similarity_align(**ref_args)
    tol = 50 * TOL[args["src"].dtype]
    torch.testing.assert_close(scale.double(), scale_ref, rtol=tol, atol=0)
    torch.testing.assert_close(R.double(), R_ref, rtol=tol, atol=tol)
    size = ref_args["dst"].abs().amax() if ref_args["dst"].numel() else 1.0
    torch.testing.assert_close(t.double(), t_ref, rtol=tol, atol=tol * float(size))


# --- rasterize and interpolate -------------------------------------------------------------


@st.composite
def scenes(draw):
    """(pos [B, N, 4], tris [T, 3] int64, (H, W), attr, dtype, seed) of a small random scene."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    dtype = draw(st.sampled_from(FLOATS))
    B, N, T = draw(st.integers(0, 3)), draw(st.integers(0, 6)), draw(st.integers(0, 6))
    T = T if N else 0
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    ndc = torch.rand((B, N, 3), generator=gen, dtype=torch.float64) * 2.4 - 1.2
    # w: mostly in front of the camera; sometimes behind it, at the eye plane, far away, or
    # with vertices far outside the image (beyond the guard band)
    w_kind = draw(st.sampled_from(["near", "near", "mixed", "eye", "far", "outside"]))
    w = torch.rand((B, N, 1), generator=gen, dtype=torch.float64) * 1.5 + 0.25
    some = torch.rand((B, N, 1), generator=gen) < 0.3
    if w_kind == "mixed":
        w = w * torch.where(some, -1.0, 1.0).double()
    elif w_kind == "eye":
        w = w * torch.where(some, 1e-25, 1.0).double()
    elif w_kind == "far":
        w = w * 1e6
    elif w_kind == "outside":
        ndc = ndc * torch.where(some, 1e7, 1.0).double()
    pos = torch.cat([ndc * w, w], -1).to(dtype)
    tris = torch.randint(0, max(N, 1), (T, 3), generator=gen)
    C = draw(st.integers(1, 4))
    attr = random((N, C) if draw(st.booleans()) else (B, N, C), dtype, gen)
    return pos, tris, (H, W), attr, gen


@st.composite
def rasterize_cases(draw) -> Case:
    pos, tris, resolution, _, gen = draw(scenes())
    args = {
        "pos": with_layout(pos, draw(st.sampled_from(LAYOUTS))),
        "tris": with_layout(tris.to(draw(st.sampled_from([torch.int32, torch.int64]))), draw(st.sampled_from(LAYOUTS))),
        "resolution": resolution,
        "cull": draw(st.sampled_from(["none", "back", "front"])),
    }
    fault = draw(st.sampled_from(FAULTS + ("index", "resolution")))
    if fault == "resolution":
        args["resolution"] = draw(st.sampled_from([(0, 4), (4, -1), (40000, 2), 2.5, (3,)]))
        return args, "resolution"
    if fault == "index":
        if not tris.numel():
            return args, None
        args["tris"] = args["tris"].clone()
        args["tris"][0, 0] = draw(st.sampled_from([-1, pos.shape[1], 2**31 - 1]))
        return args, "tris"
    if fault in ("nan", "inf"):
        if not pos.numel():
            return args, None
        inject(args, "pos", fault, gen)
        return args, "pos"
    if fault:
        name = draw(st.sampled_from(["pos", "tris"]))
        inject(args, name, fault, gen)
        return args, name
    return args, None


def assert_fragments_match(frag, pos, tris, resolution, cull):
    tri_id, bary, depth = ref.rasterize(pos, tris, resolution, cull)
    assert torch.equal(frag.tri_id, tri_id)
    tol = TOL[pos.dtype]
    torch.testing.assert_close(frag.bary, bary, rtol=tol, atol=tol)
    torch.testing.assert_close(frag.depth, depth, rtol=tol, atol=tol)


@PROFILE
@given(rasterize_cases())
def test_rasterize_errors_name_the_argument_or_match_the_reference(case):
    args, bad = case
    if bad:
        return expect_error_naming(lambda: ops.rasterize(**args), bad)
    frag = ops.rasterize(**args)
    assert_fragments_match(frag, args["pos"], args["tris"], args["resolution"], args["cull"])


@PROFILE
@given(scenes(), st.sampled_from(LAYOUTS), st.sampled_from(FAULTS))
def test_interpolate_errors_name_the_argument_or_match_the_reference(scene, layout, fault):
    pos, tris, resolution, attr, gen = scene
    frag = ops.rasterize(pos, tris, resolution)
    args = {"attr": with_layout(attr, layout), "fragments": frag, "tris": tris}
    if fault in ("shape", "dtype"):
        inject(args, "attr", fault, gen)
        return expect_error_naming(lambda: ops.interpolate(**args), "attr")
    # attr holds per-vertex data, not checked for NaN: NaN and Inf reach exactly the pixels that use them.
    if fault in ("nan", "inf") and attr.numel():
        inject(args, "attr", fault, gen)
    out = ops.interpolate(**args)
    expect = ref.interpolate(args["attr"], frag.tri_id, frag.bary, tris)
    tol = TOL[pos.dtype]
    torch.testing.assert_close(out, expect, rtol=tol, atol=tol, equal_nan=True)
