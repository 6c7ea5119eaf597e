"""Training losses of the PGN reconstructor; each returns a scalar tensor.

Lengths in crop pixels are divided by the crop size, so loss values do not
depend on the resolution (a landmark loss of 0.01 is 1% of the crop).
Shapes: B images (or clips), F frames, P points, K coefficients, H x W images.

Supervised (labels exist): :func:`landmark_loss` (the landmark head's 3D
landmarks, and the reconstruction's landmarks after the pose),
:func:`coefficient_loss`, :func:`vertex_loss`, :func:`heatmap_loss` (keeps the
landmark heatmaps peaked on the label); priors: :func:`coefficient_prior`,
:func:`lighting_prior`. Self-supervised: :func:`photometric_loss` over the
rendered face, :func:`landmark_consistency_loss` between the two branches.
Multi-frame: :func:`identity_consistency_loss`, :func:`cross_frame_geometric_loss`,
:func:`cross_frame_photometric_loss`.
"""

from typing import Dict, Optional

import torch

from pgnface.morphable import MorphableModel, Rendering, WeakPerspectiveCamera, render
from pgnface.nn.heads import cell_centres


def _check(x, name: str, dims: int, last: Optional[int] = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != dims or (last is not None and x.shape[-1] != last):
        want = f"{dims} dims" + (f" with last dim {last}" if last is not None else "")
        raise ValueError(f"{name} must have {want}, got shape {list(x.shape)}")


def _same_shape(a, a_name: str, b, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} {list(a.shape)} and {b_name} {list(b.shape)} must have the same shape")


def _same_points(a, a_name: str, a_dims: int, b, b_name: str, b_dims: int) -> None:
    """Checks two tensors and that they share their leading [B, P]."""
    _check(a, a_name, a_dims)
    _check(b, b_name, b_dims)
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"{a_name} {list(a.shape)} and {b_name} {list(b.shape)} must have the same [B, P]")


def weighted_mean(values: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of values weighted by weights (plain mean without).

    Args:
        values: [...] values.
        weights: [...] non-negative weights broadcastable to values, or None.

    Returns:
        [] the weighted mean; 0 when the weights sum to 0.
    """
    if weights is None:
        return values.mean()
    weights = weights.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1e-12)


def robust_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``sqrt(|x|^2 + eps^2)`` over the last dim: the L2 norm, smooth at 0 (finite gradient).

    Args:
        x: [..., D] vectors.
        eps: smoothing length.

    Returns:
        [...] norms.
    """
    return (x.square().sum(-1) + eps * eps).sqrt()


# --- supervised ----------------------------------------------------------------------------------


def landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    size: float,
    weights: Optional[torch.Tensor] = None,
    depth_weight: float = 1.0,
) -> torch.Tensor:
    """Mean Euclidean landmark distance / crop size.

    Used for the landmark head's 3D landmarks against labels, for the
    reconstruction's landmarks (after the pose) against labels, and, with 2D
    points, for 2D labels.

    Args:
        pred: [B, P, D] crop pixels, D = 2 (u, v) or 3 (u, v, depth).
        target: [B, P, D] labels, the shape of pred.
        size: crop size S in pixels.
        weights: optional [B, P] (e.g. 0 for unlabelled points).
        depth_weight: factor on the depth difference (D = 3).

    Returns:
        [] mean_p w_p |pred_p - target_p| / S.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: pred and target differ in shape or are not [B, P, D], or size is not positive.
    """
    _check(pred, "pred", 3)
    _check(target, "target", 3)
    _same_shape(pred, "pred", target, "target")
    if not size > 0:
        raise ValueError(f"size (the crop size in pixels) must be positive, got {size!r}")
    diff = pred - target
    if diff.shape[-1] == 3 and depth_weight != 1.0:
        diff = diff * diff.new_tensor([1.0, 1.0, depth_weight])
    return weighted_mean(robust_norm(diff), weights) / size


def heatmap_target(uv: torch.Tensor, grid: tuple, size: float, sigma: float = 1.0) -> torch.Tensor:
    """Normalised Gaussians centred on crop-pixel points.

    The grid's cells are those of pgnface.nn.heads.soft_argmax (cell_centres).
    A point outside the crop gets a map piled against the border (heatmap_loss
    ignores such points).

    Args:
        uv: [B, P, 2] points in crop pixels.
        grid: (h, w) heatmap cells.
        size: crop size S in pixels.
        sigma: Gaussian width in cells.

    Returns:
        [B, P, h, w] maps, each summing to 1.
    """
    h, w = grid
    xs, ys = cell_centres(h, w, size, uv.device, uv.dtype)
    gx = torch.exp(-0.5 * ((xs - uv[..., :1]) / (sigma * size / w)) ** 2)  # [B, P, w]
    gy = torch.exp(-0.5 * ((ys - uv[..., 1:2]) / (sigma * size / h)) ** 2)  # [B, P, h]
    maps = gy[..., :, None] * gx[..., None, :]
    return maps / maps.sum((-2, -1), keepdim=True).clamp(min=1e-300)


def heatmap_loss(prob: torch.Tensor, target_uv: torch.Tensor, size: float, sigma: float = 1.0) -> torch.Tensor:
    """KL(target || prob) of the landmark heatmaps, mean over points: 0 when they match.

    Soft-argmax trained on coordinates alone learns diffuse maps whose mean
    lands on the label; on unfamiliar (real) images such maps drift towards the
    crop centre. This term asks for a peak of `sigma` cells at the label.

    Args:
        prob: [B, P, h, w] softmax heatmaps (the landmark head's "heatmaps").
        target_uv: [B, P, 2+] labelled points in crop pixels (extra columns ignored).
        size: crop size S in pixels.
        sigma: target width in heatmap cells.

    Returns:
        [] mean over the points inside the crop (0 if none).

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: prob and target_uv differ in [B, P].
    """
    _same_points(prob, "prob", 4, target_uv, "target_uv", 3)
    uv = target_uv[..., :2].to(prob)
    target = heatmap_target(uv, prob.shape[-2:], size, sigma)
    inside = ((uv >= 0) & (uv <= size)).all(-1)  # [B, P]
    kl = (target * (torch.log(target.clamp(min=1e-12)) - torch.log(prob.clamp(min=1e-12)))).sum((-2, -1))
    return (kl * inside).sum() / inside.sum().clamp(min=1)


def vertex_loss(
    pred: torch.Tensor, target: torch.Tensor, size: float, weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean Euclidean per-vertex distance / crop size between dense meshes.

    Args:
        pred: [B, N, 3] vertices in crop pixels.
        target: [B, N, 3] vertices with the same depth origin
            (see pgnface.train.batches.centre_depth).
        size: crop size S in pixels.
        weights: optional [B, N].

    Returns:
        [] mean_n w_n |pred_n - target_n| / S.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: pred and target differ in shape or are not [B, N, 3].
    """
    _check(pred, "pred", 3, 3)
    _check(target, "target", 3, 3)
    _same_shape(pred, "pred", target, "target")
    return weighted_mean(robust_norm(pred - target), weights) / size


def coefficient_loss(
    pred: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor], weights: Optional[Dict[str, float]] = None
) -> torch.Tensor:
    """Sum over groups of ``w_k * mean((pred_k - target_k)^2)`` (coefficients in units of std).

    Args:
        pred: {name: [B, K_name]} predicted coefficients.
        target: {name: [B, K_name]} labels; only names present in both (and in
            weights, when given) count.
        weights: {name: weight}; 1 for every shared name if None.

    Returns:
        [] the weighted sum.

    Raises:
        ValueError: no group counts, or a group's shapes differ.
    """
    names = [k for k in pred if k in target and (weights is None or k in weights)]
    if not names:
        raise ValueError(f"pred {sorted(pred)} and target {sorted(target)} share no coefficient group")
    total = 0.0
    for k in names:
        _same_shape(pred[k], f"pred[{k!r}]", target[k], f"target[{k!r}]")
        w = 1.0 if weights is None else weights[k]
        total = total + w * (pred[k] - target[k].to(pred[k])).square().mean()
    return total


def coefficient_prior(coeffs: Dict[str, torch.Tensor], weights: Dict[str, float]) -> torch.Tensor:
    """Gaussian prior of the 3DMM: ``sum_k w_k * mean(c_k^2)`` (coefficients in units of std).

    Args:
        coeffs: {name: [B, K]} coefficients.
        weights: {name: weight}; names not in coeffs are ignored.

    Returns:
        [] the weighted sum.

    Raises:
        ValueError: no weight names a group of coeffs.
    """
    total = 0.0
    for k, w in weights.items():
        if k in coeffs and w:
            total = total + w * coeffs[k].square().mean()
    if not isinstance(total, torch.Tensor):
        raise ValueError(f"weights {sorted(weights)} name no group of coeffs {sorted(coeffs)}")
    return total


def lighting_prior(gamma: torch.Tensor) -> torch.Tensor:
    """Mean squared deviation of SH lighting from grey: ``mean((gamma - mean_rgb(gamma))^2)``.

    Light that colours only some bands is penalised; white light of any shape is free.

    Args:
        gamma: [B, 9, 3] SH coefficients.

    Returns:
        [] the mean squared deviation.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: gamma is not [B, 9, 3].
    """
    _check(gamma, "gamma", 3, 3)
    return (gamma - gamma.mean(-1, keepdim=True)).square().mean()


# --- self-supervised ---------------------------------------------------------------------------


def render_prediction(
    pred: Dict[str, torch.Tensor], morphable: MorphableModel, size: int, background: Optional[torch.Tensor] = None
) -> Rendering:
    """Renders a reconstructor's output (shape, albedo, lighting, pose) into S x S crops.

    Args:
        pred: the network's output dict (shape, albedo, gamma, scale, rotation, translation).
        morphable: the network's 3DMM on the same device.
        size: crop size S.
        background: optional [B, S, S, 3] (the input image, for a composite).

    Returns:
        The Rendering of pgnface.morphable.render (image [B, S, S, 3], mask [B, S, S], ...).
    """
    camera = WeakPerspectiveCamera(pred["scale"], pred["rotation"], pred["translation"])
    return render(
        pred["shape"],
        morphable.triangles,
        morphable.albedo(pred["albedo"]),
        pred["gamma"],
        camera,
        size,
        background=background,
    )


def photometric_loss(
    rendered: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    """Robust colour difference over the rendered face: ``sum_px m |r - I|_eps / sum_px m``.

    ``|x|_eps = sqrt(|x|^2 + eps^2)`` per pixel over RGB: an L2,1 norm, which
    lets occluders and hair cost only linearly.

    Args:
        rendered: [B, H, W, 3] rendered face (pgnface.morphable.render's image).
        image: [B, H, W, 3] or [B, 3, H, W] target image (same range as rendered).
        mask: [B, H, W] face mask (1 where the face is drawn); 0 everywhere gives 0.
        eps: smoothing of the norm.

    Returns:
        [] the masked mean.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: the image or the mask does not match rendered.
    """
    _check(rendered, "rendered", 4, 3)
    _check(image, "image", 4)
    _check(mask, "mask", 3)
    if image.shape[-1] != 3 and image.shape[1] == 3:
        image = image.permute(0, 2, 3, 1)
    _same_shape(rendered, "rendered", image, "image")
    if mask.shape != rendered.shape[:3]:
        raise ValueError(f"mask must have shape {list(rendered.shape[:3])}, got {list(mask.shape)}")
    return weighted_mean(robust_norm(rendered - image.to(rendered), eps), mask.detach())


def landmark_consistency_loss(
    recon: torch.Tensor,
    head: torch.Tensor,
    size: float,
    weights: Optional[torch.Tensor] = None,
    detach_head: bool = True,
) -> torch.Tensor:
    """2D self-consistency: the reconstruction's landmarks against the landmark head's (or detected ones).

    Args:
        recon: [B, P, 2 or 3] the reconstruction's landmarks (crop pixels).
        head: [B, P, 2 or 3] the landmark head's landmarks for the same points,
            or detected 2D landmarks.
        size: crop size S in pixels.
        weights: optional [B, P].
        detach_head: train only the reconstruction towards the head (the head
            is the better-trained branch on unlabeled images).

    Returns:
        [] the 2D landmark_loss of recon against head.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: recon and head differ in [B, P].
    """
    _same_points(recon, "recon", 3, head, "head", 3)
    head = head.detach() if detach_head else head
    return landmark_loss(recon[..., :2], head[..., :2], size, weights)


# --- multi-frame --------------------------------------------------------------------------------


def identity_consistency_loss(identity: torch.Tensor) -> torch.Tensor:
    """Spread of the identity coefficients within each clip: ``mean((id_f - mean_f id)^2)``.

    Args:
        identity: [B, F, K] per-frame identity coefficients of B clips.

    Returns:
        [] the mean squared deviation from each clip's mean.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: identity is not [B, F, K] with F >= 2.
    """
    _check(identity, "identity", 3)
    if identity.shape[1] < 2:
        raise ValueError(f"identity needs at least 2 frames per clip, got shape {list(identity.shape)}")
    return (identity - identity.mean(1, keepdim=True)).square().mean()


def _pairwise_mean(
    values: torch.Tensor, visible: Optional[torch.Tensor], norm: float = 1.0, eps: float = 1e-6
) -> torch.Tensor:
    """Mean over frame pairs i < j and points of |values_i - values_j| / norm, weighted by joint visibility.

    Args:
        values: [B, F, P, C] per-frame values of the same P points.
        visible: optional [B, F, P] visibility (bool or weights); a pair counts
            a point with weight visible_i * visible_j.
    """
    B, F, P = values.shape[:3]
    i, j = torch.triu_indices(F, F, offset=1, device=values.device)
    diff = robust_norm(values[:, i] - values[:, j], eps) / norm  # [B, pairs, P]
    weights = None
    if visible is not None:
        if visible.shape != (B, F, P):
            raise ValueError(f"visible must have shape {[B, F, P]}, got {list(visible.shape)}")
        visible = visible.to(diff.dtype)
        weights = visible[:, i] * visible[:, j]
    return weighted_mean(diff, weights)


def cross_frame_geometric_loss(
    points: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    translation: torch.Tensor,
    expression_offsets: Optional[torch.Tensor] = None,
    visible: Optional[torch.Tensor] = None,
    norm: float = 1.0,
) -> torch.Tensor:
    """Agreement of per-frame 3D points after removing each frame's pose and expression.

    Each frame's points are taken back to model space, ``x = R^T (p - t) / s``,
    minus the frame's expression displacement; for every pair of frames
    (i < j) a point visible in both must land at the same place.

    Args:
        points: [B, F, P, 3] per-frame 3D points in crop pixels (dense vertices
            or the landmark head's landmarks).
        scale: [B, F] each frame's pose scale.
        rotation: [B, F, 3, 3] each frame's rotation.
        translation: [B, F, 3] each frame's translation.
        expression_offsets: optional [B, F, P, 3] model-space expression
            displacement of each point in each frame.
        visible: optional [B, F, P] visibility (bool or weights).
        norm: length the distances are divided by (e.g. the model's face width).

    Returns:
        [] weighted mean over pairs and points of |x_i - x_j| / norm.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: fewer than 2 frames, or pose, offsets or visibility of the wrong shape.
    """
    _check(points, "points", 4, 3)
    B, F = points.shape[:2]
    if F < 2:
        raise ValueError(f"points needs at least 2 frames per clip, got shape {list(points.shape)}")
    if scale.shape != (B, F) or rotation.shape != (B, F, 3, 3) or translation.shape != (B, F, 3):
        raise ValueError(
            f"scale, rotation, translation must be [B, F], [B, F, 3, 3], [B, F, 3] with "
            f"B, F = {B}, {F}; got {list(scale.shape)}, {list(rotation.shape)}, {list(translation.shape)}"
        )
    canonical = ((points - translation[:, :, None]) @ rotation) / scale[:, :, None, None]
    if expression_offsets is not None:
        _same_shape(expression_offsets, "expression_offsets", points, "points")
        canonical = canonical - expression_offsets
    return _pairwise_mean(canonical, visible, norm=norm)


def sample_colours(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear colours of images at pixel positions.

    Pixel (col, row) has its centre at (col + 0.5, row + 0.5); outside the
    image the border colour is used. Differentiable w.r.t. points and images.

    Args:
        images: [B, 3, H, W] images.
        points: [B, P, 2] (u, v) pixel positions.

    Returns:
        [B, P, 3] colours.
    """
    H, W = images.shape[-2:]
    grid = torch.stack([points[..., 0] * (2.0 / W) - 1, points[..., 1] * (2.0 / H) - 1], -1)
    out = torch.nn.functional.grid_sample(
        images, grid[:, :, None].to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[..., 0].transpose(1, 2)


def cross_frame_photometric_loss(
    images: torch.Tensor, projected: torch.Tensor, visible: Optional[torch.Tensor] = None, eps: float = 1e-3
) -> torch.Tensor:
    """Colour agreement of a vertex's projections in two frames of a clip, where visible in both.

    For every pair of frames (i < j) and vertex n, the colours of frame i at
    the vertex's projection in frame i and of frame j at its projection in
    frame j must agree (robust norm as in photometric_loss). Gradients reach
    the projections through the image gradients (grid_sample).

    Args:
        images: [B, F, 3, H, W] the clip's frames.
        projected: [B, F, P, 2] per-frame pixel positions (u, v) of P vertices.
        visible: optional [B, F, P] visibility (bool or weights).
        eps: smoothing of the norm.

    Returns:
        [] weighted mean over frame pairs and vertices of the colour differences.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: fewer than 2 frames, or projected / visible of the wrong shape.
    """
    _check(images, "images", 5)
    _check(projected, "projected", 4, 2)
    B, F = images.shape[:2]
    if projected.shape[:2] != (B, F):
        raise ValueError(f"projected must have shape [B, F, P, 2] with B, F = {B}, {F}, got {list(projected.shape)}")
    if F < 2:
        raise ValueError(f"images needs at least 2 frames per clip, got shape {list(images.shape)}")
    P = projected.shape[2]
    colours = sample_colours(images.reshape(B * F, *images.shape[2:]), projected.reshape(B * F, P, 2)).reshape(
        B, F, P, 3
    )
    return _pairwise_mean(colours, visible, eps=eps)
