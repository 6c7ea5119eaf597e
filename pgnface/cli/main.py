"""The `pgnface` command line: the subcommands of pgnface.cli, one module each, assembled here.

    pgnface render | train | eval | reconstruct | demo | export-onnx | probe | bench ...

`pgnface COMMAND --help` describes each one.
"""

import argparse
import sys

from pgnface.cli import bench, demo, export_onnx, probe, reconstruct, render, train
from pgnface.cli import eval as evaluate
from pgnface.cli.errors import UsageError, missing_dependency, report

COMMANDS = (render, train, evaluate, reconstruct, demo, export_onnx, probe, bench)


def build_parser() -> argparse.ArgumentParser:
    """The `pgnface` parser with every subcommand; each sets ``args.run``."""
    parser = argparse.ArgumentParser(prog="pgnface", description="pgnface: 3D face reconstruction tools.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Runs one command; returns its exit code (2 for a usage error, reported as one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, passthrough = bench.split_passthrough(argv)
    args = build_parser().parse_args(argv)
    args.passthrough = passthrough
    command = " ".join(filter(None, (args.command, getattr(args, "protocol", None))))
    try:
        return args.run(args)
    except UsageError as err:
        report(command, err)
    except ModuleNotFoundError as err:
        message = missing_dependency(err)
        if message is None:
            raise
        report(command, message)
    return 2


if __name__ == "__main__":
    sys.exit(main())
