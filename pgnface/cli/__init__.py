"""The `pgnface` command line: one module per subcommand, assembled by `pgnface.cli.main`."""

from pgnface.cli.main import main

__all__ = ["main"]
