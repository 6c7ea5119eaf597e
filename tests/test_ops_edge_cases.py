"""Ops: second derivatives are refused (never zeros); the rasterizer culls vertices at tiny w or beyond the
guard band (no pixels, no NaN gradients); int64 triangle indices beyond int32 are refused."""

import pytest
import torch

import pgnface.ops as ops


def _svd(M):
    return ops.svd3x3(M)[1].square().sum()


def _similarity(src):
    scale, R, t = ops.similarity_align(src, src.detach() * 1.3 + 0.1)
    return scale.sum() + R.sum() + t.sum()


_GEN = torch.Generator().manual_seed(1)
_MEAN, _BASIS = torch.randn(5, 3, generator=_GEN, dtype=torch.float64), torch.randn(5, 3, 2, generator=_GEN).double()


def _synthesize(coeffs):
    return ops.synthesize(_MEAN, _BASIS, coeffs).square().sum()


def _square(dtype=torch.float64):
    pos = torch.tensor([[[-0.9, -0.9, 0.1, 1.0], [0.9, -0.9, 0.2, 1.0], [0.9, 0.9, 0.3, 1.0], [-0.9, 0.9, 0.4, 1.0]]])
    return pos.to(dtype), torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _rasterize(pos):
    _, tris = _square()
    frag = ops.rasterize(pos, tris, (6, 7))
    return frag.bary.square().sum() + frag.depth[frag.mask].square().sum()


def _interpolate(attr):
    pos, tris = _square()
    return ops.interpolate(attr, ops.rasterize(pos, tris, (6, 7)), tris).square().sum()


SECOND_ORDER_CASES = {
    "svd3x3": (_svd, lambda: torch.randn(2, 3, 3, dtype=torch.float64)),
    "similarity_align": (_similarity, lambda: torch.randn(2, 6, 3, dtype=torch.float64)),
    "synthesize": (_synthesize, lambda: torch.randn(2, 2, dtype=torch.float64)),
    "rasterize": (_rasterize, lambda: _square()[0]),
    "interpolate": (_interpolate, lambda: torch.randn(4, 2, dtype=torch.float64)),
}


@pytest.mark.parametrize("op", sorted(SECOND_ORDER_CASES))
def test_double_backward_is_refused_not_zero(op):
    loss_fn, make_input = SECOND_ORDER_CASES[op]
    torch.manual_seed(0)
    x = make_input().requires_grad_(True)
    (first,) = torch.autograd.grad(loss_fn(x), x)
    (with_graph,) = torch.autograd.grad(loss_fn(x), x, create_graph=True)
    torch.testing.assert_close(with_graph, first, rtol=0, atol=0)  # first order is unchanged
    assert first.abs().sum() > 0
    with pytest.raises(RuntimeError, match=rf"pgnface.ops.{op} has no second derivative.*reference.{op}"):
        torch.autograd.grad(with_graph.square().sum(), x)


def test_reference_has_the_second_derivative_the_error_points_to():
    M = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ops.reference.svd3x3(M)[1].square().sum(), M, create_graph=True)
    (h,) = torch.autograd.grad(g.square().sum(), M)
    assert torch.isfinite(h).all() and h.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("w", [1e-20, 1e-30, 2.0**-33])
@pytest.mark.parametrize("on_screen", [True, False])
def test_tiny_positive_w_draws_nothing_and_keeps_gradients_finite(on_screen, w, dtype):
    pos, tris = _square(dtype)
    # On screen: the vertex moves to the eye plane along its ray (x/w, y/w, z/w stay); else x/w = 0.9 / w.
    pos[0, 1] = pos[0, 1] * w if on_screen else torch.tensor([0.9, -0.9, 0.2, w], dtype=dtype)
    pos.requires_grad_(True)
    frag = ops.rasterize(pos, tris, (6, 7))
    assert torch.equal(frag.tri_id, ops.reference.rasterize(pos.detach(), tris, (6, 7))[0])
    if dtype == torch.float32 or not on_screen:  # float64 represents these w on screen, and draws
        assert set(frag.tri_id.unique().tolist()) <= {-1, 1}, "triangle 0 (with vertex 1) is culled"
    (frag.bary.sum() + frag.depth[frag.mask].sum()).backward()
    assert torch.isfinite(pos.grad).all()


def test_vertex_beyond_the_guard_band_is_culled():
    pos, tris = _square(torch.float32)
    pos[0, 1, 0] = 1e7  # 3.5e7 pixels right of a 7-pixel image
    frag = ops.rasterize(pos, tris, (6, 7))
    assert set(frag.tri_id.unique().tolist()) == {-1, 1}  # only the triangle without vertex 1
    assert torch.equal(frag.tri_id, ops.reference.rasterize(pos, tris, (6, 7))[0])


@pytest.mark.parametrize("check_values", [True, False])
def test_int64_indices_beyond_int32_are_refused(check_values):
    pos, tris = _square(torch.float32)
    wide = tris.long()
    wide[1, 2] = 2**32 + 3  # would wrap to vertex 3
    # With check_values the range check refuses it first; without, the int32 check does.
    refusal = "tris must index vertices in" if check_values else "tris must hold int32 vertex indices"
    with pytest.raises(ValueError, match=rf"{refusal}.*4294967299"):
        ops.rasterize(pos, wide, (6, 7), check_values=check_values)
    frag = ops.rasterize(pos, tris, (6, 7))
    with pytest.raises(ValueError, match=refusal):
        ops.interpolate(torch.ones(4, 1), frag, wide, check_values=check_values)
    wide[1, 2] = -(2**32) + 3
    with pytest.raises(ValueError, match=refusal):
        ops.rasterize(pos, wide, (6, 7), check_values=check_values)


def test_int64_indices_beyond_int32_are_refused_under_compile():
    torch._dynamo.reset()
    pos, tris = _square(torch.float32)
    wide = tris.long()

    def draw(p, t):
        return ops.rasterize(p, t, (6, 7), check_values=False).bary.sum()

    compiled = torch.compile(draw, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(pos, wide), draw(pos, tris))
    wide[1, 2] = 2**32 + 3
    with pytest.raises(RuntimeError, match="tris must hold int32 vertex indices"):
        compiled(pos, wide)
