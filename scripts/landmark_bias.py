"""Mean signed landmark error of a network, by landmark group, on real and synthetic faces.

A bias (every prediction shifted the same way) on real faces that synthetic faces do not
show is a domain gap, not noise. Prints one row per set, in pixels of the network's crop
(x right, y down), for the iBUG-68 groups jaw, brows, nose, eyes and mouth:

    python scripts/landmark_bias.py --checkpoint pgnface/assets/pgn_reference.pt \\
        --aflw ../shared/data/aflw2000 --image ../shared/data/images/ibug_0010.jpg \\
        --synthetic 200 --light-contrast 8

Real faces are cropped by the standard landmark-box crop of their annotation, as
``pgnface eval aflw2000`` does; ``--image`` needs ``<stem>_lm68.npy`` (68 x 2 or 3 pixels)
next to the image, and its row ends with the image's 2D NME. Synthetic faces are the built-in
model's, framed the same way; only those with |yaw| < 30 degrees are kept, so the row compares with near-frontal photos.
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgnface.data import SyntheticConfig, SyntheticFaces  # noqa: E402
from pgnface.eval.aflw2000 import load_aflw2000
from pgnface.eval.metrics import nme
from pgnface.eval.predictors import CheckpointPredictor  # noqa: E402
from pgnface.io.crops import crop, landmark_crop_box

GROUPS = {
    "jaw": slice(0, 17),
    "brows": slice(17, 27),
    "nose": slice(27, 36),
    "eyes": slice(36, 48),
    "mouth": slice(48, 68),
}


def signed_error(predictor, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """[68, 2] prediction - annotation in crop pixels for one RGB image and its [68, >=2] landmarks."""
    size = predictor.input_size
    box = landmark_crop_box(landmarks[:, :2])
    crops = torch.from_numpy(crop(image, box, size)).permute(2, 0, 1)[None].float() / 255
    truth = (landmarks[:, :2] - box[:2]) * size / (box[2] - box[0])
    return predictor(crops)[0, :, :2].numpy() - truth


def format_row(name: str, errors: np.ndarray) -> str:
    """errors [n, 68, 2] -> one line: the group means of x and y."""
    if len(errors) == 0:
        return f"{name:28s} n=   0  (no faces)"
    cells = [f"{g} {errors[:, s, 0].mean():+.2f},{errors[:, s, 1].mean():+.2f}" for g, s in GROUPS.items()]
    return f"{name:28s} n={len(errors):4d}  " + "  ".join(cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a network trained by pgnface train")
    parser.add_argument("--aflw", help="AFLW2000-3D folder (imageXXXXX.jpg + .mat)")
    parser.add_argument("--image", action="append", default=[], help="an image with <stem>_lm68.npy beside it")
    parser.add_argument("--synthetic", type=int, default=0, help="how many synthetic faces to draw (0: none)")
    parser.add_argument("--light-contrast", type=float, default=1.0, help="their data.light_contrast")
    args = parser.parse_args(argv)
    predictor = CheckpointPredictor(args.checkpoint)
    print("mean signed error (x, y) in crop pixels, prediction - annotation")
    if args.aflw:
        samples = load_aflw2000(args.aflw)
        print(format_row("AFLW2000-3D", np.stack([signed_error(predictor, s.image, s.landmarks) for s in samples])))
    for path in args.image:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        labels = Path(path).with_name(Path(path).stem + "_lm68.npy")
        if image is None or not labels.is_file():
            parser.error(f"--image {path}: needs a readable image and {labels.name} beside it")
        truth = np.zeros((68, 3))
        truth[:, :2] = np.load(labels)[:, :2]
        errors = signed_error(predictor, np.ascontiguousarray(image[..., ::-1]), truth)
        # Its 2D NME as pgnface eval aflw2000 scores one (the prediction back in image pixels).
        box = landmark_crop_box(truth[:, :2])
        pred = truth.copy()
        pred[:, :2] += errors * (box[2] - box[0]) / predictor.input_size
        print(format_row(Path(path).name, errors[None]) + f"  NME {nme(pred, truth)['nme2d']:.2f} %")
    if args.synthetic:
        config = SyntheticConfig(size=predictor.input_size, framing="landmarks", light_contrast=args.light_contrast)
        batch = SyntheticFaces(config=config, seed=12345).sample(args.synthetic, seed=0)
        frontal = batch["yaw"].abs() < 30
        with torch.no_grad():
            errors = (predictor(batch["image"])[..., :2] - batch["landmarks2d"])[frontal].numpy()
        print(format_row("synthetic, |yaw| < 30", errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
