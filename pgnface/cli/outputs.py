"""The outputs a command writes: checked before any work, removed again when the command fails.

A command claims its output folder (or file) first thing. The claim refuses,
with a UsageError naming the option, a path that cannot be written (a folder
given where a file exists, a read-only or missing parent, ...). It also notes
what was there before, so that `pgnface.cli.main` can remove what a failed or
interrupted command created and leave nothing half-written behind.
"""

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Set, Tuple

from pgnface.cli.errors import UsageError

# (path, entries of the folder before the command, or None when it did not exist)
_claims: List[Tuple[Path, Optional[Set[str]]]] = []


def reset() -> None:
    """Forgets the claims of a previous command (main calls it before each command)."""
    _claims.clear()


def folder(path, option: str = "-o", keep: bool = False) -> Path:
    """Checks that `path` can be the command's output folder; returns it as a Path (not created yet).

    Args:
        path: the folder; it may exist (new files go into it) or not (it is created).
        option: the option that named it, for the messages.
        keep: the command's output stays when it fails (a training run's checkpoint).

    Raises:
        UsageError: `path` is a file, or the folder (or its nearest existing parent) cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder; give a folder (new or existing)")
    _check_writable(_nearest_existing(path), option, path)
    if not keep:
        _claims.append((path, set(os.listdir(path)) if path.is_dir() else None))
    return path


def file(path, option: str = "-o") -> Path:
    """Checks that `path` can be the command's output file (it may be replaced); returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    parent = _nearest_existing(path.parent)
    _check_writable(parent, option, path)
    _claims.append((path, None if not path.exists() else {path.name}))
    return path


def claimed() -> List[Path]:
    """The outputs claimed so far, first claimed first."""
    return [path for path, _ in _claims]


def discard() -> List[Path]:
    """Removes what the claimed outputs gained since they were claimed; returns the removed paths."""
    removed = []
    for path, before in reversed(_claims):
        if before is None:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif path.exists():
                path.unlink(missing_ok=True)
                removed.append(path)
        elif path.is_dir():
            for name in sorted(set(os.listdir(path)) - before):
                entry = path / name
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                removed.append(entry)
    _claims.clear()
    return removed


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _check_writable(existing: Path, option: str, path: Path) -> None:
    """Raises UsageError unless a file can be created in the existing folder `existing` (on the way to `path`)."""
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    try:  # creating a file is the one test that also holds for read-only mounts and root
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        reason = "is read-only" if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else f"({err.strerror})"
        raise UsageError(f"{option} {path}: {existing} {reason}; choose a writable folder") from None


def write_image(path, image, params=()) -> None:
    """cv2.imwrite(path, image, params) that raises OSError when nothing was written (OpenCV returns False)."""
    import cv2

    if not cv2.imwrite(str(path), image, list(params)):
        raise OSError(errno.EIO, "the image could not be written (is the disk full?)", str(path))
