"""Calibrates pgnface.io.crops.face_crop_box for the face detector on the 300-W training faces.

    python scripts/calibrate_face_crop.py ../shared/data/300w [--subsets afw helen_train]

For every labelled face it runs the detector (pgnface.io.detect), keeps the
box nearest the label's 68-point box centre, and compares it with the crop
the network expects (square, centred on the 68-point box, side sqrt(2) x its
longer side). Prints, per way of measuring the box's size, the median ratio
(the `enlarge` constant) and its spread, and the median vertical offset of the
centre in box heights (`shift_down`). Only training subsets may be used to
choose the constants; pass --subsets helen_test to check them on held-out faces.
The 300-W labels are for non-commercial research use only.
"""

import argparse

import numpy as np

from pgnface.eval.face300w import load_300w
from pgnface.io.detect import detect_faces
from pgnface.io.images import read_image

SIZES = {
    "sqrt(w*h)": lambda w, h: np.sqrt(w * h),
    "max(w,h)": np.maximum,
    "width": lambda w, h: w,
    "(w+h)/2": lambda w, h: (w + h) / 2,
}


def measure(root, subsets):
    """Rows (detector box [4], landmark box lo [2], hi [2]) of the faces the detector finds; and the misses."""
    rows, missed = [], []
    for subset in subsets:
        for face in load_300w(root, subset=subset):
            lo, hi = face.landmarks.min(0), face.landmarks.max(0)
            centre = (lo + hi) / 2
            boxes = [
                b
                for b in detect_faces(read_image(face.path))
                if b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3]
            ]
            if not boxes:
                missed.append(face.name)
                continue
            box = min(boxes, key=lambda b: float(np.hypot(*((b[:2] + b[2:]) / 2 - centre))))
            rows.append((box, lo, hi))
    return rows, missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the 300-W folder with landmarks.npz")
    parser.add_argument("--subsets", nargs="+", default=["afw", "helen_train"])
    args = parser.parse_args()
    rows, missed = measure(args.root, args.subsets)
    boxes = np.array([r[0] for r in rows])
    lo, hi = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    target_side = np.sqrt(2.0) * (hi - lo).max(1)
    print(f"{len(rows)} faces found, {len(missed)} missed {missed[:10]}")
    for label, size in SIZES.items():
        ratio = target_side / size(w, h)
        median = float(np.median(ratio))
        print(f"enlarge by {label:>9}: median {median:.3f}, relative spread (std) {np.std(ratio / median):.3f}")
    dx = ((lo[:, 0] + hi[:, 0]) / 2 - (boxes[:, 0] + boxes[:, 2]) / 2) / w
    dy = ((lo[:, 1] + hi[:, 1]) / 2 - (boxes[:, 1] + boxes[:, 3]) / 2) / h
    print(f"shift_down: median {np.median(dy):.3f} box heights (sideways: {np.median(dx):+.3f} widths)")


if __name__ == "__main__":
    main()
