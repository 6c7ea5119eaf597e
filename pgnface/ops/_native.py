"""Loads the compiled extension pgnface._C, which registers the torch.ops.pgnface ops.

pgnface._C is a pure ``TORCH_LIBRARY`` library: importing it runs the operator
registrations, and the module itself is empty. Build metadata is an op too
(``torch.ops.pgnface.cuda_built()``, ``torch.ops.pgnface.torch_version_built()``).
Import errors are turned into messages that say how to rebuild: the usual cause
is an extension compiled against a different torch than the one installed.
"""

import importlib

import torch

REBUILD_HINT = (
    "Rebuild pgnface against the installed torch: from the pgnface source folder run "
    "`pip install --no-build-isolation --force-reinstall --no-deps .` "
    "(add `-e` for a development install)."
)


def _build_info():
    try:
        info = importlib.import_module("pgnface._build_info")
    except ImportError:
        return None, None
    return info.TORCH_VERSION, info.WITH_CUDA


def _load():
    built_torch, _ = _build_info()
    try:
        _C = importlib.import_module("pgnface._C")
    except ImportError as err:
        if built_torch is None:
            raise ImportError(
                "pgnface's compiled kernels (pgnface._C) are missing: the package was not built. "
                "Install it with `pip install .` (or `pip install --no-build-isolation -e .` for "
                f"development). Original error: {err}"
            ) from err
        if built_torch != torch.__version__:
            raise ImportError(
                f"pgnface._C was built against torch {built_torch} but torch {torch.__version__} "
                f"is installed, so it cannot be loaded. {REBUILD_HINT} Original error: {err}"
            ) from err
        raise ImportError(f"pgnface._C failed to load: {err}. {REBUILD_HINT}") from err
    if built_torch is not None and built_torch != torch.__version__:
        raise ImportError(
            f"pgnface._C was built against torch {built_torch} but torch {torch.__version__} is "
            f"installed; its ops may crash. {REBUILD_HINT}"
        )
    return _C


_C = _load()


def cuda_built() -> bool:
    """Whether this build of pgnface contains the CUDA kernels.

    Returns:
        True for a CUDA build (the kernels still need a CUDA device to run).
    """
    return bool(torch.ops.pgnface.cuda_built())


def release_cpu_cache() -> int:
    """Frees the CPU memory pgnface keeps for its ops' large outputs.

    Outputs of 2 MiB or more live in blocks that are reused once their tensors die, so that a
    loop's calls do not fault in fresh pages every time. At most ``PGN_CPU_CACHE_MB`` MiB
    (environment, read at the first large output; default 256, 0 turns the cache off) stay
    cached; this returns them to the system now.

    Returns:
        The number of bytes freed.
    """
    return int(torch.ops.pgnface.release_cpu_cache())


def use_cpu_thread_pool(enabled: bool) -> bool:
    """Runs the CPU ops' parallel loops on pgnface's own thread pool, or on torch's threads.

    By default the ops share torch's OpenMP threads. On a machine that other processes load, the
    end of an OpenMP parallel region can wait a whole time slice for a thread the system has not
    run (a one-millisecond call then takes twenty); the pool does not wait for a thread that has
    not started, so two threads stay faster than one. But torch's threads keep spinning for
    milliseconds after every torch op, and a pool thread that shares a core with one runs at half
    speed: turn the pool on for loops of pgnface ops with little torch work between them.
    ``PGN_CPU_POOL=1`` in the environment turns it on from the start. Results are the same
    either way.

    Args:
        enabled: True for pgnface's pool, False for torch's threads.

    Returns:
        The previous setting.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    return bool(torch.ops.pgnface.set_cpu_pool(enabled))


def check_device_supported(tensor: torch.Tensor, name: str) -> None:
    """Explains how to rebuild when a CUDA tensor meets a CPU-only build.

    Args:
        tensor: the argument.
        name: its name, for the error.

    Raises:
        RuntimeError: tensor is on CUDA and the build has no CUDA kernels.
    """
    if tensor.device.type == "cuda" and not cuda_built():
        raise RuntimeError(
            f"{name} is a CUDA tensor but this pgnface build has no CUDA kernels (it was built "
            "without a CUDA toolkit or with a CPU-only torch). Rebuild with CUDA: "
            "`CUDA_HOME=/usr/local/cuda FORCE_CUDA=1 pip install --no-build-isolation "
            "--force-reinstall --no-deps .`"
        )
    if tensor.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{name} is on {tensor.device}; pgnface ops run on CPU and CUDA tensors")
