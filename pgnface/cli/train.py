"""`pgnface train`: trains the PGN reconstructor (pgnface.train) from a config and key=value overrides."""

import signal

from pgnface.cli import checks, outputs
from pgnface.cli.errors import UsageError, input_errors


def add_parser(subparsers) -> None:
    """Adds `train` to the pgnface command line."""
    parser = subparsers.add_parser(
        "train",
        help="train the PGN reconstructor",
        description="Trains the PGN reconstructor. Data, mixed by weight: on-the-fly synthetic faces and clips "
        "(optionally over real-photo backgrounds, with photo augmentation), a 300W-LP-layout folder, "
        "unlabelled photos and an unlabelled video. Settings come from the defaults, then --config FILE "
        "(JSON, nested by section: net, data, data.synthetic, loss), then key=value overrides (e.g. "
        "lr=3e-4 net.backbone=mobilenetv2 data.size=120 data.synthetic.light_contrast=8 "
        "loss.photometric=0). Multi-GPU / multi-node: launch with torchrun.",
        epilog="The run folder gets config.json, log.jsonl, checkpoint.pt (resumable) and model.pt (the network).",
    )
    parser.add_argument("--config", default=None, help="JSON config file (any subset of the fields)")
    parser.add_argument("--out", default="runs/pgn", help="run folder (default runs/pgn)")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps (config key steps)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step per process (batch_size)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt with the run's own config; key=value may change only steps, "
        "log_every, checkpoint_every, tensorboard, threads and device",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start a new run in OUT even if it holds one (deletes that run)"
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="MODEL_PT",
        help="start from this network's weights and architecture (fine-tuning; config key init)",
    )
    parser.add_argument(
        "--validate",
        default=None,
        metavar="DIR",
        help="score the network every --validate-every steps on this 300-W-layout folder (pgnface eval 300w's "
        "protocol), log OUT/val.jsonl and keep the best network as OUT/best.pt; a validation split such as "
        "300w with --validate-subset helen_test, never a test set",
    )
    parser.add_argument(
        "--validate-subset", default=None, metavar="NAME", help="subset of DIR's landmarks.npz (e.g. helen_test)"
    )
    parser.add_argument(
        "--validate-every", type=int, default=500, metavar="N", help="steps between validations (default 500)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.set_defaults(run=run)


def _overrides(args) -> list:
    """The key=value overrides, with the options that stand for config keys appended."""
    options = {"steps": args.steps, "batch_size": args.batch_size, "init": args.init}
    return list(args.overrides) + [f"{key}={value}" for key, value in options.items() if value is not None]


def run(args) -> int:
    """Trains into args.out and prints where it got to."""
    from pgnface.apps.validated_training import train_validated
    from pgnface.train import TrainConfig, apply_overrides, load_run_config, train

    if args.resume and (args.config or args.overwrite):
        raise UsageError(
            f"--resume continues the run in {args.out} with its own config: "
            f"{'--config' if args.config else '--overwrite'} does not go with it"
        )
    outputs.folder(args.out, "--out", keep=True)  # an interrupted run keeps its checkpoint
    with input_errors():
        base = load_run_config(args.out) if args.resume else None
    if base is None:
        with input_errors(f"--config {args.config}" if args.config else ""):
            base = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    with input_errors():
        config = apply_overrides(base, _overrides(args))
        config.validate()
    checks.in_range("threads", config.threads, 0)
    if args.validate is not None:
        checks.in_range("--validate-every", args.validate_every, 1)
    checks.device(None if config.device == "auto" else config.device, "device")
    with input_errors():
        if config.tensorboard:
            import tensorboard  # noqa: F401  (a missing one names the [app] extra before training starts)
        if args.validate is None:
            summary = train(config, args.out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
        else:
            summary = train_validated(
                config,
                args.out,
                args.validate,
                args.validate_subset,
                args.validate_every,
                resume=args.resume,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
    if summary["interrupted"]:  # the trainer said where it stopped and how to resume
        stopped_by = getattr(signal.Signals, summary["interrupted"], signal.SIGINT)
        return 128 + int(stopped_by)
    if summary["rank"] == 0:  # with DDP, rank 0 reports
        if summary["history"]:
            loss, rate = summary["last"]["loss"], summary["img_per_s"]
            print(f"trained to step {summary['step']}: loss {loss:.4f}, {rate:.1f} img/s; run folder {args.out}")
        else:
            print(f"nothing to do: {args.out} is already at step {summary['step']} of {config.steps}")
        if summary.get("best"):
            best = summary["best"]
            print(
                f"best on {args.validate}: step {best['step']}, "
                f"NME {best['nme_io_mean']:.2f} % (inter-ocular) -> best.pt"
            )
    return 0
