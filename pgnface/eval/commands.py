"""`pgnface eval ...` subcommands (registered by pgnface.cli)."""

import sys
from pathlib import Path

import numpy as np


def _eval_aflw2000(args) -> int:
    from .aflw2000 import evaluate, load_aflw2000
    from .baselines import CheckpointPredictor, MeanShapePredictor
    from .plots import error_distribution_png

    try:
        reannotated = np.load(args.reannotated) if args.reannotated else None
        samples = load_aflw2000(args.folder, reannotated=reannotated)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"pgnface eval aflw2000: {err}", file=sys.stderr)
        return 2
    try:
        if args.checkpoint:
            from ..model import MorphableModel
            model = MorphableModel.load(args.model) if args.model else None
            predictor = CheckpointPredictor(args.checkpoint, model, args.size, args.device)
            label = f"checkpoint {args.checkpoint}"
        else:
            predictor, label = MeanShapePredictor(input_size=args.size or 120), "mean-shape baseline"
    except (FileNotFoundError, ValueError) as err:
        print(f"pgnface eval aflw2000: {err}", file=sys.stderr)
        return 2
    result = evaluate(predictor, samples)
    print(f"AFLW2000-3D protocol, {len(samples)} images, predictor: {label}")
    print(result.format_table())
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    result.write_csv(out / "per_image.csv")
    by_bin = {label: [r["nme2d"] for r in rows] for label, rows in result.by_bin().items()}
    error_distribution_png(by_bin, out / "nme.png", title=f"AFLW2000-3D 2D NME, {label}")
    print(f"wrote {out / 'per_image.csv'} and {out / 'nme.png'}")
    return 0


def _mesh_pairs(pred, gt):
    """[(name, pred_path, gt_path)] for two files or two folders (matched by file stem)."""
    pred, gt = Path(pred), Path(gt)
    if pred.is_dir() != gt.is_dir():
        raise ValueError("PRED and GT must both be files or both be folders")
    if not pred.is_dir():
        return [(pred.stem, pred, gt)]
    suffixes = (".obj", ".ply", ".npz")
    gts = {p.stem: p for p in sorted(gt.iterdir()) if p.suffix.lower() in suffixes}
    pairs = [(p.stem, p, gts[p.stem]) for p in sorted(pred.iterdir())
             if p.suffix.lower() in suffixes and p.stem in gts]
    if not pairs:
        raise ValueError(f"no meshes in {pred} with a same-named ground truth in {gt}")
    return pairs


def _landmarks(path):
    """[L, 3] landmarks stored next to a mesh in an .npz ('landmarks'), or None."""
    if Path(path).suffix.lower() != ".npz":
        return None
    with np.load(path) as data:
        return np.asarray(data["landmarks"], np.float64) if "landmarks" in data else None


def _eval_dense(args) -> int:
    import csv

    from ..data.meshio import read_mesh
    from .dense import dense_errors

    try:
        pairs = _mesh_pairs(args.pred, args.gt)
    except (ValueError, FileNotFoundError) as err:
        print(f"pgnface eval dense: {err}", file=sys.stderr)
        return 2
    rows, failures = [], 0
    for name, pred_path, gt_path in pairs:
        try:
            pv, pt = read_mesh(pred_path)
            gv, _ = read_mesh(gt_path)
            pl, gl = _landmarks(pred_path), _landmarks(gt_path)
            tip = gl[30] if gl is not None and len(gl) == 68 else None
            if args.crop_radius and tip is None:
                raise ValueError(f"{gt_path}: --crop-radius needs 68 ground-truth landmarks (an .npz 'landmarks')")
            result = dense_errors(pv, pt, gv, pred_landmarks=pl, gt_landmarks=gl,
                                  crop_radius=args.crop_radius, nose_tip=tip)
        except (ValueError, FileNotFoundError) as err:
            print(f"pgnface eval dense: {name}: {err}", file=sys.stderr)
            failures += 1
            continue
        rows.append({"name": name, **result.as_dict()})
        print(f"{name}: RMSE {result.rmse:.4f}  mean {result.mean:.4f}  median {result.median:.4f} "
              f"({result.points} points, {result.iterations} ICP iterations)")
    if not rows:
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dense.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} meshes: mean RMSE {np.mean([r['rmse'] for r in rows]):.4f}, "
          f"mean distance {np.mean([r['mean'] for r in rows]):.4f}, "
          f"median distance {np.median([r['median'] for r in rows]):.4f}; wrote {out / 'dense.csv'}"
          + (f"; {failures} failed" if failures else ""))
    return 0


def add_eval_parser(subparsers) -> None:
    """Adds `eval` (with its protocols as sub-subcommands) to the pgnface CLI."""
    evaluate = subparsers.add_parser("eval", help="evaluation protocols",
                                     description="Evaluation protocols of the field.")
    protocols = evaluate.add_subparsers(dest="protocol", required=True)
    aflw = protocols.add_parser(
        "aflw2000", help="AFLW2000-3D: 68-point NME by yaw bin",
        description="AFLW2000-3D protocol: crops each image from its ground-truth landmark box (3DDFA's "
                    "roi_box), predicts 68 landmarks, maps them back and reports 2D/3D NME (%%, normalised by "
                    "sqrt(w*h) of the ground-truth box) for |yaw| in [0,30], (30,60], (60,90], their balanced "
                    "mean and the plain mean. Writes per_image.csv and nme.png (error distribution).")
    aflw.add_argument("folder", help="folder of imageXXXXX.jpg + imageXXXXX.mat (pt3d_68, Pose_Para)")
    aflw.add_argument("-o", "--output", default="eval_aflw2000", help="output folder (default ./eval_aflw2000)")
    aflw.add_argument("--checkpoint", default=None,
                      help="trained PGN network (pgnface train's model.pt); without it the constant mean-face "
                           "baseline is evaluated (a floor, not a method)")
    aflw.add_argument("--model", default=None, help="the 3DMM file the checkpoint was trained with (default built-in)")
    aflw.add_argument("--size", type=int, default=None,
                      help="crop size given to the predictor (default: the checkpoint's training size, or 120)")
    aflw.add_argument("--device", default="cpu", help="torch device for the network (default cpu)")
    aflw.add_argument("--reannotated", default=None,
                      help="3DDFA's pts68_reannotated.npy: use the re-annotated 2D landmarks (needs index.csv)")
    aflw.set_defaults(run=_eval_aflw2000)
    dense = protocols.add_parser(
        "dense", help="dense mesh-to-scan errors (Florence / NoW style)",
        description="Aligns each predicted mesh to its ground truth (landmark similarity when both .npz files "
                    "hold 'landmarks', else centroids; then ICP with scale) and reports RMSE, mean and median "
                    "ground-truth-to-prediction surface distance in the ground truth's units. Writes dense.csv.")
    dense.add_argument("pred", help="predicted mesh (.obj/.ply/.npz) or a folder of them")
    dense.add_argument("gt", help="ground-truth mesh or scan, or a folder with the same file stems")
    dense.add_argument("-o", "--output", default="eval_dense", help="output folder (default ./eval_dense)")
    dense.add_argument("--crop-radius", type=float, default=None,
                       help="keep ground-truth points within this distance of its nose tip (landmark 31); "
                            "the Florence protocol uses 95 (mm)")
    dense.set_defaults(run=_eval_dense)
