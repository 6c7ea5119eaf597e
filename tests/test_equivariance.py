"""Equivariance self-supervision: warps of crops and landmarks agree, the mirror map, the loss, training."""

import pytest
import torch
from op_harness import shared_data_dir
from test_train_realdata import TINY  # the tiny network and batch of the training tests

from pgnface.morphable import MorphableModel
from pgnface.morphable.ibug68 import IBUG68_MIRROR, mirror_landmarks
from pgnface.train import TrainConfig, apply_overrides, train
from pgnface.train.equivariance import (
    Warp,
    equivariance_loss,
    random_warps,
    warp_images,
    warp_points,
)


def test_mirror_map_is_a_pairing_that_fits_the_builtin_face():
    mirror = torch.tensor(IBUG68_MIRROR)
    assert sorted(IBUG68_MIRROR) == list(range(68))
    assert torch.equal(mirror[mirror], torch.arange(68))  # an involution: partners pair up
    assert [i for i in range(68) if IBUG68_MIRROR[i] == i] == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    morphable = MorphableModel.builtin()  # symmetric about x = 0
    lm = torch.zeros(68, 3)
    lm[morphable.landmark_ids] = morphable.mean[morphable.landmark_vertices]
    mirrored = lm * torch.tensor([-1.0, 1.0, 1.0])
    width = float(lm[:, 0].max() - lm[:, 0].min())
    assert float((mirrored[mirror] - lm).norm(dim=1).max()) < 0.02 * width
    assert float((mirrored - lm).norm(dim=1).max()) > 0.3 * width  # without renaming they are far apart


def _blobs(points, size):
    """[n, 3, S, S] images with a Gaussian blob at each of 3 points, one per channel."""
    c = torch.arange(size, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.exp(-((x - points[..., 0, None, None]) ** 2 + (y - points[..., 1, None, None]) ** 2) / 4.0)


def _centroids(images):
    size = images.shape[-1]
    c = torch.arange(size, dtype=images.dtype) + 0.5
    mass = images.sum((2, 3))
    return torch.stack([(images.sum(2) * c).sum(-1) / mass, (images.sum(3) * c).sum(-1) / mass], -1)


def test_warped_images_put_content_where_warp_points_says():
    size = 64
    g = torch.Generator().manual_seed(0)
    points = 22 + 20 * torch.rand(6, 3, 2, generator=g, dtype=torch.float64)
    warp = random_warps(6, size, g, rotation=30.0, scale=0.15, shift=0.08, flip_prob=0.5)
    warp = Warp(warp.matrix.double(), warp.shift.double(), warp.flipped)
    assert 0 < int(warp.flipped.sum()) < 6
    moved = _centroids(warp_images(_blobs(points, size), warp))
    assert torch.allclose(moved, warp_points(points, warp, size), atol=0.05)
    # Mirrored warps flip x: the determinant's sign says so.
    assert torch.equal(torch.linalg.det(warp.matrix) < 0, warp.flipped)


def test_equivariance_loss_is_zero_exactly_for_consistent_predictions():
    size = 96
    g = torch.Generator().manual_seed(1)
    original = 20 + 56 * torch.rand(4, 68, 3, generator=g)
    warp = random_warps(4, size, g, flip_prob=0.5)
    warp = Warp(warp.matrix, warp.shift, torch.tensor([True, False, True, False]))
    consistent = warp_points(original, warp, size)
    mirror = torch.tensor(IBUG68_MIRROR)
    consistent[warp.flipped] = consistent[warp.flipped][:, mirror]  # mirrored crops rename left and right
    assert float(equivariance_loss(original, consistent, warp, size)) < 1e-5
    unrenamed = warp_points(original, warp, size)
    assert float(equivariance_loss(original, unrenamed, warp, size)) > 0.05
    shifted = consistent + torch.tensor([3.0, 0.0, 0.0])
    assert float(equivariance_loss(original, shifted, warp, size)) == pytest.approx(3.0 / size, rel=1e-3)
    with pytest.raises(ValueError, match="68"):
        equivariance_loss(original[:, :60], consistent[:, :60], warp, size)


def test_training_with_the_equivariance_term_on_unlabelled_photos(tmp_path):
    images = shared_data_dir() / "images"
    if not images.exists():
        pytest.skip(f"shared data {images} is absent")
    cfg = apply_overrides(
        TrainConfig(),
        TINY
        + ["steps=3", "data.single_weight=0", "data.images_weight=1", f"data.images={images}", "loss.equivariance=0.5"],
    )
    summary = train(cfg, tmp_path, progress=False)
    assert summary["step"] == 3 and "equivariance" in summary["last"]
    assert summary["last"]["equivariance"] > 0 and all(x == x for x in summary["history"])


def test_mirror_landmarks_match_a_flipped_image():
    size = 64
    g = torch.Generator().manual_seed(3)
    points = 10 + 44 * torch.rand(2, 68, 3, generator=g)
    mirrored = mirror_landmarks(points, size)
    assert torch.allclose(mirror_landmarks(mirrored, size), points)  # twice is the identity
    # A blob at landmark k of the original lies, in the flipped image, where mirrored landmark MIRROR[k] says.
    blobs = _blobs(points[:, [36, 8, 48]].double(), size)
    flipped = _centroids(blobs.flip(-1))
    named = mirrored[:, [IBUG68_MIRROR[k] for k in (36, 8, 48)], :2].double()
    assert torch.allclose(flipped, named, atol=0.05)
    assert torch.equal(mirrored[..., 1:], points[:, IBUG68_MIRROR, 1:])
    with pytest.raises(ValueError, match="68"):
        mirror_landmarks(points[:, :10], size)
