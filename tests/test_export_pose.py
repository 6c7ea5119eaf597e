"""The NumPy Umeyama that finishes an exported graph's pose solve is held to ``similarity_align``."""

import numpy as np
import pytest
import torch

from pgnface import ops
from pgnface.apps.export import umeyama
from pgnface.ops.pose import rotation_from_angles


def _random_similarity(B, seed):
    g = torch.Generator().manual_seed(seed)
    angles = (torch.rand(3, B, generator=g, dtype=torch.float64) - 0.5) * 160
    R = rotation_from_angles(*angles).numpy()
    return 0.5 + np.random.default_rng(seed).random(B) * 2, R, np.random.default_rng(seed + 1).normal(0, 50, (B, 3))


def test_umeyama_recovers_a_known_similarity_and_matches_similarity_align():
    src = np.random.default_rng(0).normal(0, 30, (4, 20, 3))
    s, R, t = _random_similarity(4, 1)
    dst = s[:, None, None] * np.einsum("bij,bpj->bpi", R, src) + t[:, None]
    scale, rot, shift = umeyama(src, dst)
    assert np.allclose(scale, s) and np.allclose(rot, R, atol=1e-9) and np.allclose(shift, t, atol=1e-7)
    noisy = dst + np.random.default_rng(2).normal(0, 3, dst.shape)
    weights = np.random.default_rng(3).random((4, 20))
    ref = ops.similarity_align(torch.tensor(src), torch.tensor(noisy), torch.tensor(weights))
    for mine, theirs in zip(umeyama(src, noisy, weights), ref):
        assert np.allclose(mine, theirs.numpy(), atol=1e-8)
    mirrored = src * np.array([-1.0, 1.0, 1.0])  # the best fit would be a reflection: R stays proper
    assert np.allclose(np.linalg.det(umeyama(src, mirrored)[1]), 1.0)


def _op(src, dst, weights=None, estimate_scale=True):
    w = None if weights is None else torch.tensor(weights)
    out = ops.similarity_align(torch.tensor(src), torch.tensor(dst), w, estimate_scale, check_values=False)
    return [x.numpy() for x in out]


def _assert_matches_op(src, dst, weights=None, estimate_scale=True):
    mine = umeyama(src, dst, weights, estimate_scale)
    for name, a, b in zip(("scale", "R", "t"), mine, _op(src, dst, weights, estimate_scale)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("estimate_scale", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_umeyama_matches_the_op_on_random_inputs(seed, estimate_scale):
    rng = np.random.default_rng(seed)
    B, P = 6, int(rng.integers(3, 70))
    src = rng.normal(0, 30, (B, P, 3)) + rng.normal(0, 100, (B, 1, 3))
    dst = rng.normal(0, 30, (B, P, 3))
    dst[:3] = src[:3] * rng.uniform(0.5, 2, (3, 1, 1)) + rng.normal(0, 5, (3, P, 3))  # near-similar items
    weights = rng.random((B, P))
    _assert_matches_op(src, dst, None, estimate_scale)
    _assert_matches_op(src, dst, weights, estimate_scale)


def test_umeyama_follows_the_op_on_degenerate_items():
    rng = np.random.default_rng(7)
    B, P = 6, 10
    src, dst = rng.normal(0, 10, (B, P, 3)), rng.normal(0, 10, (B, P, 3))
    weights = rng.random((B, P))
    weights[0] = 0.0  # weights summing to 0
    src[1] = [1.0e3, -2.0e3, 5.0e2]  # coincident src points far from the origin
    src[2] = src[2, :1] + 1e-17 * rng.normal(size=(P, 3))  # coincident up to rounding
    weights[3, 1:] = 0.0  # a single weighted point: no spread
    # items 4 and 5 are ordinary and stay so in the same batch
    _assert_matches_op(src, dst, weights)
    _assert_matches_op(src, dst, weights, estimate_scale=False)
    scale, R, t = umeyama(src, dst, weights)
    assert np.isfinite(scale).all() and np.isfinite(R).all() and np.isfinite(t).all()
    np.testing.assert_array_equal(R[:4], np.broadcast_to(np.eye(3), (4, 3, 3)))
    np.testing.assert_array_equal(scale[:4], 1.0)
    np.testing.assert_array_equal(t[0], 0.0)  # centroids are 0 when the weights sum to 0
    np.testing.assert_allclose(t[1], np.average(dst[1], axis=0, weights=weights[1]) - src[1, 0], atol=1e-9)
    np.testing.assert_allclose(t[3], dst[3, 0] - src[3, 0], atol=1e-12)


def test_umeyama_gives_nan_only_for_items_with_non_finite_inputs():
    rng = np.random.default_rng(8)
    src, dst = rng.normal(0, 10, (3, 8, 3)), rng.normal(0, 10, (3, 8, 3))
    src[1, 2, 0] = np.nan
    dst[2, 0, 1] = np.inf
    scale, R, t = umeyama(src, dst)
    ref = _op(src[:1], dst[:1])
    np.testing.assert_allclose(scale[0], ref[0][0], rtol=1e-9)
    np.testing.assert_allclose(R[0], ref[1][0], atol=1e-9)
    assert np.isnan(scale[1:]).all() and np.isnan(R[1:]).all() and np.isnan(t[1:]).all()
    op_scale, op_R, op_t = _op(src, dst)
    assert np.isnan(op_scale[1:]).all() and np.isnan(op_R[1:]).all() and np.isnan(op_t[1:]).all()


def test_umeyama_names_the_argument_with_the_wrong_shape():
    src = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match="src must have shape"):
        umeyama(src[:, :2], src[:, :2])
    with pytest.raises(ValueError, match="dst must have the shape"):
        umeyama(src, src[:1])
    with pytest.raises(ValueError, match="weights must have shape"):
        umeyama(src, src, np.ones((2, 4)))
