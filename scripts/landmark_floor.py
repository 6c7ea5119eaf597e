"""How close a 3DMM's 68 landmarks can come to real annotated faces: a floor for any network.

For every AFLW2000-3D annotation (`pts68.npy`, 68 3D landmarks per image) it
fits the model's landmark set by a similarity transform (the mean shape
alone), and by a similarity plus identity and expression coefficients under a
Gaussian prior (a MAP fit, a few alternations), then reports the 2D NME (%,
over sqrt(w*h) of the ground-truth box) by |yaw| bin. A network trained on the
model's faces predicts landmark sets like the model's, so the mean-shape
column is roughly the error of a perfect pose estimate that knows nothing of
the person.

By default the 10 sample images that `pgnface eval aflw2000` tests on are
left out (index.csv names their rows): this uses landmark annotations only,
never images, and is a diagnosis of the model, not training.

    python scripts/landmark_floor.py path/to/aflw2000 [--morphable FILE] [--prior 3]
"""

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from pgnface.eval.metrics import landmark_nme
from pgnface.morphable import MorphableModel
from pgnface.ops import similarity_align

BINS = ((0, 30), (30, 60), (60, 90))


def fit_landmarks(mean, basis, targets, prior=None, rounds=10):
    """Similarity (+ MAP coefficient) fit of model landmarks to targets.

    Args:
        mean: [68, 3] model landmarks (y up). basis: [68, 3, K] scaled by their std.
        targets: [n, 68, 3] annotated landmarks, y up.
        prior: weight of the unit Gaussian prior on the K coefficients, or None
            for the mean shape alone.

    Returns:
        [n, 68, 3] fitted landmarks in the targets' frame.
    """
    src = mean.expand(len(targets), -1, -1)
    s, R, t = similarity_align(src, targets)
    if prior is not None:
        flat = basis.reshape(-1, basis.shape[-1])
        gram = flat.T @ flat + prior * torch.eye(flat.shape[1], dtype=flat.dtype)
        for _ in range(rounds):
            in_model = torch.einsum("nij,npi->npj", R, targets - t[:, None]) / s[:, None, None]
            coeffs = torch.linalg.solve(gram, ((in_model - mean).reshape(len(targets), -1) @ flat).T).T
            src = mean + (coeffs @ flat.T).reshape(len(targets), -1, 3)
            s, R, t = similarity_align(src, targets)
    return s[:, None, None] * src @ R.transpose(1, 2) + t[:, None]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the AFLW2000-3D folder with pts68.npy, yaw.npy and index.csv")
    parser.add_argument("--morphable", help="3DMM file (default: the built-in model)")
    parser.add_argument("--prior", type=float, default=3.0, help="prior weight of the MAP fit (default 3)")
    parser.add_argument("--include-test", action="store_true", help="keep the 10 test samples' rows")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    pts, yaw = np.load(folder / "pts68.npy"), np.load(folder / "yaw.npy")
    with open(folder / "index.csv") as f:
        test_rows = {int(r["row"]) for r in csv.DictReader(f) if (folder / f"{r['name']}.jpg").is_file()}
    rows = np.array([i for i in range(len(pts)) if abs(yaw[i]) <= 90 and (args.include_test or i not in test_rows)])
    morphable = MorphableModel.load(args.morphable) if args.morphable else MorphableModel.builtin()
    lv = morphable.landmark_vertices
    mean = morphable.mean[lv].double()
    basis = torch.cat(
        [morphable.id_basis[lv] * morphable.id_std, morphable.exp_basis[lv] * morphable.exp_std], -1
    ).double()
    gt = torch.from_numpy(pts[rows]).double().transpose(1, 2).contiguous()
    flip = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)  # image y down <-> model y up
    targets = gt * flip
    fits = {
        "mean shape": fit_landmarks(mean, basis, targets),
        f"MAP fit (prior {args.prior:g})": fit_landmarks(mean, basis, targets, args.prior),
    }
    errors = {name: landmark_nme((fit * flip)[..., :2].numpy(), gt[..., :2].numpy()) for name, fit in fits.items()}
    a = np.abs(yaw[rows])
    print(f"{morphable.name}: 2D NME % of the best fit to {len(rows)} AFLW2000-3D annotations")
    print(f"{'fit':>24} " + " ".join(f"{f'({lo},{hi}]':>9}" for lo, hi in BINS) + "  balanced")
    for name, e in errors.items():
        per_bin = [e[(a > lo) & (a <= hi)].mean() if lo else e[a <= hi].mean() for lo, hi in BINS]
        print(f"{name:>24} " + " ".join(f"{v:9.2f}" for v in per_bin) + f"  {np.mean(per_bin):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
