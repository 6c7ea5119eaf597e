"""`pgnface probe`: loss terms of networks on fixed real batches, and overlays (pgnface.train.probe)."""

from pathlib import Path

from pgnface.cli import checks, outputs
from pgnface.cli.errors import input_errors


def add_parser(subparsers) -> None:
    """Adds `probe` to the pgnface command line."""
    parser = subparsers.add_parser(
        "probe",
        help="compare networks on fixed real batches (e.g. before and after fine-tuning)",
        description="Evaluates every loss term of the training objective for each network on the same fixed "
        "batches of unlabelled photo faces and video clips (fixed seeds, no augmentation), prints one table "
        "per source, writes probe.json and draws probe.jpg: the real crops, then per network its rendered "
        "reconstruction composited over each crop with its landmarks.",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="a network (model.pt); repeat to compare, e.g. before and after fine-tuning",
    )
    parser.add_argument("--images", default="", help="folder of photos (faces found by the face detector)")
    parser.add_argument("--video", default="", help="video file or folder of frames of one person")
    parser.add_argument("--batches", type=int, default=4, help="batches per source (default 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--frames", type=int, default=4, help="frames per video clip (default 4)")
    parser.add_argument("--show", type=int, default=8, help="crops drawn in probe.jpg per source (default 8)")
    parser.add_argument("-o", "--out", default="probe", help="output folder (default ./probe)")
    parser.set_defaults(run=run)


def run(args) -> int:
    """Runs the probe into args.out and prints its tables."""
    from pgnface.train.probe import format_report, run_probe

    for option in ("batches", "batch_size", "frames"):
        checks.in_range(f"--{option.replace('_', '-')}", getattr(args, option), 1)
    checks.in_range("--show", args.show, 0)
    outputs.folder(args.out, "--out")
    with input_errors():
        report = run_probe(
            args.checkpoint,
            args.out,
            images=args.images,
            video=args.video,
            batches=args.batches,
            batch_size=args.batch_size,
            frames=args.frames,
            show=args.show,
        )
    print(format_report(report, args.batches))
    out = Path(args.out)
    print(f"\nwrote {out / 'probe.json'} and {out / 'probe.jpg'} (rows: real crops, then each network's render)")
    return 0
