"""`pgnface bench`: runs the benchmarks of a source checkout's bench/ folder."""

import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

from pgnface.cli.errors import UsageError, report

BENCHMARKS = ("synthesize", "rasterize", "procrustes", "synthetic", "train_step")
# The checkout this package was imported from, when it is one (bench/ is not installed).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def split_passthrough(argv: List[str]) -> Tuple[List[str], List[str]]:
    """(the arguments of `pgnface bench`, those after -- that go to every benchmark); others unchanged."""
    if argv[:1] == ["bench"] and "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def add_parser(subparsers) -> None:
    """Adds `bench` to the pgnface command line."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks (needs a source checkout)",
        description="Runs benchmarks of bench/ in a source checkout; each compares a pgnface op with the "
        "baseline a user would otherwise use, measured in the same run. Arguments after -- go to "
        "every benchmark, e.g. pgnface bench rasterize -- --device cuda.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    """Runs the named benchmarks one after another; stops at the first that fails."""
    if not (SOURCE_ROOT / "bench" / "common.py").is_file():
        raise UsageError(
            "needs a source checkout: the benchmarks (bench/) are not installed with the package; "
            "clone the repository and install it with pip install -e ."
        )
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        raise UsageError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or BENCHMARKS:
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *args.passthrough], cwd=SOURCE_ROOT)
        if code:
            report("bench", f"{name} failed (exit code {code})")
            return code
    return 0
