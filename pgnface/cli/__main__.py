"""`python -m pgnface.cli ...` runs the command line."""

import sys

from pgnface.cli.main import main

sys.exit(main())
