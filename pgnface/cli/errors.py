"""The one error type of the commands, and how `pgnface` words it.

A command raises UsageError for a mistake in its input; `pgnface.cli.main`
prints it as one line, ``pgnface <command>: <message>``, and exits with 2.
"""

import errno
import pickle
import re
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


# Advice in lower layers' messages that only a Python caller can follow, and what a command says instead.
_PYTHON_ADVICE = (
    (re.compile(r",? or pass \w+=\w+[^;.]*"), ""),
    (re.compile(r"when allow_pickle=False"), "(arrays of Python objects are never loaded)"),
    (re.compile(r"[^.;]*weights_only[^.;]*[.;]?"), ""),
)


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


# What loading a checkpoint or another input file raises when the file is missing, corrupt or does not fit.
LOAD_ERRORS = (ValueError, FileNotFoundError, RuntimeError, pickle.UnpicklingError, EOFError)


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
    prefix = f"pgnface {command}" if command else "pgnface"
    text = " ".join(str(message).split())
    for pattern, replacement in _PYTHON_ADVICE:
        text = pattern.sub(replacement, text)
    print(f"{prefix}: {text.strip()}", file=sys.stderr)


# errno -> what to do about it, for the operating system's errors while writing (or reading) files.
_OS_ERROR_ADVICE = {
    errno.ENOSPC: "free some space or choose another output folder",
    errno.EDQUOT: "free some space or choose another output folder",
    errno.EFBIG: "choose another output folder",
    errno.EROFS: "choose a writable output folder",
    errno.EACCES: "check the permissions, or choose another output folder",
    errno.EPERM: "check the permissions, or choose another output folder",
}
# What torch.save (and other C++ writers) say when a write fails, e.g. on a full disk.
_CPP_WRITE_FAILURES = ("file write failed", "PytorchStreamWriter failed", "unexpected pos")


def write_failure(err: Exception, output=None) -> Optional[str]:
    """One line for an operating-system error while reading or writing files, or None for other errors.

    An OSError says which file and why, with advice for a full disk, a
    read-only folder and missing permissions; a RuntimeError counts only when
    it is a C++ writer's failed write (torch.save on a full disk).

    Args:
        err: the error.
        output: the command's output, named when the error does not say which file it was.
    """
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else f"writing {output}: " if output else ""
        why = err.strerror or str(err)
        advice = _OS_ERROR_ADVICE.get(err.errno)
        return f"{where}{why}" + (f"; {advice}" if advice else "")
    if isinstance(err, RuntimeError) and any(text in str(err) for text in _CPP_WRITE_FAILURES):
        first = str(err).strip().splitlines()[0]
        where = f"writing {output}" if output else "writing a file"
        return f"{where} failed ({first}); the disk may be full: free some space or choose another output folder"
    return None
