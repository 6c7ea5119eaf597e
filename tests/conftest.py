import sys
from pathlib import Path

# Lets tests import the shared helpers (op_harness) wherever pytest is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))
