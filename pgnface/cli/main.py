"""The `pgnface` command line: the subcommands of pgnface.cli, one module each, assembled here.

    pgnface render | train | eval | reconstruct | demo | export-onnx | probe | data | bench ...

`pgnface COMMAND --help` describes each one. Every failure of a command is one
line on stderr and exit code 2; an interrupted command exits with 130. Either
way the outputs it claimed (pgnface.cli.outputs) lose what it wrote.
"""

import argparse
import sys

from pgnface.cli import bench, data, demo, export_onnx, outputs, probe, reconstruct, render, train
from pgnface.cli import eval as evaluate
from pgnface.cli.errors import UsageError, missing_dependency, report, write_failure

COMMANDS = (render, train, evaluate, reconstruct, demo, export_onnx, probe, data, bench)
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


class ParseError(UsageError):
    """A command line that does not parse; `prog` is the (sub)command whose arguments are wrong."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser that raises ParseError instead of printing its usage and exiting."""

    def error(self, message):
        raise ParseError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    """The `pgnface` parser with every subcommand; each sets ``args.run``."""
    parser = OneLineParser(prog="pgnface", description="pgnface: 3D face reconstruction tools.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def parse(argv) -> argparse.Namespace:
    """The parsed arguments; key=value words anywhere after the command join its ``overrides``."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):  # options may come after key=value overrides
        args.overrides += [word for word in extra if "=" in word and not word.startswith("-")]
        extra = [word for word in extra if word not in args.overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv=None) -> int:
    """Runs one command; returns its exit code (2 for a usage error, reported as one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, passthrough = bench.split_passthrough(argv)
    try:
        args = parse(argv)
    except ParseError as err:
        report(err.prog.removeprefix("pgnface").strip(), f"{err}; see {err.prog} --help")
        return 2
    args.passthrough = passthrough
    command = " ".join(filter(None, (args.command, getattr(args, "protocol", None))))
    outputs.reset()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        removed = outputs.discard()
        report(command, "interrupted" + (f"; removed its unfinished output {removed[0]}" if removed else ""))
        return INTERRUPTED
    except Exception as err:
        message = failure_message(err, outputs.claimed())
        outputs.discard()
        if message is None:
            raise
    report(command, message)
    return 2


def failure_message(err: Exception, writing_to=()):
    """The one-line message for a command's failure, or None for an error that is a bug (kept as a traceback).

    Args:
        err: what the command raised.
        writing_to: the command's outputs, named when an OSError does not name its file.
    """
    if isinstance(err, UsageError):
        return err
    if isinstance(err, ModuleNotFoundError):
        return missing_dependency(err)
    if isinstance(err, (OSError, RuntimeError)):
        return write_failure(err, writing_to[0] if writing_to else None)
    return None


if __name__ == "__main__":
    sys.exit(main())
