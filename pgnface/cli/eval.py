"""`pgnface eval`: the evaluation protocols (aflw2000, 300w, dense, synthetic), one sub-command each."""

import math
from pathlib import Path

from pgnface.cli import checks, outputs
from pgnface.cli.errors import LOAD_ERRORS, UsageError, input_errors, report

CROP_SIZES = (32, checks.MAX_SIZE)  # crop sizes a network can be evaluated at, pixels


def _network_label(checkpoint, args) -> str:
    """How a report names the predictor: the checkpoint, its landmark source and flip averaging."""
    label = f"checkpoint {checkpoint}"
    if args.landmarks == "recon":
        label += ", reconstruction's landmarks"
    return label + (" with flip averaging" if args.flip else "")


def _add_landmark_source(parser) -> None:
    parser.add_argument(
        "--landmarks",
        choices=("head", "recon"),
        default="head",
        help="which 68 points to score: the landmark head's (default) or the posed 3D "
        "reconstruction's landmark vertices (its pose counts: what the pose ablation compares)",
    )


def _eval_aflw2000(args) -> int:
    import cv2
    import numpy as np

    from pgnface.eval.aflw2000 import evaluate, load_aflw2000
    from pgnface.eval.plots import error_distribution_png, landmark_sheet
    from pgnface.eval.predictors import CheckpointPredictor, MeanShapePredictor
    from pgnface.morphable import MorphableModel
    from pgnface.nn.checkpoint import REFERENCE_CHECKPOINT

    if args.flip and args.mean_face:
        raise UsageError("--flip does not apply to --mean-face (the constant mean face has nothing to average)")
    if args.landmarks != "head" and args.mean_face:
        raise UsageError("--landmarks does not apply to --mean-face (it has no network)")
    checks.in_range("--size", args.size, *CROP_SIZES, unit=" px")
    checks.device(args.device)
    out = outputs.folder(args.output)
    with input_errors(kinds=(ValueError, OSError)):
        reannotated = np.load(args.reannotated) if args.reannotated else None
        samples = load_aflw2000(args.folder, reannotated=reannotated)
    checkpoint = args.checkpoint or REFERENCE_CHECKPOINT
    with input_errors(f"--checkpoint {checkpoint}" if not args.mean_face else "", kinds=LOAD_ERRORS):
        if args.mean_face:
            predictor, label = MeanShapePredictor(input_size=args.size or 120), "mean-shape baseline"
        else:
            morphable = MorphableModel.load(args.morphable) if args.morphable else None
            predictor = CheckpointPredictor(
                checkpoint, morphable, args.size, args.device, flip=args.flip, landmarks=args.landmarks
            )
            label = _network_label(checkpoint, args)
    result = evaluate(predictor, samples)
    print(f"AFLW2000-3D protocol, {len(samples)} images, predictor: {label}")
    print(result.format_table())
    out.mkdir(parents=True, exist_ok=True)
    result.write_csv(out / "per_image.csv")
    by_bin = {label: [r["nme2d"] for r in rows] for label, rows in result.by_bin().items()}
    error_distribution_png(by_bin, out / "nme.png", title=f"AFLW2000-3D 2D NME, {label}")
    outputs.write_image(out / "landmarks.jpg", landmark_sheet(samples, result), [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(
        f"wrote {out / 'per_image.csv'}, {out / 'nme.png'} and {out / 'landmarks.jpg'} "
        "(the worst 50 images: ground truth green, prediction red)"
    )
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
    pairs = [(p.stem, p, gts[p.stem]) for p in sorted(pred.iterdir()) if p.suffix.lower() in suffixes and p.stem in gts]
    if not pairs:
        raise ValueError(f"no meshes in {pred} with a same-named ground truth in {gt}")
    return pairs


def _landmarks(path):
    """[L, 3] landmarks stored next to a mesh in an .npz ('landmarks'), or None."""
    import numpy as np

    if Path(path).suffix.lower() != ".npz":
        return None
    with np.load(path) as data:
        return np.asarray(data["landmarks"], np.float64) if "landmarks" in data else None


def _eval_dense(args) -> int:
    import csv

    import numpy as np

    from pgnface.eval.dense import dense_errors
    from pgnface.io.meshes import read_mesh

    checks.in_range("--crop-radius", args.crop_radius, 1e-9)
    out = outputs.folder(args.output)
    with input_errors():
        pairs = _mesh_pairs(args.pred, args.gt)
    rows, failures = [], []
    for name, pred_path, gt_path in pairs:
        try:
            pv, pt = read_mesh(pred_path)
            gv, _ = read_mesh(gt_path)
            pl, gl = _landmarks(pred_path), _landmarks(gt_path)
            tip = gl[30] if gl is not None and len(gl) == 68 else None
            if args.crop_radius and tip is None:
                raise ValueError(f"{gt_path}: --crop-radius needs 68 ground-truth landmarks (an .npz 'landmarks')")
            result = dense_errors(
                pv, pt, gv, pred_landmarks=pl, gt_landmarks=gl, crop_radius=args.crop_radius, nose_tip=tip
            )
        except (ValueError, FileNotFoundError) as err:
            failures.append(f"{name}: {err}")
            continue
        rows.append({"name": name, **result.as_dict()})
        print(
            f"{name}: RMSE {result.rmse:.4f}  mean {result.mean:.4f}  median {result.median:.4f} "
            f"({result.points} points, {result.iterations} ICP iterations)"
        )
    _report_failures("eval dense", failures, rows, "mesh pairs")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dense.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(
        f"{len(rows)} meshes: mean RMSE {np.mean([r['rmse'] for r in rows]):.4f}, "
        f"mean distance {np.mean([r['mean'] for r in rows]):.4f}, "
        f"median distance {np.median([r['median'] for r in rows]):.4f}; wrote {out / 'dense.csv'}"
        + (f"; {len(failures)} failed" if failures else "")
    )
    return 0


def _report_failures(command: str, failures: list, done: list, what: str) -> None:
    """Reports the inputs that failed: one line each, or one UsageError when none succeeded."""
    if not done:
        raise UsageError(
            failures[0]
            if len(failures) == 1
            else f"none of the {len(failures)} {what} could be used: " + "; ".join(failures)
        )
    for failure in failures:
        report(command, failure)


def _check_synthetic_options(args) -> None:
    """Raises UsageError for the first invalid option of `eval synthetic`."""
    checks.in_range("-n", args.num, 1)
    checks.in_range("--size", args.size, *CROP_SIZES, unit=" px")
    if not (math.isfinite(args.yaw_max) and 0 < args.yaw_max <= 90):
        raise UsageError(f"--yaw-max must be in (0, 90] degrees, got {args.yaw_max}")
    checks.in_range("--batch-size", args.batch_size, 1)
    checks.device(args.device)
    outputs.folder(args.output)


def _eval_synthetic(args) -> int:
    from pgnface.eval.compare import (
        LEGEND,
        format_comparison,
        summary_row,
        write_comparison,
    )
    from pgnface.eval.synthetic import (
        CHUNK,
        METRICS,
        STREAM_BASE,
        evaluate_synthetic,
        synthetic_test_set,
    )
    from pgnface.nn import REFERENCE_CHECKPOINT, load_network
    from pgnface.nn.checkpoint import network_name

    _check_synthetic_options(args)
    checkpoints = args.checkpoint or [str(REFERENCE_CHECKPOINT)]
    loaded, failures = [], []
    for path in checkpoints:
        try:
            loaded.append((path, *load_network(path, map_location=args.device)))
        except LOAD_ERRORS as err:
            failures.append(f"--checkpoint {path}: {err}")
    _report_failures("eval synthetic", failures, loaded, "checkpoints")
    test_sets, rows, networks = {}, [], []
    for path, net, payload in loaded:
        size = int(args.size or payload.get("input_size") or 120)
        if size not in test_sets:
            test_sets[size] = synthetic_test_set(args.num, size, args.seed, args.yaw_max)
        result = evaluate_synthetic(
            net,
            test_sets[size],
            net.morphable.landmark_vertices.cpu().numpy(),
            batch_size=args.batch_size,
            device=args.device,
        )
        name = network_name(path, [r["name"] for r in rows])
        info = dict(name=name, checkpoint=str(path), pose_mode=net.config.pose_mode, input_size=size)
        rows.append(summary_row(result, METRICS, **info))
        networks.append({**info, "table": result.table(METRICS), "per_image": result.per_image})
    print(
        f"held-out synthetic test set: {args.num} faces of the built-in model (seed {args.seed}, "
        f"|yaw| <= {args.yaw_max:g}), AFLW2000-3D protocol"
    )
    print(format_comparison(rows))
    print(LEGEND)
    details = {
        "test_set": {
            "faces": args.num,
            "seed": args.seed,
            "yaw_max": args.yaw_max,
            "sizes": sorted(test_sets),
            "model": "built-in",
            "generator_seeds": f"{STREAM_BASE} + seed * 2**20 + chunk, {CHUNK} faces per chunk",
        },
        "networks": networks,
    }
    paths = write_comparison(args.output, "synthetic_eval", rows, details)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _eval_300w(args) -> int:
    from pgnface.eval.face300w import evaluate, load_300w, write_report
    from pgnface.eval.predictors import CheckpointPredictor
    from pgnface.morphable import MorphableModel
    from pgnface.nn import REFERENCE_CHECKPOINT

    with input_errors():
        faces = load_300w(args.folder, subset=args.subset)
    checkpoint = args.checkpoint or REFERENCE_CHECKPOINT
    with input_errors(f"--checkpoint {checkpoint}"):
        morphable = MorphableModel.load(args.morphable) if args.morphable else None
        predictor = CheckpointPredictor(
            checkpoint, morphable, args.size, args.device, flip=args.flip, landmarks=args.landmarks
        )
    label = _network_label(checkpoint, args)
    result = evaluate(predictor, faces, device=args.device)
    print(f"300-W protocol, {len(faces)} faces, predictor: {label}")
    print(result.format_table())
    paths = write_report(result, args.output, title=f"300-W {Path(args.folder).name}, {label}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


PROTOCOLS = {"aflw2000": _eval_aflw2000, "300w": _eval_300w, "dense": _eval_dense, "synthetic": _eval_synthetic}


def run(args) -> int:
    """Runs the protocol args.protocol."""
    return PROTOCOLS[args.protocol](args)


def add_parser(subparsers) -> None:
    """Adds `eval` (with its protocols as sub-commands) to the pgnface command line."""
    evaluate = subparsers.add_parser(
        "eval", help="evaluation protocols", description="Evaluation protocols of the field."
    )
    evaluate.set_defaults(run=run)
    protocols = evaluate.add_subparsers(dest="protocol", required=True)
    aflw = protocols.add_parser(
        "aflw2000",
        help="AFLW2000-3D: 68-point NME by yaw bin",
        description="AFLW2000-3D protocol: crops each image from its ground-truth landmark box (3DDFA's "
        "roi_box), predicts 68 landmarks, maps them back and reports 2D/3D NME (%, normalised by "
        "sqrt(w*h) of the ground-truth box) for |yaw| in [0,30], (30,60], (60,90], their balanced "
        "mean and the plain mean. Writes per_image.csv and nme.png (error distribution).",
    )
    aflw.add_argument("folder", help="folder of imageXXXXX.jpg + imageXXXXX.mat (pt3d_68, Pose_Para)")
    aflw.add_argument("-o", "--output", default="eval_aflw2000", help="output folder (default ./eval_aflw2000)")
    network = aflw.add_mutually_exclusive_group()
    network.add_argument(
        "--checkpoint",
        default=None,
        help="trained PGN network (pgnface train's model.pt; default: the bundled reference network)",
    )
    network.add_argument(
        "--mean-face",
        action="store_true",
        help="evaluate the constant mean face instead of a network (a floor every method must beat)",
    )
    aflw.add_argument(
        "--morphable", default=None, help="the 3DMM file the checkpoint was trained with (default built-in)"
    )
    aflw.add_argument(
        "--size",
        type=int,
        default=None,
        help="crop size given to the predictor (default: the checkpoint's training size, or 120)",
    )
    aflw.add_argument("--device", default="cpu", help="torch device for the network (default cpu)")
    aflw.add_argument(
        "--flip",
        action="store_true",
        help="test-time flip averaging: also run the mirrored crop and average the two landmark "
        "sets (the left/right points renamed); off by default, the table reports one pass",
    )
    _add_landmark_source(aflw)
    aflw.add_argument(
        "--reannotated",
        default=None,
        help="3DDFA's pts68_reannotated.npy: use the re-annotated 2D landmarks (needs index.csv)",
    )
    w300 = protocols.add_parser(
        "300w",
        help="300-W: 68-point NME by eye distance and by box",
        description="300-W protocol on any folder of faces in the 300-W layout (images + .pts files, or a "
        "landmarks.npz with names and pts68): crops each face from its ground-truth landmark box (3DDFA's "
        "roi: square, sqrt(2) x the box's longer side), predicts 68 landmarks, maps them back and reports "
        "the 2D NME (%) normalised by the outer-eye-corner distance and by sqrt(w*h) of the box: mean, "
        "median and failure rates above 8 and 10 %. Writes per_image.csv, summary.json and ced.png. "
        "300-W labels are for non-commercial research use only.",
    )
    w300.add_argument("folder", help="folder of *.jpg + *.pts, or one holding a landmarks.npz")
    w300.add_argument("-o", "--output", default="eval_300w", help="output folder (default ./eval_300w)")
    w300.add_argument("--checkpoint", default=None, help="trained PGN network (default: the bundled reference network)")
    w300.add_argument("--subset", default=None, help="with a landmarks.npz: only the faces under this sub-folder")
    w300.add_argument(
        "--morphable", default=None, help="the 3DMM file the checkpoint was trained with (default built-in)"
    )
    w300.add_argument(
        "--size", type=int, default=None, help="crop size given to the network (default: its training size)"
    )
    w300.add_argument("--device", default="cpu", help="torch device for the network (default cpu)")
    w300.add_argument("--flip", action="store_true", help="test-time flip averaging (off by default)")
    _add_landmark_source(w300)
    dense = protocols.add_parser(
        "dense",
        help="dense mesh-to-scan errors (Florence / NoW style)",
        description="Aligns each predicted mesh to its ground truth (landmark similarity when both .npz files "
        "hold 'landmarks', else centroids; then ICP with scale) and reports RMSE, mean and median "
        "ground-truth-to-prediction surface distance in the ground truth's units. Writes dense.csv.",
    )
    dense.add_argument("pred", help="predicted mesh (.obj/.ply/.npz) or a folder of them")
    dense.add_argument("gt", help="ground-truth mesh or scan, or a folder with the same file stems")
    dense.add_argument("-o", "--output", default="eval_dense", help="output folder (default ./eval_dense)")
    dense.add_argument(
        "--crop-radius",
        type=float,
        default=None,
        help="keep ground-truth points within this distance of its nose tip (landmark 31); "
        "the Florence protocol uses 95 (mm)",
    )
    synthetic = protocols.add_parser(
        "synthetic",
        help="a held-out synthetic test set: landmark NME by yaw bin, pose and dense errors",
        description="Renders a fixed held-out test set with the built-in model's generator (seeds far from "
        "every training stream; the same seed gives the same faces at every crop size), runs each "
        "network through the AFLW2000-3D protocol (crop from the ground-truth landmark box, 2D/3D "
        "NME % by |yaw| bin [0,30], (30,60], (60,90], balanced and plain mean) and adds pose errors "
        "(|yaw|, |pitch|, |roll| in degrees), posed vertex NME % and the shape error after "
        "similarity alignment (model units). Prints one comparison row per network and writes "
        "synthetic_eval.csv, synthetic_eval.md and synthetic_eval.json (with per-face rows).",
    )
    synthetic.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        metavar="CKPT",
        help="a network to score (pgnface train's model.pt); repeat for a comparison table; "
        "rows are named by the file's folder for model.pt, else its stem "
        "(default: the bundled reference pgnface/assets/pgn_reference.pt)",
    )
    synthetic.add_argument(
        "-n", "--num", type=int, default=300, metavar="N", help="faces in the test set (default 300)"
    )
    synthetic.add_argument(
        "--seed",
        type=int,
        default=0,
        help="which test set (default 0); N faces are always the first N of the seed's set",
    )
    synthetic.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="S",
        help="render and crop size for every network (default: each checkpoint's training "
        "input size, so networks of different sizes see the same faces at their size)",
    )
    synthetic.add_argument(
        "--yaw-max",
        type=float,
        default=90.0,
        metavar="DEG",
        help="yaw drawn uniformly in +-DEG (default 90, the AFLW2000-3D range)",
    )
    synthetic.add_argument("-o", "--output", default="eval_synthetic", help="output folder (default ./eval_synthetic)")
    synthetic.add_argument("--batch-size", type=int, default=16, help="crops per network call (default 16)")
    synthetic.add_argument("--device", default="cpu", help="torch device for the networks (default cpu)")
