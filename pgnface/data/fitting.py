"""3D labels for real faces: the morphable model fitted to 2D landmark labels.

Each face's identity and expression coefficients and its weak-perspective pose
(``p = s R x + t``, the camera of pgnface.morphable.camera) are fitted to its 68
labelled 2D landmarks (300-W layout, pixel centres at integer + 0.5), all faces
of a batch at once:

1. **Pose initialisation**: ``similarity_align`` of the model's landmarks to
   the labels lifted to 3D, the labels' missing depth taken from the current
   pose and the alignment repeated (orthographic Procrustes), starting frontal.
2. **Alternation**: the coefficients given the pose are a linear least-squares
   problem with Gaussian priors (solved exactly), the pose given the
   coefficients is step 1 again; the jaw correspondences are re-assigned
   between rounds (below).
3. **Joint refinement**: Adam on all parameters (coefficients, a rotation
   update, log-scale, translation) through each face's rows of the basis,
   ``ops.apply_similarity`` and autograd,
   the jaw re-assigned every few steps.

The energy per face is ``sum_k |p_k - y_k|^2 / (noise d)^2 + |a_id|^2 + w_exp |a_exp|^2``:
the labels' noise, ``noise`` times the face size d (sqrt of the labelled box's
area), weighs the data against the coefficients' N(0, 1) priors.

**Contour handling.** The 17 jaw labels trace the visible face outline. On the
far side of a turned face (|yaw| above ``contour_yaw``) each far-side jaw label
is matched, every re-assignment, to the nearest projected vertex of the
model's occluding contour at jaw height on that side (vertices shared by a
triangle facing the camera and one facing away, or on the mesh border),
keeping its own landmark vertex when that projects nearer, as 3DMM fitters do
for contour landmarks. The chin and the near side keep their landmark vertices.

The 3D landmarks reported are the posed landmark vertices (the 3D jaw, not the
outline), in image pixels (u, v) and depth away from the camera. Labels of
300-W / YouTube Faces are for non-commercial research use only, and so are
labels derived from them.
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch

from pgnface import ops
from pgnface.morphable import FRONTAL, MorphableModel

JAW_SIDES = (tuple(range(0, 8)), tuple(range(9, 17)))  # the subject's right (image left when frontal), left
CHIN = 8
OUTER_EYE_CORNERS = (36, 45)
REASSIGN_CHUNK = 64  # faces whose full meshes are posed at once when re-matching the jaw


@dataclass
class FitConfig:
    """Settings of :func:`fit_landmarks`.

    Attributes:
        rounds: alternation rounds (pose / linear coefficients).
        iterations: Adam steps of the joint refinement.
        lr: Adam learning rate (coefficients in std, rotation in radians, log-scale).
        noise: label noise standard deviation as a fraction of the face size
            sqrt(w h) of the labelled box; smaller trusts the labels more.
        exp_prior: weight of the expression prior relative to the identity prior.
        contour: re-assign the far-side jaw labels to the occluding contour.
        contour_yaw: |yaw| in degrees above which the far side is treated as an outline.
        reassign_every: Adam steps between jaw re-assignments.
    """

    rounds: int = 6
    iterations: int = 150
    lr: float = 0.02
    noise: float = 0.02
    exp_prior: float = 1.0
    contour: bool = True
    contour_yaw: float = 8.0
    reassign_every: int = 25

    def validate(self) -> None:
        """Raises ValueError naming the first setting out of range."""
        for key, least in (("rounds", 0), ("iterations", 0), ("reassign_every", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{key} must be an integer >= {least}, got {value!r}")
        for key in ("lr", "noise", "exp_prior"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if not 0 <= self.contour_yaw < 90:
            raise ValueError(f"contour_yaw must lie in [0, 90) degrees, got {self.contour_yaw}")


@dataclass
class FitResult:
    """Fitted faces. Shapes: B faces, Ki / Ke coefficients; points in image pixels.

    Attributes:
        id_coeffs: [B, Ki]; exp_coeffs: [B, Ke] (units of std).
        scale: [B]; rotation: [B, 3, 3] model to image frame; translation: [B, 3] (p = s R x + t).
        angles: [B, 3] yaw, pitch, roll in degrees of the model-space rotation FRONTAL @ R.
        landmarks3d: [B, 68, 3] posed landmark vertices (u, v, depth away from the camera);
            NaN for points the model does not define.
        fitted2d: [B, 68, 2] the projected correspondences the labels were fitted to
            (jaw: contour vertices where re-assigned); NaN where undefined.
        jaw_vertices: [B, 17] the model vertex each jaw label is matched to (-1 undefined).
        residual_px: [B] mean 2D distance label - fitted2d over the defined points, pixels.
        residual_io: [B] the same in percent of the labels' outer-eye-corner distance.
    """

    id_coeffs: torch.Tensor
    exp_coeffs: torch.Tensor
    scale: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    angles: torch.Tensor
    landmarks3d: torch.Tensor
    fitted2d: torch.Tensor
    jaw_vertices: torch.Tensor
    residual_px: torch.Tensor
    residual_io: torch.Tensor

    def arrays(self) -> Dict[str, np.ndarray]:
        """Every field as a numpy array (the dtypes of the fit: the model's float type, int64 ids), keyed by name."""
        return {k: v.detach().cpu().numpy() for k, v in vars(self).items()}


def _skew_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrices exp([omega]_x): [B, 3] -> [B, 3, 3]."""
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    return torch.linalg.matrix_exp(skew)


class ContourMatcher:
    """Per-model data of the jaw contour handling: candidate vertices per side, mesh border.

    Args:
        model: a MorphableModel with triangles and iBUG jaw landmarks.
        max_candidates: per side, candidates are thinned to at most this many.
    """

    def __init__(self, model: MorphableModel, max_candidates: int = 1500):
        ids = model.landmark_ids.tolist()
        self.available = model.triangles.numel() > 0 and all(k in ids for k in range(17))
        self.triangles = model.triangles.long()
        self.candidates = []  # per side: [C] vertex indices
        if not self.available:
            return
        mean = model.mean.double()
        lm = mean[model.landmark_vertices]
        position = {k: i for i, k in enumerate(ids)}
        height = float(lm[:, 1].max() - lm[:, 1].min())
        chin = lm[position[CHIN]]
        for side in JAW_SIDES:
            jaw = lm[[position[k] for k in side]]
            sign = torch.sign(jaw[:, 0].mean() - chin[0])
            low, high = float(chin[1]) - 0.05 * height, float(jaw[:, 1].max()) + 0.05 * height
            keep = (mean[:, 1] >= low) & (mean[:, 1] <= high) & ((mean[:, 0] - chin[0]) * sign > 0)
            index = torch.nonzero(keep).flatten()
            stride = max(1, int(np.ceil(len(index) / max_candidates)))
            self.candidates.append(index[::stride])
        edges = torch.cat([self.triangles[:, [0, 1]], self.triangles[:, [1, 2]], self.triangles[:, [2, 0]]])
        edges = torch.sort(edges, dim=1).values
        unique, counts = torch.unique(edges, dim=0, return_counts=True)
        self.border = torch.zeros(model.num_vertices, dtype=torch.bool)
        self.border[unique[counts == 1].flatten()] = True
        # Per side, the triangles around the jaw landmark vertices (to tell the far side from the near one).
        self.jaw_triangles = []
        for side in JAW_SIDES:
            vertices = model.landmark_vertices[[position[k] for k in side]].long()
            self.jaw_triangles.append(torch.nonzero(torch.isin(self.triangles, vertices).any(1)).flatten())

    def facing(self, posed: torch.Tensor):
        """Triangle orientation and the occluding contour of posed image-frame meshes [B, N, 3].

        Returns:
            (normal_z [B, T]: z of the unit triangle normals, < 0 facing the camera;
            silhouette [B, N] bool: vertices shared by triangles facing both ways, or on the border).
        """
        tris = self.triangles.to(posed.device)
        v0, v1, v2 = posed[:, tris[:, 0]], posed[:, tris[:, 1]], posed[:, tris[:, 2]]
        # Outward normals (counter-clockwise triangles, proper rotation): facing the camera when n_z < 0.
        normal_z = torch.nn.functional.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1)[..., 2]
        facing = (normal_z < 0).to(posed.dtype)
        front = torch.zeros(posed.shape[:2], dtype=posed.dtype, device=posed.device)
        total = torch.zeros(posed.shape[1], dtype=posed.dtype, device=posed.device)
        for k in range(3):
            front = front.index_add(1, tris[:, k], facing)
            total = total.index_add(0, tris[:, k], torch.ones_like(tris[:, k], dtype=posed.dtype))
        return normal_z, (front > 0) & ((front < total[None]) | self.border.to(posed.device)[None])


class _Problem:
    """The index bookkeeping of one batch: landmark vertices + contour candidates, synthesized together."""

    def __init__(self, model: MorphableModel, labels: torch.Tensor, matcher: ContourMatcher):
        self.model = model
        ids = model.landmark_ids.tolist()
        self.ids = ids
        self.L = len(ids)
        cands = matcher.candidates if matcher.available else []
        self.index = torch.cat([model.landmark_vertices.long()] + [c.to(model.device) for c in cands])
        self.offsets = []
        start = self.L
        for c in cands:
            self.offsets.append((start, start + len(c)))
            start += len(c)
        B = labels.shape[0]
        self.target = labels[:, ids]  # [B, L, 2]
        self.select = torch.arange(self.L, device=labels.device).expand(B, -1).clone()  # [B, L] into index
        lo, hi = labels.amin(1), labels.amax(1)
        self.size = (hi - lo).clamp(min=1e-3).prod(-1).sqrt()  # [B]
        self.weights = torch.ones(B, self.L, dtype=labels.dtype, device=labels.device)
        self.position = {k: i for i, k in enumerate(ids)}


def _pose_from_points(model_points, target, weights, rotation, scale, translation, steps: int = 30):
    """Weak-perspective pose of model points to 2D targets, the targets' depth taken from the current pose.

    Args:
        model_points: [B, P, 3] model-space points.
        target: [B, P, 2] image points they should project to.
        weights: [B, P] per-point weights of the alignment.
        rotation, scale, translation: [B, 3, 3], [B], [B, 3] the pose to start from.
        steps: alternations of depth lifting and similarity alignment.

    Returns:
        (rotation [B, 3, 3], scale [B], translation [B, 3]).
    """
    for _ in range(steps):
        depth = ops.apply_similarity(model_points, scale, rotation, translation)[..., 2:]
        dst = torch.cat([target, depth], -1)
        scale, rotation, translation = ops.similarity_align(model_points, dst, weights)
    return rotation, scale, translation


def _solve_coefficients(problem: _Problem, rotation, scale, translation, noise: float, exp_prior: float):
    """Exact MAP coefficients for a fixed pose and correspondences: [B, Ki + Ke]."""
    model = problem.model
    vertex = problem.index[problem.select]  # [B, L]
    basis = model.shape_basis[vertex]  # [B, L, 3, K]
    mean = model.mean[vertex]  # [B, L, 3]
    P = (scale[:, None, None] * rotation[:, :2, :]).to(basis.dtype)  # [B, 2, 3]
    A = torch.einsum("bij,bljk->blik", P, basis)  # [B, L, 2, K]
    b = problem.target - (mean @ P.transpose(1, 2) + translation[:, None, :2])
    sigma = (noise * problem.size)[:, None, None, None]
    w = problem.weights[:, :, None, None].sqrt()
    A = (A * w / sigma).flatten(1, 2)
    b = (b[..., None] * w / sigma).flatten(1, 2)
    K = A.shape[-1]
    prior = torch.ones(K, dtype=A.dtype, device=A.device)
    prior[model.num_id :] = exp_prior
    lhs = A.transpose(1, 2) @ A + torch.diag(prior)
    return torch.linalg.solve(lhs, A.transpose(1, 2) @ b)[..., 0]


def _reassign(problem: _Problem, matcher: ContourMatcher, coeffs, rotation, scale, translation, contour_yaw: float):
    """Re-matches the far-side jaw labels to the occluding contour (in place on problem.select).

    Args:
        problem: the fit's labels and correspondences; ``select`` [B, L] changes.
        matcher: the model's occluding-contour candidates.
        coeffs: [B, Ki + Ke] current coefficients.
        rotation, scale, translation: [B, 3, 3], [B], [B, 3] current pose.
        contour_yaw: faces turned by more than this (degrees) get their far-side jaw re-matched.
    """
    if not matcher.available:
        return
    model = problem.model
    with torch.no_grad():
        yaw = ops.rotation_to_angles(FRONTAL.to(rotation) @ rotation)[:, 0]
        turned = torch.nonzero(yaw.abs() > contour_yaw).flatten()
        jaw = torch.tensor([problem.position[k] for k in range(17)], device=coeffs.device)
        problem.select[:, jaw] = jaw[None]  # every jaw label back on its landmark vertex first
        for chunk in turned.split(REASSIGN_CHUNK):  # full meshes only for a few faces at a time
            posed = ops.synthesize(
                model.mean, model.shape_basis, coeffs[chunk], rotation[chunk], scale[chunk], translation[chunk]
            )
            facing_z, silhouette = matcher.facing(posed)
            # The far side is the one whose jaw faces the camera less (n_z < 0 faces the camera).
            far = torch.stack([facing_z[:, matcher.jaw_triangles[s]].mean(1) for s in range(2)], 1).argmax(1)
            for s, side in enumerate(JAW_SIDES):
                cols = [problem.position[k] for k in side]
                start, stop = problem.offsets[s]
                cand = posed[:, problem.index[start:stop], :2]  # [b, C, 2]
                on = silhouette[:, problem.index[start:stop]]
                labels = problem.target[chunk][:, cols]  # [b, 8, 2]
                dist = (labels[:, :, None] - cand[:, None]).norm(dim=-1)  # [b, 8, C]
                best, where = dist.masked_fill(~on[:, None], float("inf")).min(-1)
                own = (labels - posed[:, model.landmark_vertices[cols], :2]).norm(dim=-1)
                use = (far == s)[:, None] & (best < own)
                fixed = torch.tensor(cols, device=coeffs.device).expand(len(chunk), -1)
                problem.select[chunk[:, None], torch.tensor(cols, device=coeffs.device)[None]] = torch.where(
                    use, start + where, fixed
                )


def fit_landmarks(
    model: MorphableModel,
    landmarks: torch.Tensor,
    config: Optional[FitConfig] = None,
    matcher: Optional[ContourMatcher] = None,
    progress=None,
) -> FitResult:
    """Fits the model to 2D landmark labels (see the module docstring).

    Args:
        model: the 3DMM (it must define at least the eye corners and 6 landmarks).
        landmarks: [B, 68, 2] labels in image pixels (pixel centres at integer + 0.5), iBUG-68 order.
        config: the settings (defaults if None).
        matcher: a ContourMatcher of `model`, to reuse across batches.
        progress: optional callable(int) called with the number of steps done since its last call.

    Returns:
        FitResult.

    Raises:
        ValueError: labels not [B, 68, 2] or not finite, a model without the eye
            corners or with fewer than 6 landmarks, or bad settings.
    """
    config = config or FitConfig()
    config.validate()
    if not isinstance(landmarks, torch.Tensor) or landmarks.dim() != 3 or landmarks.shape[1:] != (68, 2):
        shape = list(landmarks.shape) if isinstance(landmarks, torch.Tensor) else type(landmarks).__name__
        raise ValueError(f"landmarks must be a [B, 68, 2] tensor, got {shape}")
    if not torch.isfinite(landmarks).all():
        raise ValueError("landmarks must be finite")
    ids = model.landmark_ids.tolist()
    if len(ids) < 6 or not all(k in ids for k in OUTER_EYE_CORNERS):
        raise ValueError(f"{model.name}: fitting needs a model with >= 6 iBUG landmarks including points 36 and 45")
    labels = landmarks.to(model.mean)
    matcher = matcher or ContourMatcher(model)
    problem = _Problem(model, labels, matcher)
    B, dtype, device = labels.shape[0], labels.dtype, labels.device
    K = model.num_id + model.num_exp
    coeffs = labels.new_zeros(B, K)
    inner = torch.tensor([0.0 if k < 17 else 1.0 for k in ids], dtype=dtype, device=device).repeat(B, 1)
    mean_lm = model.mean[model.landmark_vertices].repeat(B, 1, 1)
    rotation = FRONTAL.to(labels).repeat(B, 1, 1)
    scale, translation = labels.new_ones(B), labels.new_zeros(B, 3)
    # Start with a frontal scaled pose, then let the Procrustes refine it from the inner points.
    rotation, scale, translation = _pose_from_points(mean_lm, problem.target, inner, rotation, scale, translation)
    for r in range(config.rounds):
        if config.contour and r > 0:
            _reassign(problem, matcher, coeffs, rotation, scale, translation, config.contour_yaw)
        coeffs = _solve_coefficients(problem, rotation, scale, translation, config.noise, config.exp_prior)
        shape = ops.synthesize(model.mean, model.shape_basis, coeffs, index=problem.index)
        shape = torch.gather(shape, 1, problem.select[..., None].expand(-1, -1, 3))
        rotation, scale, translation = _pose_from_points(
            shape, problem.target, problem.weights, rotation, scale, translation
        )
        if progress:
            progress(1)
    rotation, scale, translation, coeffs = _refine(
        problem, matcher, config, coeffs, rotation, scale, translation, progress
    )
    return _result(problem, coeffs, rotation, scale, translation)


def _refine(problem: _Problem, matcher, config: FitConfig, coeffs, rotation, scale, translation, progress):
    """Joint Adam refinement of all parameters (each face's basis rows, apply_similarity, autograd).

    Args:
        problem: the fit's labels and correspondences.
        matcher: the occluding-contour candidates (jaw labels re-matched every ``reassign_every`` steps).
        config: the fit's settings (iterations, lr, priors, noise).
        coeffs: [B, Ki + Ke] starting coefficients.
        rotation, scale, translation: [B, 3, 3], [B], [B, 3] starting pose.
        progress: show a progress bar.

    Returns:
        (rotation, scale, translation, coeffs), refined, detached.
    """
    model = problem.model
    if config.iterations == 0:
        return rotation, scale, translation, coeffs
    B = coeffs.shape[0]
    c = coeffs.detach().clone().requires_grad_(True)
    omega = coeffs.new_zeros(B, 3).requires_grad_(True)
    log_s = scale.detach().log().clone().requires_grad_(True)
    t_origin = translation[:, :2].detach().clone()
    tz = translation[:, 2:].detach()
    R0 = rotation.detach()
    prior = torch.ones(c.shape[1], dtype=c.dtype, device=c.device)
    prior[model.num_id :] = config.exp_prior
    sigma = (config.noise * problem.size)[:, None]
    # Translation moves in pixels: its step is scaled to the face size through the variable's units.
    t_unit = problem.size[:, None].detach() * 0.05
    t_param = torch.zeros_like(t_origin).requires_grad_(True)
    optimiser = torch.optim.Adam([c, omega, log_s, t_param], lr=config.lr)
    # Cosine decay: large steps first, then a settled optimum instead of Adam's jitter around it.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / config.iterations))
    )
    for step in range(config.iterations):
        if step % config.reassign_every == 0:
            with torch.no_grad():
                if config.contour:
                    R, t = _skew_exp(omega) @ R0, t_origin + t_param * t_unit
                    full_t = torch.cat([t, tz], 1)
                    _reassign(problem, matcher, c.detach(), R, log_s.exp(), full_t, config.contour_yaw)
            # Each face's own correspondences (landmark or contour vertices): its rows of the basis.
            vertex = problem.index[problem.select]
            mean_rows, basis_rows = model.mean[vertex], model.shape_basis[vertex]  # [B, L, 3], [B, L, 3, K]
        optimiser.zero_grad(set_to_none=True)
        R = _skew_exp(omega) @ R0
        t = t_origin + t_param * t_unit
        shape = mean_rows + torch.einsum("bljk,bk->blj", basis_rows, c)
        points = ops.apply_similarity(shape, log_s.exp(), R, torch.cat([t, tz], 1))[..., :2]
        data = ((points - problem.target) / sigma[..., None]).square().sum(-1)
        energy = (problem.weights * data).sum(1) + (prior * c.square()).sum(1)
        energy.sum().backward()
        optimiser.step()
        schedule.step()
        if progress:
            progress(1)
    with torch.no_grad():
        R = _skew_exp(omega) @ R0
        t = torch.cat([t_origin + t_param * t_unit, tz], 1)
        return R, log_s.exp(), t, c.detach()


def _result(problem: _Problem, coeffs, rotation, scale, translation) -> FitResult:
    """The fit's outputs: 68 landmarks in 3D and 2D (NaN where the model lacks one), jaw matches, residuals.

    Args:
        problem: the fit's labels and correspondences.
        coeffs: [B, Ki + Ke] fitted coefficients.
        rotation, scale, translation: [B, 3, 3], [B], [B, 3] fitted pose.
    """
    model, B = problem.model, coeffs.shape[0]
    with torch.no_grad():
        posed = ops.synthesize(model.mean, model.shape_basis, coeffs, rotation, scale, translation, index=problem.index)
        fitted = torch.gather(posed, 1, problem.select[..., None].expand(-1, -1, 3))[..., :2]
        lm3d = posed[:, : problem.L]
        full3d = torch.full((B, 68, 3), float("nan"), dtype=posed.dtype, device=posed.device)
        full2d = torch.full((B, 68, 2), float("nan"), dtype=posed.dtype, device=posed.device)
        ids = torch.tensor(problem.ids, device=posed.device)
        full3d[:, ids], full2d[:, ids] = lm3d, fitted
        jaw = torch.full((B, 17), -1, dtype=torch.long, device=posed.device)
        for k in range(17):
            if k in problem.position:
                jaw[:, k] = problem.index[problem.select[:, problem.position[k]]]
        error = (fitted - problem.target).norm(dim=-1).mean(1)
        right, left = (problem.position[k] for k in OUTER_EYE_CORNERS)
        eyes = (problem.target[:, right] - problem.target[:, left]).norm(dim=-1).clamp(min=1e-6)
        angles = ops.rotation_to_angles(FRONTAL.to(rotation) @ rotation)
    return FitResult(
        id_coeffs=coeffs[:, : model.num_id],
        exp_coeffs=coeffs[:, model.num_id :],
        scale=scale,
        rotation=rotation,
        translation=translation,
        angles=angles,
        landmarks3d=full3d,
        fitted2d=full2d,
        jaw_vertices=jaw,
        residual_px=error,
        residual_io=100.0 * error / eyes,
    )
