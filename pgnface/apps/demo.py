"""`pgnface demo`: reconstruct a synthetic clip of a random person and score it against the truth.

Builds the built-in model, renders a short clip of one random person (smooth
pose, expression and lighting), reconstructs every frame with a PGN network
(the bundled reference checkpoint by default), and writes per-frame OBJ
meshes and overlays, a contact sheet (ground truth | reconstruction) and a
metrics table: 68-landmark NME and pose-angle errors against the clip's
exact ground truth. Other networks (--compare; by default the bundled
ablation pair, pgnface/assets/pgn_ablation_*.pt: the same recipe with the pose
solved from the landmarks or regressed) are scored on the same clip, one row
each: the PGN-pose vs regressed-pose comparison.
"""

import json
from pathlib import Path

import cv2
import numpy as np

from pgnface.apps.pipeline import ReconstructionPipeline
from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.eval.metrics import landmark_nme
from pgnface.eval.synthetic import angle_errors, rotation_errors
from pgnface.io.meshes import write_obj
from pgnface.io.overlays import contact_sheet, draw_landmarks, to_uint8_bgr
from pgnface.morphable import MorphableModel
from pgnface.nn import bundled_checkpoints
from pgnface.nn.checkpoint import REFERENCE_CHECKPOINT, network_name


def demo_clip(morphable: MorphableModel, size: int, frames: int, seed: int) -> dict:
    """The demo's synthetic clip of one random person (the same seed gives the same clip at any size).

    Args:
        morphable: the 3DMM the faces are drawn from.
        size: crop size S.
        frames: clip length F.
        seed: which random person.

    Returns:
        SyntheticFaces.sample_clips's dict for one clip (image [1, F, 3, S, S], landmarks2d, angles, ...).
    """
    return SyntheticFaces(morphable, SyntheticConfig(size=size), seed=seed).sample_clips(1, frames, seed=0)


def score_clip(recon, clip: dict) -> tuple:
    """Reconstructs every frame of a clip and scores it against the clip's truth.

    Args:
        recon: the ReconstructionPipeline.
        clip: a demo_clip dict (crops [1, F, 3, S, S] at the network's size).

    Returns:
        (rows: one dict per frame with nme2d and yaw / pitch / roll / geodesic
        errors in degrees, the FaceResults).
    """

    images = clip["image"][0]
    size, frames = images.shape[-1], images.shape[0]
    results = recon.reconstruct_crops(images, [np.array([0.0, 0.0, size, size])] * frames)
    lm_ids = recon.morphable.landmark_ids.cpu().numpy()
    rows = []
    for f, r in enumerate(results):
        truth = np.array([[float(clip[k][0, f]) for k in ("yaw", "pitch", "roll")]])
        errors = angle_errors(r.angles[None], truth)[0]
        true_rotation = clip["rotation"][0, f].double().cpu().numpy()  # image frame, like r.rotation
        geodesic = float(rotation_errors(r.rotation[None], true_rotation[None])[0])
        rows.append(
            {
                "frame": f,
                "nme2d": landmark_nme(r.landmarks[lm_ids, :2], clip["landmarks2d"][0, f].numpy()),
                "yaw_true": float(truth[0, 0]),
                "yaw_error": float(errors[0]),
                "pitch_error": float(errors[1]),
                "roll_error": float(errors[2]),
                "rotation_error": geodesic,
            }
        )
    return rows, results


def _mean(rows) -> dict:
    return {
        key: float(np.mean([r[key] for r in rows]))
        for key in ("nme2d", "yaw_error", "pitch_error", "roll_error", "rotation_error")
    }


# The bundled ablation pair (same recipe and budget, PGN vs regressed pose); see experiments/ablation/README.md.
ABLATION_PREFIX = "pgn_ablation_"


def default_comparisons(checkpoint) -> list:
    """The bundled ablation networks pgn_ablation_*.pt (PGN and regressed pose), other than `checkpoint`.

    Args:
        checkpoint: the main network's file.

    Returns:
        Paths of the comparison networks.
    """

    return [p for p in bundled_checkpoints(ABLATION_PREFIX) if p.resolve() != Path(checkpoint).resolve()]


def run_demo(out_dir, checkpoint=None, frames: int = 8, seed: int = 0, device="cpu", compare=(), on_error=None) -> dict:
    """Runs the demo; returns the metrics dict (also written to OUT/metrics.json).

    Args:
        out_dir: output folder.
        checkpoint: the network that reconstructs the clip (the bundled reference if None).
        frames: the clip's length.
        seed: which random person.
        device: torch device.
        compare: more networks scored on the same clip (rendered at each one's input size);
            their mean errors become extra rows of the comparison table.
        on_error: called with (checkpoint, error) for a comparison network that cannot
            be loaded (it is then skipped); None raises instead.

    Returns:
        {"checkpoint", "frames": per-frame rows, "mean", "pose_mode", "networks": comparison rows}.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
    """

    checkpoint = Path(checkpoint) if checkpoint else REFERENCE_CHECKPOINT
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} not found; train one with `pgnface train` and pass --checkpoint runs/pgn/model.pt"
        )
    morphable = MorphableModel.builtin()
    recon = ReconstructionPipeline(checkpoint, morphable, device=device)
    clips = {recon.size: demo_clip(morphable, recon.size, frames, seed)}
    clip = clips[recon.size]
    rows, results = score_clip(recon, clip)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tiles = []
    triangles = morphable.triangles.numpy()
    images = clip["image"][0]  # [F, 3, S, S]
    for f, r in enumerate(results):
        write_obj(out / f"frame{f:02d}.obj", r.vertices * np.array([1.0, -1.0, -1.0]), triangles, r.colours)
        image = (images[f].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        overlay = recon.overlay(image, [r])
        cv2.imwrite(str(out / f"frame{f:02d}_overlay.png"), overlay)
        truth_tile = draw_landmarks(
            to_uint8_bgr(images[f]), clip["landmarks2d"][0, f].numpy(), clip["landmark_visible"][0, f].numpy()
        )
        tiles += [truth_tile, overlay]
    cv2.imwrite(str(out / "contact_sheet.png"), contact_sheet(tiles, columns=4))
    name = network_name(checkpoint)
    networks = [
        {
            "name": name,
            "checkpoint": str(checkpoint),
            "pose_mode": recon.net.config.pose_mode,
            "input_size": recon.size,
            "mean": _mean(rows),
        }
    ]
    for path in compare:
        try:
            other = ReconstructionPipeline(path, morphable, device=device)
        except (FileNotFoundError, ValueError) as err:
            if on_error is None:
                raise
            on_error(path, err)
            continue
        if other.size not in clips:
            clips[other.size] = demo_clip(morphable, other.size, frames, seed)
        other_rows, _ = score_clip(other, clips[other.size])
        networks.append(
            {
                "name": network_name(path, [n["name"] for n in networks]),
                "checkpoint": str(path),
                "pose_mode": other.net.config.pose_mode,
                "input_size": other.size,
                "mean": _mean(other_rows),
                "frames": other_rows,
            }
        )
    metrics = {
        "checkpoint": str(checkpoint),
        "frames": rows,
        "mean": _mean(rows),
        "pose_mode": recon.net.config.pose_mode,
        "networks": networks,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def format_metrics(metrics: dict) -> str:
    """The per-frame table of the main network and, with comparisons, one row per network.

    Args:
        metrics: run_demo's result.

    Returns:
        The tables as text.
    """
    lines = [
        f"{'frame':>5}  {'true yaw':>8}  {'NME 2D %':>8}  {'|d yaw|':>7}  {'|d pitch|':>9}  {'|d roll|':>8}"
        f"  {'|d R|':>6}"
    ]
    for r in metrics["frames"]:
        lines.append(
            f"{r['frame']:>5}  {r['yaw_true']:>8.1f}  {r['nme2d']:>8.2f}  {r['yaw_error']:>7.2f}  "
            f"{r['pitch_error']:>9.2f}  {r['roll_error']:>8.2f}  {r['rotation_error']:>6.2f}"
        )
    m = metrics["mean"]
    lines.append(
        f"{'mean':>5}  {'':>8}  {m['nme2d']:>8.2f}  {m['yaw_error']:>7.2f}  {m['pitch_error']:>9.2f}  "
        f"{m['roll_error']:>8.2f}  {m['rotation_error']:>6.2f}"
    )
    lines.append(
        "(angle errors in degrees; |d R|: geodesic rotation error, which has no gimbal artefact "
        "near yaw 90 where pitch and roll are ill-defined)"
    )
    networks = metrics.get("networks", [])
    if len(networks) > 1:
        labels = [f"{n['pose_mode']}: {n['name']}" for n in networks]
        width = max(len(label) for label in labels + ["network (pose: name)"])
        lines += [
            "",
            "the same clip, mean over the frames:",
            f"{'network (pose: name)':<{width}}  {'NME 2D %':>8}  {'|d yaw|':>7}  {'|d pitch|':>9}  "
            f"{'|d roll|':>8}  {'|d R|':>6}",
        ]
        for label, n in zip(labels, networks):
            m = n["mean"]
            lines.append(
                f"{label:<{width}}  {m['nme2d']:>8.2f}  {m['yaw_error']:>7.2f}  {m['pitch_error']:>9.2f}  "
                f"{m['roll_error']:>8.2f}  {m['rotation_error']:>6.2f}"
            )
    return "\n".join(lines)
