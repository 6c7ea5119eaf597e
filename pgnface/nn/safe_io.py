"""Reading and writing checkpoint files without running code and without losing data.

``safe_torch_load`` unpickles tensors and plain data only (``torch.load`` with
``weights_only=True``) plus the few numpy types a training checkpoint's RNG
state holds, so a crafted ``.pt`` cannot run code. ``atomic_save`` writes to a
temporary file and renames it, so a reader never sees half a file; the result
gets the permissions of any file the user creates (the umask), and temporary
files left behind by killed writers are removed.
"""

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover (numpy 1.x)
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# np.random.get_state() is a tuple holding one uint32 array; these rebuild it and nothing else.
# The reconstruct function is listed under both module names numpy has used, so checkpoints
# written with numpy 1.x load too.
_NUMPY_RNG_GLOBALS = [
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
    (_np_reconstruct, "numpy.core.multiarray._reconstruct"),
    (_np_reconstruct, "numpy._core.multiarray._reconstruct"),
]


def safe_torch_load(path) -> Any:
    """``torch.load`` of tensors, plain containers and numpy RNG state only, onto the CPU.

    Args:
        path: the file.

    Returns:
        The unpickled object.

    Raises:
        pickle.UnpicklingError: the file refers to any other Python object
            (a pickle that does can run code while loading).
        Other errors of ``torch.load`` for files that are not checkpoints.
    """
    with torch.serialization.safe_globals(_NUMPY_RNG_GLOBALS):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            # torch's message suggests weights_only=False, the one thing never to do with such a file.
            detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
            raise pickle.UnpicklingError(
                f"it holds Python objects other than tensors and plain data, which could run code "
                f"when loaded, so it is not loaded ({detail})"
            ) from None


def user_file_mode() -> int:
    """The permission bits a newly created file gets in this process (0o666 minus the umask)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports the umask without changing it; setting and restoring it is the portable
    # way, but another thread creating a file in between would get the wrong mode.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path) -> None:
    """Deletes the temporary files of ``atomic_save(..., path)`` whose writing process has ended.

    Args:
        path: the final file the temporary files were written for.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(f"{_temp_prefix(path)}*.tmp"):
        pid = tmp.name[len(_temp_prefix(path)) :].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_save(obj: Any, path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: never a half-written file.

    The temporary file's name carries this process's id, so a later save can
    tell the leftovers of a killed writer from a file another process is
    still writing. The final file gets the user's default permissions.

    Args:
        obj: what to torch.save.
        path: the final file (its folder is created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fchmod(f.fileno(), user_file_mode())  # mkstemp creates 0600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
