"""Builds the emulated CUDA libraries with g++ and caches them.

Two shared libraries come out of here, each cached under a folder keyed by a
hash of everything that goes into it (sources, flags, compiler, torch), so a
test session or a CI step builds them at most once:

- the core library: the emulator plus tests/cuda_emu/kernels/*.cu, no torch;
  its entry points are called through ctypes (the mutation tests).
- the emulated extension: the emulator plus the exact `.cu` sources of
  pgnface (csrc/sources.txt) and the host files their entry points call, as a
  torch library whose ops live in the namespace `pgnface_emu`, beside the
  real `pgnface` ones.

Kernel translation units are compiled with `-fsanitize=thread`, whose memory
callbacks the emulator implements (src/tsan_abi.cpp); the emulator's own files
are not instrumented. Before compiling, each `.cu` file's `__shared__`
declarations are rewritten into arena variables of the emulator (one line each,
so line numbers in reports stay those of the source).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

EMU_DIR = Path(__file__).resolve().parent
ROOT = EMU_DIR.parent.parent
CSRC = ROOT / "csrc"
INCLUDE = EMU_DIR / "include"
RUNTIME_SOURCES = sorted((EMU_DIR / "src").glob("*.cpp"))
TORCH_GLUE = EMU_DIR / "torch_glue" / "tracking_allocator.cpp"
CXX = os.environ.get("CXX", "g++")

COMMON_FLAGS = ["-std=c++20", "-fPIC", "-g0", "-Wno-unknown-pragmas", f"-I{INCLUDE}", f"-I{CSRC}"]
RUNTIME_FLAGS = ["-O2"]
# -ffp-contract=off: no FMA contraction on the host either (the GPU contracts;
# see docs/cuda_emulation.md for what that leaves unproven).
KERNEL_FLAGS = [
    "-O1",
    "-fsanitize=thread",
    "--param=tsan-instrument-func-entry-exit=0",
    "-ffp-contract=off",
]
HOST_FLAGS = ["-O0"]

_SHARED = re.compile(r"^(?P<indent>[ \t]*)__shared__\s+(?P<type>[^;=]+?)\s+(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]*\]\s*)*);")
_EXTERN_SHARED = re.compile(
    r"^(?P<indent>[ \t]*)extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?(?P<type>[^;=]+?)\s+(?P<name>\w+)\s*\[\s*\]\s*;"
)


def cache_root() -> Path:
    """The folder holding built libraries ($PGNFACE_EMU_CACHE, else .cache/cuda_emu in the checkout)."""
    return Path(os.environ.get("PGNFACE_EMU_CACHE", ROOT / ".cache" / "cuda_emu"))


def rewrite_shared(text: str) -> str:
    """Rewrites `__shared__` declarations into emulator arena variables, line for line.

    `__shared__ T name[A][B];` becomes a reference to a per-block slot of type
    `T[A][B]`; `extern __shared__ T name[];` a pointer to the launch's dynamic
    shared memory.
    """

    def static(m: re.Match) -> str:
        t = f"{m['type']}{''.join(m['dims'].split())}"
        site = "[]() -> ::cuda_emu::SharedSite& { static ::cuda_emu::SharedSite s; return s; }()"
        return f"{m['indent']}auto& {m['name']} = ::cuda_emu::shared_var<{t}>({site}, \"{m['name']}\");"

    def dynamic(m: re.Match) -> str:
        return f"{m['indent']}{m['type']}* {m['name']} = ::cuda_emu::dynamic_shared<{m['type']}>();"

    lines = []
    for line in text.splitlines():
        line = _EXTERN_SHARED.sub(dynamic, line)
        line = _SHARED.sub(static, line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _digest(paths, extra: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p).encode())
        h.update(p.read_bytes())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]


def _compiler_version() -> str:
    return subprocess.run([CXX, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def _emu_files():
    return list((EMU_DIR / "include").rglob("*.h")) + RUNTIME_SOURCES + [Path(__file__)]


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"emulator build failed:\n{' '.join(cmd)}\n{result.stderr[-6000:]}")


def _compile_all(jobs: list[list[str]]) -> None:
    workers = max(1, int(os.environ.get("MAX_JOBS", min(2, os.cpu_count() or 1))))
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(_run, cmd) for cmd in jobs]:
            future.result()


def _kernel_job(cu: Path, out_dir: Path, flags: list[str]) -> tuple[list[str], Path]:
    """The compile command of one rewritten .cu file and its object file."""
    rewritten = out_dir / (cu.stem + ".emu.cpp")
    rewritten.write_text(f'#line 1 "{cu.relative_to(ROOT)}"\n' + rewrite_shared(cu.read_text()))
    obj = out_dir / (cu.stem + ".emu.o")
    return [CXX, *COMMON_FLAGS, f"-I{cu.parent}", *KERNEL_FLAGS, *flags, "-c", str(rewritten), "-o", str(obj)], obj


def _runtime_jobs(out_dir: Path, flags: list[str]) -> tuple[list[list[str]], list[Path]]:
    jobs, objs = [], []
    for src in RUNTIME_SOURCES:
        obj = out_dir / (src.stem + ".rt.o")
        jobs.append([CXX, *COMMON_FLAGS, *RUNTIME_FLAGS, *flags, "-c", str(src), "-o", str(obj)])
        objs.append(obj)
    return jobs, objs


def _link(objs: list[Path], target: Path, libs: list[str]) -> None:
    tmp = target.with_suffix(".tmp.so")
    _run([CXX, "-shared", "-o", str(tmp), *map(str, objs), *libs, "-ldl", "-Wl,-z,defs"])
    tmp.replace(target)


def build_core() -> Path:
    """Builds (or finds cached) the torch-free core library with the test kernels; returns its path."""
    kernels = sorted((EMU_DIR / "kernels").glob("*.cu"))
    inputs = _emu_files() + kernels + [CSRC / "common" / "launch.h"]
    key = _digest(inputs, [_compiler_version(), *KERNEL_FLAGS, *RUNTIME_FLAGS])
    out_dir = cache_root() / f"core-{key}"
    target = out_dir / "libcuda_emu_core.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, objs = _runtime_jobs(out_dir, [])
    for cu in kernels:
        cmd, obj = _kernel_job(cu, out_dir, ["-include", "cuda_emu/runtime.h"])
        jobs.append(cmd)
        objs.append(obj)
    _compile_all(jobs)
    _link(objs, target, [])
    return target


def csrc_sources() -> tuple[list[Path], list[Path]]:
    """The .cu files of csrc/sources.txt and the host .cpp files their entry points need.

    Host files are the non-CPU-twin .cpp files of each .cu file's folder (the
    device-neutral checks and prologue), or all of them where there are none.
    """
    listed = [
        ROOT / line.strip()
        for line in (CSRC / "sources.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    cus = [p for p in listed if p.suffix == ".cu"]
    hosts = []
    for cu in cus:
        folder = [p for p in listed if p.suffix == ".cpp" and p.parent == cu.parent]
        neutral = [p for p in folder if "_cpu" not in p.stem]
        hosts += neutral or folder
    return cus, hosts


def _torch_flags() -> tuple[list[str], list[str]]:
    import torch
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # Our stub CUDA headers come first (INCLUDE is in COMMON_FLAGS, before these).
    cflags = [f"-D_GLIBCXX_USE_CXX11_ABI={abi}"] + [f"-isystem{p}" for p in include_paths()]
    lib_dir = library_paths()[0]
    libs = [f"-L{lib_dir}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{lib_dir}"]
    return cflags, libs


def build_extension() -> Path:
    """Builds (or finds cached) the emulated pgnface extension; returns its path."""
    import torch

    cus, hosts = csrc_sources()
    headers = [p for p in CSRC.rglob("*") if p.suffix in (".h", ".cuh")]
    glue = sorted((EMU_DIR / "torch_glue").glob("*.cpp"))
    cflags, libs = _torch_flags()
    key = _digest(
        _emu_files() + cus + hosts + headers + glue,
        [_compiler_version(), torch.__version__, *KERNEL_FLAGS, *RUNTIME_FLAGS, *HOST_FLAGS],
    )
    out_dir = cache_root() / f"ext-{key}"
    target = out_dir / "pgnface_emu.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, objs = [], []
    for cu in cus:  # the slowest first
        cmd, obj = _kernel_job(cu, out_dir, [*cflags, "-include", "cuda_emu/prelude.h"])
        jobs.append(cmd)
        objs.append(obj)
    for cpp in hosts + glue:
        obj = out_dir / (cpp.stem + ".host.o")
        prelude = ["-include", "cuda_emu/host_prelude.h"] if cpp in hosts else []
        jobs.append([CXX, *COMMON_FLAGS, f"-I{cpp.parent}", *HOST_FLAGS, *cflags, *prelude, "-c", str(cpp), "-o", str(obj)])
        objs.append(obj)
    rt_jobs, rt_objs = _runtime_jobs(out_dir, [])
    _compile_all(jobs + rt_jobs)
    _link(objs + rt_objs, target, libs)
    return target
