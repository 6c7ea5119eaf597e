"""The training objective: which losses a batch gets, with which weights.

Labelled batches get the supervised terms; real faces with 2D labels get
loss.landmarks2d (pgnface.train.outline); every batch gets the priors and
the self-supervised terms; clips (frames > 1) also get the multi-frame terms
(video clips with their optical flow also the flow check, loss.flow);
unlabelled batches with a warped copy also get loss.equivariance.
"""

from typing import Dict, Optional, Tuple

import torch

from pgnface.morphable import MorphableModel
from pgnface.train import losses as L
from pgnface.train.config import LossWeights
from pgnface.train.equivariance import equivariance_loss
from pgnface.train.flow import flow_consistency_loss
from pgnface.train.outline import outline_landmark_loss


def compute_losses(
    out: Dict[str, torch.Tensor],
    batch: Dict,
    morphable: MorphableModel,
    weights: LossWeights,
    warped_landmarks: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Weighted total loss of one batch and its terms.

    Args:
        out: the reconstructor's forward dict for batch["image"].
        batch: a pgnface.train.batches batch (image, frames, labelled, and the labels).
        morphable: the network's 3DMM on the batch's device.
        weights: LossWeights; terms with weight 0 are not computed.
        warped_landmarks: the landmark head's [B, 68, 3] on batch["warped_image"]
            (unlabelled batches with loss.equivariance).

    Returns:
        (total loss tensor, {term: unweighted value as a float tensor, detached}).
    """
    w = weights
    image = batch["image"]
    S = image.shape[-1]
    ids = morphable.landmark_ids
    head = out["landmarks"][:, ids]
    terms: Dict[str, torch.Tensor] = {}
    if batch["labelled"]:
        target = batch["landmarks3d"].to(head)
        if w.landmarks3d:
            terms["landmarks3d"] = L.landmark_loss(head, target, S, depth_weight=w.depth)
        if w.heatmap and "heatmaps" in out:
            terms["heatmap"] = L.heatmap_loss(out["heatmaps"][:, ids], target, S)
        if w.landmarks_recon:
            terms["landmarks_recon"] = L.landmark_loss(out["landmarks_recon"], target, S, depth_weight=w.depth)
        if w.coefficients and "id" in batch:  # synthetic labels only
            terms["coefficients"] = L.coefficient_loss(out, batch, {"id": 1.0, "exp": 1.0, "albedo": 0.5})
        if w.vertices and "vertices" in batch:
            terms["vertices"] = L.vertex_loss(out["vertices"], batch["vertices"].to(head), S)
    if w.landmarks2d and "landmarks2d" in batch:  # real faces: 2D labels, the jaw as an outline
        terms["landmarks2d"] = outline_landmark_loss(out["landmarks"], batch["landmarks2d"], S, batch["label_weight"])
    if w.prior:
        terms["prior"] = L.coefficient_prior(out, {"id": 1.0, "exp": 1.0, "albedo": 1.0})
    if w.lighting:
        terms["lighting"] = L.lighting_prior(out["gamma"])
    if w.landmark_consistency:
        terms["landmark_consistency"] = L.landmark_consistency_loss(out["landmarks_recon"], head, S)
    frames = batch["frames"]
    flow = w.flow > 0 and "flow" in batch
    multi = frames > 1 and (w.geometric or w.photometric_cross or flow)
    rendering = None
    if w.photometric or multi:
        rendering = L.render_prediction(out, morphable, S)
    if w.photometric:
        terms["photometric"] = L.photometric_loss(rendering.image, image, rendering.mask)
    if frames > 1:

        def clips(x):
            return x.reshape(-1, frames, *x.shape[1:])

        if w.identity:
            terms["identity"] = L.identity_consistency_loss(clips(out["id"]))
        visible = clips(rendering.visible) if rendering is not None else None
        if w.geometric:
            # Expression displacement of every vertex: model.vertices(0, exp) - mean.
            offsets = morphable.vertices(None, out["exp"]) - morphable.mean
            width = float(morphable.mean[:, 0].max() - morphable.mean[:, 0].min())
            terms["geometric"] = L.cross_frame_geometric_loss(
                clips(out["vertices"]),
                clips(out["scale"]),
                clips(out["rotation"]),
                clips(out["translation"]),
                clips(offsets),
                visible,
                norm=width,
            )
        if w.photometric_cross:
            terms["photometric_cross"] = L.cross_frame_photometric_loss(clips(image), clips(out["projected"]), visible)
        if flow:
            terms["flow"] = flow_consistency_loss(
                clips(out["projected"]), batch["flow"], batch["flow_valid"], visible, S
            )
    if w.equivariance and warped_landmarks is not None:
        terms["equivariance"] = equivariance_loss(out["landmarks"], warped_landmarks, batch["warp"], S)
    total = sum(getattr(w, k) * v for k, v in terms.items())
    return total, {k: v.detach() for k, v in terms.items()}
