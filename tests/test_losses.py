"""Every training loss on a case with a known answer."""

import math

import pytest
import torch

from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.morphable import MorphableModel, WeakPerspectiveCamera, render
from pgnface.train import losses as L
from pgnface.train.batches import centre_depth


def _rotation(angle_deg: float) -> torch.Tensor:
    a = math.radians(angle_deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def test_landmark_loss_known_offsets():
    target = torch.rand(2, 5, 3) * 100
    pred = target + torch.tensor([3.0, 4.0, 0.0])
    assert float(L.landmark_loss(pred, target, size=50)) == pytest.approx(5 / 50, rel=1e-5)
    deep = target + torch.tensor([0.0, 0.0, 10.0])
    assert float(L.landmark_loss(deep, target, size=10, depth_weight=0.5)) == pytest.approx(0.5, rel=1e-5)
    # Weights: only the second point is wrong, by 2 px, and only it counts.
    pred2 = target.clone()
    pred2[:, 1, 0] += 2
    w = torch.zeros(2, 5)
    w[:, 1] = 1
    assert float(L.landmark_loss(pred2, target, size=1, weights=w)) == pytest.approx(2.0, rel=1e-5)
    assert float(L.landmark_loss(target, target, 1)) < 1e-5
    with pytest.raises(ValueError, match="same shape"):
        L.landmark_loss(pred[:, :4], target, 1)


def test_vertex_loss_known_offset():
    target = torch.rand(2, 100, 3)
    assert float(L.vertex_loss(target + torch.tensor([0.0, 6.0, 8.0]), target, 2.0)) == pytest.approx(5.0, rel=1e-5)


def test_coefficient_loss_and_priors():
    pred = {"id": torch.full((2, 4), 1.0), "exp": torch.zeros(2, 3), "extra": torch.zeros(2)}
    target = {"id": torch.zeros(2, 4), "exp": torch.full((2, 3), 2.0)}
    assert float(L.coefficient_loss(pred, target)) == pytest.approx(1.0 + 4.0)
    assert float(L.coefficient_loss(pred, target, {"exp": 0.5})) == pytest.approx(2.0)
    assert float(L.coefficient_prior(pred, {"id": 2.0, "exp": 1.0, "albedo": 1.0})) == pytest.approx(2.0)
    grey = torch.ones(3, 9, 3)
    assert float(L.lighting_prior(grey)) == 0.0
    coloured = torch.zeros(1, 9, 3)
    coloured[0, 0] = torch.tensor([1.0, 0.0, 2.0])  # deviations -1, 0, 1 in one of 27 entries
    assert float(L.lighting_prior(coloured)) == pytest.approx(2 / 27)
    with pytest.raises(ValueError, match="share no"):
        L.coefficient_loss({"a": torch.zeros(1)}, {"b": torch.zeros(1)})


@pytest.fixture(scope="module")
def face():
    morphable = MorphableModel.builtin()
    s = SyntheticFaces(morphable, SyntheticConfig(size=48), seed=1).sample(2, seed=0)
    return morphable, s


def test_photometric_loss_zero_for_truth_and_known_shift(face):
    morphable, s = face
    camera = WeakPerspectiveCamera(s["scale"], s["rotation"], s["translation"])
    albedo = morphable.albedo(s["albedo"]).clamp(0, 1)
    out = render(morphable.vertices(s["id"], s["exp"]), morphable.triangles, albedo, s["gamma"], camera, 48)
    image = out.image.clamp(0, 1)
    inside = (out.image == image).all(-1).float() * out.mask  # pixels the clamp left alone
    assert float(L.photometric_loss(out.image, image, inside, eps=1e-6)) < 1e-5
    delta = 0.1
    shifted = (out.image + delta).permute(0, 3, 1, 2)  # channels-first images are accepted too
    assert float(L.photometric_loss(out.image, shifted, out.mask, eps=1e-6)) == pytest.approx(
        delta * math.sqrt(3), rel=1e-4
    )
    # The rendered face of the synthetic ground truth matches the synthetic image on the face.
    pred = {
        "shape": morphable.vertices(s["id"], s["exp"]),
        "albedo": s["albedo"],
        "gamma": s["gamma"],
        "scale": s["scale"],
        "rotation": s["rotation"],
        "translation": s["translation"],
    }
    r = L.render_prediction(pred, morphable, 48)
    assert float(L.photometric_loss(r.image.clamp(0, 1), s["image"], r.mask * inside)) < 2e-3
    assert float(L.photometric_loss(out.image, image, torch.zeros_like(out.mask))) == 0.0


def test_photometric_loss_gradient_reaches_albedo(face):
    morphable, s = face
    albedo = s["albedo"].clone().requires_grad_(True)
    pred = {
        "shape": morphable.vertices(s["id"], s["exp"]),
        "albedo": albedo,
        "gamma": s["gamma"],
        "scale": s["scale"],
        "rotation": s["rotation"],
        "translation": s["translation"],
    }
    r = L.render_prediction(pred, morphable, 48)
    L.photometric_loss(r.image, s["image"] * 0.5, r.mask).backward()
    assert albedo.grad.abs().sum() > 0


def test_landmark_consistency_known_offset():
    head = torch.rand(2, 68, 3) * 64
    recon = (head + torch.tensor([0.0, 2.0, 50.0])).requires_grad_(True)  # depth is ignored
    loss = L.landmark_consistency_loss(recon, head.requires_grad_(True), 64)
    assert float(loss.detach()) == pytest.approx(2 / 64, rel=1e-5)
    loss.backward()
    assert head.grad is None and recon.grad.abs().sum() > 0


def test_identity_consistency_known_spread():
    same = torch.randn(3, 1, 5).expand(3, 4, 5)
    assert float(L.identity_consistency_loss(same)) < 1e-12
    ids = torch.zeros(1, 2, 4)
    ids[0, 0] = 1.0
    ids[0, 1] = -1.0
    assert float(L.identity_consistency_loss(ids)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 frames"):
        L.identity_consistency_loss(torch.zeros(2, 1, 3))


def test_cross_frame_geometric_removes_pose_and_expression():
    torch.manual_seed(0)
    canonical = torch.randn(1, 1, 10, 3)
    B, F = 1, 3
    scale = torch.tensor([[1.0, 2.0, 0.5]])
    R = torch.stack([_rotation(a) for a in (0.0, 30.0, -50.0)])[None]
    t = torch.randn(B, F, 3) * 10
    offsets = torch.randn(B, F, 10, 3) * 0.1
    points = scale[..., None, None] * ((canonical + offsets) @ R.transpose(-1, -2)) + t[:, :, None]
    assert float(L.cross_frame_geometric_loss(points, scale, R, t, offsets)) < 1e-5
    # Move frame 2's point 0 by 3 units in model space: pairs (0,2) and (1,2) see it.
    moved = canonical.expand(B, F, 10, 3).clone() + offsets
    moved[0, 2, 0] += torch.tensor([3.0, 0.0, 0.0])
    points = scale[..., None, None] * (moved @ R.transpose(-1, -2)) + t[:, :, None]
    loss = L.cross_frame_geometric_loss(points, scale, R, t, offsets, norm=3.0)
    assert float(loss) == pytest.approx(2 * 1.0 / (3 * 10), rel=1e-4)
    # Point 0 hidden in frames 1 and 2: no pair sees it, the rest agree.
    visible = torch.ones(B, F, 10)
    visible[0, 2, 0] = 0
    visible[0, 1, 0] = 0
    assert float(L.cross_frame_geometric_loss(points, scale, R, t, offsets, visible)) < 1e-5


def test_cross_frame_photometric_known_colours():
    B, F, H, W = 1, 2, 16, 16
    images = torch.zeros(B, F, 3, H, W)
    images[0, 0] = torch.tensor([0.2, 0.4, 0.6])[:, None, None]
    images[0, 1] = torch.tensor([0.2, 0.4, 0.6 + 0.3])[:, None, None]
    projected = torch.rand(B, F, 7, 2) * 16
    loss = L.cross_frame_photometric_loss(images, projected, eps=1e-6)
    assert float(loss) == pytest.approx(0.3, rel=1e-4)
    # A textured image translated by (3, 2) px, sampled at correspondingly shifted points: agreement.
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    pattern = lambda x, y: torch.stack([torch.sin(0.4 * x) + 0.1 * y, torch.cos(0.3 * y), 0.05 * x * y / 16])  # noqa
    images = torch.stack([pattern(xx + 0.5, yy + 0.5), pattern(xx + 0.5 - 3, yy + 0.5 - 2)])[None]
    pts = torch.rand(1, 1, 20, 2) * 8 + 2
    projected = torch.cat([pts, pts + torch.tensor([3.0, 2.0])], 1)
    visible = torch.ones(1, 2, 20, dtype=torch.bool)
    # Bilinear sampling of the same underlying smooth pattern at integer-shifted points is exact.
    assert float(L.cross_frame_photometric_loss(images, projected, visible, eps=1e-6)) < 1e-4
    # Points hidden in either frame do not count.
    visible[0, 1, :] = False
    assert float(L.cross_frame_photometric_loss(images, projected + 1.3, visible)) == 0.0


def test_cross_frame_photometric_gradient_reaches_projections():
    torch.manual_seed(0)
    images = torch.rand(1, 2, 3, 16, 16)
    projected = (torch.rand(1, 2, 5, 2) * 12 + 2).requires_grad_(True)
    L.cross_frame_photometric_loss(images, projected).backward()
    assert projected.grad.abs().sum() > 0


def test_sample_colours_pixel_centres():
    img = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4).expand(1, 3, 3, 4)
    pts = torch.tensor([[[0.5, 0.5], [3.5, 2.5], [2.0, 1.5]]])
    torch.testing.assert_close(L.sample_colours(img, pts)[0, :, 0], torch.tensor([0.0, 11.0, 5.5]))


def test_centre_depth_makes_landmark_depth_zero(face):
    morphable, s = face
    v = centre_depth(s["vertices"], morphable.landmark_vertices)
    torch.testing.assert_close(v[:, morphable.landmark_vertices, 2].mean(1), torch.zeros(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(v[:, morphable.landmark_vertices], s["landmarks3d"], atol=1e-3, rtol=0)


def test_heatmap_loss_is_zero_on_its_target_and_pulls_mass_to_the_label():
    S, grid = 64, (8, 8)
    uv = torch.tensor([[[20.0, 36.0], [50.0, 10.0], [-30.0, 5.0]]], dtype=torch.float64)  # last: outside
    target = L.heatmap_target(uv, grid, S)
    assert torch.allclose(target[0].sum((-2, -1)), torch.ones(3, dtype=torch.float64))
    # The target's mean is near the label (a cell-sized Gaussian, a little pulled in by the border).
    from pgnface.nn.heads import soft_argmax

    centred, _ = soft_argmax(torch.log(target[:, :1].clamp(min=1e-30)), S)
    torch.testing.assert_close(centred[0, 0].double(), uv[0, 0], atol=0.5, rtol=0)
    # KL is 0 on the target itself (points outside the crop are ignored) and positive elsewhere.
    prob = target.clone()
    prob[0, 2] = 1.0 / 64
    assert L.heatmap_loss(prob, uv, S).abs() < 1e-9
    logits = torch.zeros_like(prob).requires_grad_(True)  # flat heatmaps
    loss = L.heatmap_loss(torch.softmax(logits.flatten(2), -1).reshape(prob.shape), uv, S)
    assert loss > 0.5
    loss.backward()
    # Gradient descent raises the logit at the label's cell (row 36 // 8 = 4, col 20 // 8 = 2)
    # and lowers it far away; the outside point gets no gradient.
    assert logits.grad[0, 0, 4, 2] < 0 and logits.grad[0, 0, 0, 7] > 0
    assert logits.grad[0, 2].abs().sum() == 0
    with pytest.raises(ValueError, match="same"):
        L.heatmap_loss(prob, uv[:, :2], S)
