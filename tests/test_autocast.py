"""Autocast: under torch.autocast, float16 / bfloat16 inputs of every op run in float32 (pgnface.ops._autocast)."""

import pytest
import torch
from test_rasterize import random_scene

import pgnface.ops as ops


def bf16(x):
    return x.to(torch.bfloat16)


def rounded(x):
    """x as the op sees it under autocast: rounded to bfloat16, computed in float32."""
    return x.to(torch.bfloat16).float()


def test_synthesize_runs_in_float32_and_gradients_reach_half_inputs():
    g = torch.Generator().manual_seed(0)
    mean, basis = torch.randn(20, 3, generator=g), torch.randn(20, 3, 6, generator=g)
    coeffs = bf16(torch.randn(4, 6, generator=g)).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.synthesize(mean, basis, coeffs, scale=bf16(torch.full((4,), 1.5)))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ops.synthesize(mean, basis, coeffs.detach().float(), scale=1.5))
    out.sum().backward()
    assert coeffs.grad is not None and coeffs.grad.dtype == torch.bfloat16


def test_rasterize_and_interpolate_run_in_float32():
    pos, tris = random_scene(2, 30, 40, seed=1)
    attr = torch.rand(2, 30, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        frags = ops.rasterize(bf16(pos), tris, (16, 12))
        image = ops.interpolate(bf16(attr), frags, tris)
    assert frags.bary.dtype == frags.depth.dtype == image.dtype == torch.float32
    want = ops.rasterize(rounded(pos), tris, (16, 12))
    assert torch.equal(frags.tri_id, want.tri_id) and torch.equal(frags.bary, want.bary)
    torch.testing.assert_close(image, ops.interpolate(rounded(attr), want, tris))


def test_svd3x3_and_similarity_align_run_in_float32():
    g = torch.Generator().manual_seed(2)
    M = torch.randn(5, 3, 3, generator=g)
    src = torch.randn(5, 10, 3, generator=g)
    dst = 2 * src + 0.1 * torch.randn(5, 10, 3, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        U, S, V = ops.svd3x3(bf16(M))
        s, R, t = ops.similarity_align(bf16(src), bf16(dst))
    assert U.dtype == S.dtype == s.dtype == R.dtype == torch.float32
    for got, want in zip(
        (U, S, V, s, R, t), (*ops.svd3x3(rounded(M)), *ops.similarity_align(rounded(src), rounded(dst)))
    ):
        torch.testing.assert_close(got, want)


def test_half_inputs_are_refused_outside_autocast():
    with pytest.raises(TypeError, match="M must be float32 or float64, got torch.bfloat16"):
        ops.svd3x3(bf16(torch.randn(2, 3, 3)))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        with pytest.raises(TypeError, match="pos must be float32 or float64"):
            ops.rasterize(torch.zeros(1, 3, 4, dtype=torch.float16), torch.zeros(1, 3, dtype=torch.int32), 4)


def test_float64_is_kept_under_autocast():
    M = torch.randn(3, 3, 3, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        U, S, V = ops.svd3x3(M)
    assert U.dtype == torch.float64
