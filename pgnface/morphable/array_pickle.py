"""Loading pickles that hold numpy / scipy arrays and nothing else.

A pickle names the functions that rebuild its objects, and ``pickle.load``
calls whatever it names, so a crafted file runs code. 3DMM files in the 3DDFA
layout are pickles of numpy arrays (in dicts and lists), so
:func:`load_array_pickle` resolves only the names that rebuild arrays,
dtypes, numpy scalars and scipy sparse matrices, and refuses every other one
before anything is called.
"""

import importlib
import pickle
from typing import Any

import numpy as np

# (module, name) pairs that rebuild numpy objects; numpy 2 renamed numpy.core to numpy._core.
_NUMPY_NAMES = (
    {(f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")}
    | {(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")}  # pickle protocol 5
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)
# Protocol-2 pickles written by Python 2 store bytes as _codecs.encode(text, "latin1").
_BYTES_NAMES = {("_codecs", "encode")}
_SPARSE_CLASSES = {
    f"{layout}_{kind}" for layout in ("csr", "csc", "coo", "bsr", "dia", "dok", "lil") for kind in ("matrix", "array")
}


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _NUMPY_NAMES or (module, name) in _BYTES_NAMES:
        return True
    if module == "numpy.dtypes" and name.endswith("DType"):
        return True
    return (module == "scipy.sparse" or module.startswith("scipy.sparse._")) and name in _SPARSE_CLASSES


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not _allowed(module, name):
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which is not a numpy or scipy array type; "
                "a pickle that names other objects can run code, so it is not loaded"
            )
        found = getattr(importlib.import_module(module), name)
        if module == "numpy.dtypes" and not (isinstance(found, type) and issubclass(found, np.dtype)):
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not a numpy dtype")
        return found


def load_array_pickle(path) -> Any:
    """Unpickles `path`, admitting numpy arrays, dtypes and scalars, scipy sparse matrices and plain data.

    Args:
        path: the pickle file.

    Returns:
        The unpickled object.

    Raises:
        pickle.UnpicklingError: the file names any other Python object.
        OSError, EOFError: the file cannot be read or is cut short.
    """
    with open(path, "rb") as f:
        return _ArrayUnpickler(f).load()
