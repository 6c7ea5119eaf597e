"""Mean signed landmark error of a network, by landmark group, on real and synthetic faces.

A bias (every prediction shifted the same way) on real faces that synthetic faces do not
show is a domain gap, not noise. Prints one row per set, in pixels of the network's crop
(x right, y down), for the iBUG-68 groups jaw, brows, nose, eyes and mouth:

    python scripts/landmark_bias.py --checkpoint pgnface/assets/pgn_reference.pt \\
        --aflw path/to/aflw2000 --image path/to/ibug_0010.jpg \\
        --synthetic 200 --light-contrast 8

Real faces are cropped by the standard landmark-box crop of their annotation, as
``pgnface eval aflw2000`` does; ``--image`` needs ``<stem>_lm68.npy`` (68 x 2 or 3 pixels)
next to the image, and its row ends with the image's 2D NME. Synthetic faces are the built-in
model's, framed the same way; only those with |yaw| < 30 degrees are kept, so the row compares with near-frontal photos.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgnface.data import SyntheticConfig, SyntheticFaces  # noqa: E402
from pgnface.eval.aflw2000 import load_aflw2000
from pgnface.eval.metrics import landmark_nme
from pgnface.eval.predictors import CheckpointPredictor  # noqa: E402
from pgnface.io.crops import crop, crop_to_image, image_to_crop, landmark_crop_box
from pgnface.io.images import read_image

GROUPS = {
    "jaw": slice(0, 17),
    "brows": slice(17, 27),
    "nose": slice(27, 36),
    "eyes": slice(36, 48),
    "mouth": slice(48, 68),
}


def predict_in_crop(predictor, image: np.ndarray, landmarks: np.ndarray):
    """The network's landmarks and the annotation, both [68, 2] in crop pixels.

    Args:
        predictor: maps crops [1, 3, S, S] to landmarks [1, 68, >=2] (S = its input_size).
        image: [H, W, 3] uint8 RGB.
        landmarks: [68, >=2] annotation in image pixels; its box frames the crop.

    Returns:
        (prediction [68, 2], annotation [68, 2], crop box [4]).
    """
    size = predictor.input_size
    box = landmark_crop_box(landmarks[:, :2])
    crops = torch.from_numpy(crop(image, box, size)).permute(2, 0, 1)[None].float() / 255
    return predictor(crops)[0, :, :2].numpy(), image_to_crop(landmarks[:, :2], box, size), box


def signed_error(predictor, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """[68, 2] prediction - annotation in crop pixels for one RGB image and its [68, >=2] landmarks."""
    prediction, annotation, _ = predict_in_crop(predictor, image, landmarks)
    return prediction - annotation


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
        labels = Path(path).with_name(Path(path).stem + "_lm68.npy")
        try:
            image = read_image(path)
        except ValueError:
            image = None
        if image is None or not labels.is_file():
            parser.error(f"--image {path}: needs a readable image and {labels.name} beside it")
        truth = np.load(labels)[:, :2]
        prediction, annotation, box = predict_in_crop(predictor, image, truth)
        # Its 2D NME as pgnface eval aflw2000 scores one (the prediction back in image pixels).
        score = landmark_nme(crop_to_image(prediction, box, predictor.input_size), truth)
        print(format_row(Path(path).name, (prediction - annotation)[None]) + f"  NME {score:.2f} %")
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
