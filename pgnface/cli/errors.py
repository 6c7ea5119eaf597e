"""The one error type of the commands, and how `pgnface` words it.

A command raises UsageError for a mistake in its input; `pgnface.cli.main`
prints it as one line, ``pgnface <command>: <message>``, and exits with 2.
"""

import sys
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple, Type

APP_EXTRA = "pip install 'pgnface[app]'"
# Import name -> what it is, for the application layers' dependencies (the [app] extra).
APP_DEPENDENCIES = {
    "cv2": "opencv",
    "scipy": "scipy",
    "tqdm": "tqdm",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "tensorboard": "tensorboard",
}


class UsageError(Exception):
    """A mistake in a command's input (a bad option, a missing or unreadable file)."""


@contextmanager
def input_errors(
    context: str = "", kinds: Tuple[Type[Exception], ...] = (ValueError, FileNotFoundError)
) -> Iterator[None]:
    """Turns the errors lower layers raise for bad input into a UsageError.

    Args:
        context: what the input was (e.g. "--checkpoint runs/a/model.pt"), put before the message.
        kinds: the exception types that mean bad input here.
    """
    try:
        yield
    except kinds as err:
        raise UsageError(f"{context}: {err}" if context else str(err)) from err


def missing_dependency(err: ModuleNotFoundError) -> Optional[str]:
    """The message for a missing application dependency, or None when `err` is about another module."""
    name = (err.name or "").split(".")[0]
    if name == "retinaface":  # outside the [app] extra: its opencv-python would shadow opencv-headless
        return str(err)
    if name not in APP_DEPENDENCIES:
        return None
    return f"needs {APP_DEPENDENCIES[name]}: {APP_EXTRA}"


def report(command: str, message) -> None:
    """Prints ``pgnface <command>: <message>`` as one line on stderr."""
    print(f"pgnface {command}: {' '.join(str(message).split())}", file=sys.stderr)
