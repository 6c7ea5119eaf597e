"""`pgnface eval ...` subcommands (registered by pgnface.cli)."""

import sys
from pathlib import Path

import numpy as np


def _eval_aflw2000(args) -> int:
    from .aflw2000 import evaluate, load_aflw2000
    from .baselines import MeanShapePredictor
    from .plots import error_distribution_png

    try:
        reannotated = np.load(args.reannotated) if args.reannotated else None
        samples = load_aflw2000(args.folder, reannotated=reannotated)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"pgnface eval aflw2000: {err}", file=sys.stderr)
        return 2
    if args.baseline == "mean-shape":
        predictor = MeanShapePredictor(input_size=args.size)
    else:  # argparse restricts the choices; this guards future additions
        print(f"pgnface eval aflw2000: unknown predictor {args.baseline}", file=sys.stderr)
        return 2
    result = evaluate(predictor, samples)
    print(f"AFLW2000-3D protocol, {len(samples)} images, predictor: {args.baseline}")
    print(result.format_table())
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    result.write_csv(out / "per_image.csv")
    by_bin = {label: [r["nme2d"] for r in rows] for label, rows in result.by_bin().items()}
    error_distribution_png(by_bin, out / "nme.png", title=f"AFLW2000-3D 2D NME, {args.baseline}")
    print(f"wrote {out / 'per_image.csv'} and {out / 'nme.png'}")
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
    aflw.add_argument("--baseline", default="mean-shape", choices=["mean-shape"],
                      help="predictor to evaluate (the trained PGN checkpoint option arrives with the network)")
    aflw.add_argument("--size", type=int, default=120, help="crop size given to the predictor (default 120)")
    aflw.add_argument("--reannotated", default=None,
                      help="3DDFA's pts68_reannotated.npy: use the re-annotated 2D landmarks (needs index.csv)")
    aflw.set_defaults(run=_eval_aflw2000)
