"""Before/after report of fine-tuning on real data: loss terms on fixed real batches, and overlays.

    pgnface probe --checkpoint before.pt --checkpoint after.pt --images photos/ --video frames/ -o report/

For each checkpoint it evaluates every loss term of the training objective
on the same fixed batches of unlabelled photo faces and video clips (fixed
seeds, no augmentation), prints one table, writes probe.json, and draws
probe.jpg: the real crops, then per checkpoint its rendered reconstruction
(albedo and lighting) composited over each crop with its landmarks.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

from pgnface.data.unlabelled import UnlabelledPhotos, VideoClips
from pgnface.io.overlays import draw_landmarks
from pgnface.nn import load_network
from pgnface.train import losses as L
from pgnface.train.config import LossWeights
from pgnface.train.objective import compute_losses

PROBE_SEED = 20_261_125


def fixed_batches(images, video, size: int, batches: int, batch_size: int, frames: int) -> List[Dict]:
    """The probe's real batches, the same for every checkpoint (fixed seed).

    Args:
        images: folder of photos, or "" for none.
        video: video file or frame folder, or "" for none.
        size: crop size S.
        batches: batches per source.
        batch_size: crops per photo batch (a video batch holds batch_size // frames clips).
        frames: frames per clip.

    Returns:
        [{"kind": "images" | "video", "image": [b, 3, S, S], "frames", "labelled": False}].

    Raises:
        ValueError: neither source given.
    """
    out = []
    g = torch.Generator().manual_seed(PROBE_SEED)
    if images:
        photos = UnlabelledPhotos(images, size)
        out += [
            {"kind": "images", "image": photos.batch(batch_size, g), "frames": 1, "labelled": False}
            for _ in range(batches)
        ]
    if video:
        clips = VideoClips(video, size, frames)
        out += [
            {
                "kind": "video",
                "image": clips.batch(max(1, batch_size // frames), g),
                "frames": frames,
                "labelled": False,
            }
            for _ in range(batches)
        ]
    if not out:
        raise ValueError("give --images and/or --video")
    return out


@torch.no_grad()
def probe_losses(net, batches: Sequence[Dict], weights: Optional[LossWeights] = None) -> Dict[str, Dict[str, float]]:
    """Mean loss terms (unweighted) and the weighted total per batch kind.

    Args:
        net: the PGNNetwork.
        batches: from fixed_batches.
        weights: loss weights (the defaults if None).

    Returns:
        {kind: {term: mean value, "total": weighted total}}.
    """
    weights = weights or LossWeights()
    sums: Dict[str, Dict[str, float]] = {}
    counts: Dict[str, int] = {}
    for batch in batches:
        out = net(batch["image"])
        total, terms = compute_losses(out, batch, net.morphable, weights)
        row = sums.setdefault(batch["kind"], {})
        for key, value in {"total": total, **terms}.items():
            row[key] = row.get(key, 0.0) + float(value)
        counts[batch["kind"]] = counts.get(batch["kind"], 0) + 1
    return {kind: {k: v / counts[kind] for k, v in row.items()} for kind, row in sums.items()}


@torch.no_grad()
def overlay_strip(net, crops: torch.Tensor) -> np.ndarray:
    """Each crop with the network's rendered face composited over it and its landmarks.

    Args:
        net: the PGNNetwork.
        crops: [n, 3, S, S] RGB in [0, 1].

    Returns:
        [S, n S, 3] uint8 BGR.
    """
    out = net(crops)
    S = crops.shape[-1]
    rendering = L.render_prediction(out, net.morphable, S)
    mask = rendering.mask[..., None]
    image = rendering.image.clamp(0, 1) * mask + crops.permute(0, 2, 3, 1) * (1 - mask)
    tiles = []
    for i in range(crops.shape[0]):
        bgr = np.ascontiguousarray((image[i].numpy()[..., ::-1] * 255 + 0.5).astype(np.uint8))
        tiles.append(draw_landmarks(bgr, out["landmarks"][i, :, :2].numpy(), radius=1))
    return np.concatenate(tiles, 1)


def run_probe(
    checkpoints: Sequence,
    out_dir,
    images="",
    video="",
    batches: int = 4,
    batch_size: int = 16,
    frames: int = 4,
    show: int = 8,
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Scores every checkpoint on the same fixed real batches; writes probe.json and probe.jpg.

    Args:
        checkpoints: networks (model.pt files), e.g. before and after fine-tuning.
        out_dir: output folder.
        images, video: a folder of photos and / or a video (file or frame folder) of one person.
        batches: fixed batches per source; batch_size: crops per batch; frames: frames per video clip.
        show: crops per source drawn in probe.jpg.

    Returns:
        {checkpoint: {batch kind: {loss term: mean value}}}, as written to probe.json.

    Raises:
        FileNotFoundError, ValueError: a checkpoint or source cannot be read, no source is
            given, or the checkpoints were trained at different input sizes.
    """
    for name, value in (("batches", batches), ("batch_size", batch_size), ("frames", frames)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    nets, sizes = [], set()
    for path in checkpoints:
        try:
            net, payload = load_network(path)
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"--checkpoint {path}: {err}") from err
        nets.append(net)
        sizes.add(int(payload.get("input_size", 120)))
    if len(sizes) != 1:
        raise ValueError(f"the checkpoints were trained at different input sizes {sorted(sizes)}")
    real = fixed_batches(images, video, sizes.pop(), batches, batch_size, frames)
    report = {str(path): probe_losses(net, real) for path, net in zip(checkpoints, nets)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
    shown = {}
    for batch in real:
        shown.setdefault(batch["kind"], batch["image"][:show])
    rows = []
    for crops in shown.values():
        crops_bgr = (crops.permute(0, 2, 3, 1).numpy()[..., ::-1] * 255 + 0.5).astype(np.uint8)
        rows.append(np.concatenate(list(crops_bgr), 1))
        rows += [overlay_strip(net, crops) for net in nets]
    cv2.imwrite(str(out / "probe.jpg"), np.concatenate(rows, 0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return report


def format_report(report: Dict[str, Dict[str, Dict[str, float]]], batches: int) -> str:
    """One table per batch kind: a row per loss term, a column per checkpoint."""
    lines = []
    for kind in sorted({k for r in report.values() for k in r}):
        keys = sorted({t for r in report.values() for t in r.get(kind, {})} - {"total"}) + ["total"]
        lines += ["", f"{kind}: loss terms on {batches} fixed batches"]
        lines.append(f"{'term':<22}" + "".join(f"{Path(p).parent.name or Path(p).stem:>16}" for p in report))
        for key in keys:
            lines.append(
                f"{key:<22}" + "".join(f"{report[p].get(kind, {}).get(key, float('nan')):>16.4f}" for p in report)
            )
    return "\n".join(lines)
