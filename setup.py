"""Builds pgnface._C, the compiled kernels, from the source list in csrc/sources.txt.

CUDA sources are compiled when torch is a CUDA build and a CUDA toolkit (nvcc) is
found, or when FORCE_CUDA=1; otherwise the build is CPU-only (the .cu files are
skipped) and every CPU feature still works. FORCE_CPU=1 forces a CPU-only build.
Set TORCH_CUDA_ARCH_LIST (e.g. "9.0") to limit the GPU architectures compiled.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup


def locate_cuda_home():
    """Sets CUDA_HOME to a real CUDA toolkit when it is unset.

    torch guesses CUDA_HOME from `which nvcc`, which goes wrong when nvcc on the
    PATH is a wrapper script (e.g. /usr/local/bin/nvcc -> CUDA_HOME=/usr/local,
    which has no libcudart). Must run before torch.utils.cpp_extension is imported.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(os.path.realpath(nvcc)).parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    candidates += sorted(Path("/usr/local").glob("cuda-*"), reverse=True)
    for home in candidates:
        if (home / "bin" / "nvcc").is_file() and (home / "include" / "cuda_runtime.h").is_file():
            os.environ["CUDA_HOME"] = str(home)
            return


locate_cuda_home()

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - only reached outside a proper build environment
    sys.exit(
        "pgnface needs PyTorch to build its kernels. Install torch first, then run "
        "`pip install --no-build-isolation .`, or run plain `pip install .` so pip installs "
        "the build requirements from pyproject.toml."
    )

ROOT = Path(__file__).resolve().parent
# Without a GPU to detect: Turing, Ampere (the sm_80 binary also runs on 8.6 / 8.9)
# and Hopper, plus PTX for newer GPUs.
DEFAULT_CUDA_ARCHS = "7.5;8.0;9.0+PTX"


def read_sources():
    """Returns the source files listed in csrc/sources.txt (shared with CMakeLists.txt)."""
    lines = (ROOT / "csrc" / "sources.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def want_cuda():
    """Decides whether to compile the CUDA sources, explaining forced builds that cannot work."""
    if env_flag("FORCE_CPU"):
        return False
    if env_flag("FORCE_CUDA"):
        if CUDA_HOME is None:
            sys.exit(
                "FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the toolkit "
                "folder (the one holding bin/nvcc), e.g. CUDA_HOME=/usr/local/cuda."
            )
        if torch.version.cuda is None:
            sys.exit("FORCE_CUDA=1 but the installed torch is a CPU-only build; install a CUDA build of torch first.")
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def nvidia_wheel_includes():
    """Header folders of the nvidia-* pip wheels (cuBLAS/cuSPARSE headers torch's CUDA headers need)."""
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for base in map(Path, getattr(nvidia, "__path__", [])):
        found += sorted(str(p) for p in base.glob("*/include") if p.is_dir())
    return list(dict.fromkeys(found))


def build_info_module(with_cuda):
    """Writes pgnface/_build_info.py so import errors can name the torch this was built with."""
    text = (
        '"""Written by setup.py at build time; do not edit."""\n\n'
        f'TORCH_VERSION = "{torch.__version__}"\n'
        f"WITH_CUDA = {bool(with_cuda)}\n"
    )
    (ROOT / "pgnface" / "_build_info.py").write_text(text)


def make_extension():
    with_cuda = want_cuda()
    sources = [s for s in read_sources() if with_cuda or not s.endswith(".cu")]
    define_macros = [("PGN_TORCH_VERSION", f'"{torch.__version__}"')]
    # -Wno-psabi: the SIMD helpers are always inlined, so no vector crosses an ABI boundary.
    # -fno-math-errno: sqrt need not set errno, so the lanes' square roots vectorise
    # (common/cpu_lanes.h); the results are the same exactly rounded values.
    # -g0: Python's default flags ask for debug information, which doubles the compile time of
    # the SIMD files (PGN_DEBUG_INFO=1 keeps it).
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp", "-Wno-psabi", "-fno-math-errno"]
    if not env_flag("PGN_DEBUG_INFO"):
        cxx_flags.append("-g0")
    kwargs = dict(
        name="pgnface._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc")],
        extra_link_args=["-fopenmp"],
    )
    build_info_module(with_cuda)
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            # No GPU to detect the architecture from: build for the common recent ones.
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
            print(
                f"pgnface: no GPU visible, compiling CUDA kernels for {DEFAULT_CUDA_ARCHS} "
                "(set TORCH_CUDA_ARCH_LIST to choose)"
            )
        define_macros.append(("WITH_CUDA", None))
        nvcc_flags = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        kwargs["include_dirs"] += nvidia_wheel_includes()
        return CUDAExtension(
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            **kwargs,
        )
    return CppExtension(define_macros=define_macros, extra_compile_args={"cxx": cxx_flags}, **kwargs)


def runtime_requirements():
    """What the ops need; the wheel pins the torch it was compiled against (a different torch cannot load _C).

    The application layers' dependencies are the [app] extra in pyproject.toml.
    """
    base = torch.__version__.split("+")[0]
    return [f"torch=={base}", "numpy>=1.24"]


setup(
    packages=find_packages(include=["pgnface", "pgnface.*"]),
    package_data={"pgnface": ["assets/*.pt"]},  # the bundled reference network
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    install_requires=runtime_requirements(),
)
