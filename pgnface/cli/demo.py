"""`pgnface demo`: reconstructs a synthetic clip of a random person and scores it (pgnface.apps.demo)."""

from pgnface.cli import checks, outputs
from pgnface.cli.errors import LOAD_ERRORS, input_errors, report


def add_parser(subparsers) -> None:
    """Adds `demo` to the pgnface command line."""
    parser = subparsers.add_parser(
        "demo",
        help="reconstruct a synthetic clip and score it (runs with nothing downloaded)",
        description="Renders a short clip of one random person with the built-in 3DMM (smooth pose, "
        "expression and lighting), reconstructs every frame with a PGN network (the bundled reference by "
        "default) and writes per-frame OBJ meshes and overlays, a contact sheet (ground truth | "
        "reconstruction) and metrics.json: 68-landmark NME and pose-angle errors against the clip's exact "
        "ground truth. Other networks (--compare; by default the bundled ablation pair, the same recipe "
        "with the pose solved from the landmarks or regressed) are scored on the same clip, one row each.",
    )
    parser.add_argument("-o", "--output", default="demo", help="output folder (default ./demo)")
    parser.add_argument("--checkpoint", default=None, help="network to use (default: the bundled reference network)")
    parser.add_argument(
        "--compare",
        action="append",
        default=None,
        metavar="CKPT",
        help="another network scored on the same clip (e.g. a regressed-pose one), one more row "
        "of the comparison table (NME, yaw/pitch/roll errors) labelled with its pose mode "
        "and name; repeatable (default: the bundled ablation networks)",
    )
    parser.add_argument("--no-compare", action="store_true", help="no comparison rows, not even the bundled ones")
    parser.add_argument("--frames", type=int, default=8, help="frames in the clip (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="which random person (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Runs the demo into args.output and prints its tables."""
    from pgnface.apps.demo import default_comparisons, format_metrics, run_demo
    from pgnface.nn.checkpoint import REFERENCE_CHECKPOINT

    checks.in_range("--frames", args.frames, 1)
    checks.device(args.device)
    for path in [args.checkpoint] + (args.compare or []):
        if path is not None:
            checks.input_file(path, "--checkpoint" if path == args.checkpoint else "--compare")
    outputs.folder(args.output)
    checkpoint = args.checkpoint or REFERENCE_CHECKPOINT
    compare = [] if args.no_compare else (args.compare if args.compare else default_comparisons(checkpoint))

    def skipped(path, err):
        report("demo", f"--compare {path}: {err}")

    with input_errors(f"--checkpoint {checkpoint}", kinds=LOAD_ERRORS):
        metrics = run_demo(args.output, args.checkpoint, args.frames, args.seed, args.device, compare, skipped)
    print(
        f"pgnface demo: a synthetic clip of {args.frames} frames of one random person (built-in 3DMM), "
        f"reconstructed with {metrics['checkpoint']} ({metrics['pose_mode']} pose)"
    )
    print(format_metrics(metrics))
    print(f"wrote OBJ meshes, overlays, contact_sheet.png and metrics.json to {args.output}")
    return 0
