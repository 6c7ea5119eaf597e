"""Before/after report of fine-tuning on real data: loss terms on fixed real batches, and overlays.

    python -m pgnface.train.probe --checkpoint before.pt --checkpoint after.pt \\
        --images photos/ --video frames/ -o report/

For each checkpoint it evaluates every loss term of the training objective
on the same fixed batches of unlabelled photo faces and video clips (fixed
seeds, no augmentation), prints one table, writes probe.json, and draws
probe.jpg: the real crops, then per checkpoint its rendered reconstruction
(albedo and lighting) composited over each crop with its landmarks.
"""

import argparse
import json
import sys
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


def main(argv=None) -> int:
    """The probe command (``python -m pgnface.train.probe``).

    Args:
        argv: command-line arguments (sys.argv[1:] if None).

    Returns:
        The exit code: 0 on success, 2 on bad input.
    """
    parser = argparse.ArgumentParser(prog="python -m pgnface.train.probe", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="a network (model.pt); repeat to compare, e.g. before and after fine-tuning",
    )
    parser.add_argument("--images", default="", help="folder of photos (faces found by OpenCV's cascade)")
    parser.add_argument("--video", default="", help="video file or folder of frames of one person")
    parser.add_argument("--batches", type=int, default=4, help="batches per source (default 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--frames", type=int, default=4, help="frames per video clip (default 4)")
    parser.add_argument("--show", type=int, default=8, help="crops drawn in probe.jpg per source (default 8)")
    parser.add_argument("-o", "--out", default="probe", help="output folder (default ./probe)")
    args = parser.parse_args(argv)
    nets, sizes = [], set()
    for path in args.checkpoint:
        try:
            net, payload = load_network(path)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: --checkpoint {path}: {err}", file=sys.stderr)
            return 2
        nets.append(net)
        sizes.add(int(payload.get("input_size", 120)))
    if len(sizes) != 1:
        print(f"error: the checkpoints were trained at different input sizes {sorted(sizes)}", file=sys.stderr)
        return 2
    size = sizes.pop()
    try:
        batches = fixed_batches(args.images, args.video, int(size), args.batches, args.batch_size, args.frames)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = {path: probe_losses(net, batches) for path, net in zip(args.checkpoint, nets)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
    for kind in sorted({k for r in report.values() for k in r}):
        keys = sorted({t for r in report.values() for t in r.get(kind, {})} - {"total"}) + ["total"]
        print(f"\n{kind}: loss terms on {args.batches} fixed batches")
        print(f"{'term':<22}" + "".join(f"{Path(p).parent.name or Path(p).stem:>16}" for p in report))
        for key in keys:
            print(f"{key:<22}" + "".join(f"{report[p].get(kind, {}).get(key, float('nan')):>16.4f}" for p in report))
    shown = {}
    for batch in batches:
        shown.setdefault(batch["kind"], batch["image"][: args.show])
    rows = []
    for crops in shown.values():
        real = (crops.permute(0, 2, 3, 1).numpy()[..., ::-1] * 255 + 0.5).astype(np.uint8)
        rows.append(np.concatenate(list(real), 1))
        rows += [overlay_strip(net, crops) for net in nets]
    cv2.imwrite(str(out / "probe.jpg"), np.concatenate(rows, 0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"\nwrote {out / 'probe.json'} and {out / 'probe.jpg'} (rows: real crops, then each checkpoint's render)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
