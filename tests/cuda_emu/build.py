"""Builds the emulated CUDA libraries with g++ and caches them.

Two shared libraries come out of here, each cached under a folder keyed by a
hash of everything that goes into it (sources, flags, compiler, torch), so a
test session or a CI step builds them at most once:

- the core library: the emulator plus tests/cuda_emu/kernels/*.cu, no torch;
  its entry points are called through ctypes (the mutation tests).
- the emulated extension: the emulator plus the exact `.cu` sources of
  pgnface (csrc/sources.txt), linked against the built pgnface._C for the
  host code their entry points call, as a torch library whose ops live in the
  namespace `pgnface_emu`, beside the real `pgnface` ones.

Kernel translation units are compiled with `-fsanitize=thread`, whose memory
callbacks the emulator implements (src/tsan_abi.cpp); the emulator's own files
are not instrumented. Before compiling, each `.cu` file's `__shared__`
declarations are rewritten into arena variables of the emulator (one line each,
so line numbers in reports stay those of the source).
"""

from __future__ import annotations

import functools
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

_SHARED = re.compile(
    r"^(?P<indent>[ \t]*)__shared__\s+(?P<type>[^;=]+?)\s+(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]*\]\s*)*);"
)
_EXTERN_SHARED = re.compile(
    r"^(?P<indent>[ \t]*)extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?"
    r"(?P<type>[^;=]+?)\s+(?P<name>\w+)\s*\[\s*\]\s*;"
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
        return f'{m["indent"]}auto& {m["name"]} = ::cuda_emu::shared_var<{t}>({site}, "{m["name"]}");'

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


@functools.lru_cache(maxsize=1)
def _compiler_version() -> str:
    return subprocess.run([CXX, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def _headers(source: Path) -> list[Path]:
    """The headers source may include: the emulator's public ones, csrc's, and the internal ones for src/."""
    headers = list(INCLUDE.rglob("*.h")) + list(CSRC.rglob("*.h"))
    if source.is_relative_to(EMU_DIR / "src"):
        headers += list((EMU_DIR / "src").glob("*.h"))
    return headers


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"emulator build failed:\n{' '.join(cmd)}\n{result.stderr[-6000:]}")


class _Objects:
    """Compile jobs whose objects are cached one by one, keyed by their source, the headers and the flags."""

    def __init__(self):
        self.jobs: list[list[str]] = []
        self.objects: list[Path] = []
        self.dir = cache_root() / "objects"
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, source: Path, flags: list[str], text: str | None = None) -> None:
        """Compiles source (or text standing in for it, e.g. a rewritten .cu) with flags."""
        body = text if text is not None else source.read_text()
        key = _digest(_headers(source), [body, *flags, _compiler_version()])
        obj = self.dir / f"{source.stem}-{key}.o"
        self.objects.append(obj)
        if obj.exists():
            return
        if text is not None:
            src = self.dir / f"{source.stem}-{key}.emu.cpp"
            src.write_text(text)
            source = src
        tmp = obj.with_suffix(".tmp.o")
        self.jobs.append([CXX, *COMMON_FLAGS, f"-I{source.parent}", *flags, "-c", str(source), "-o", str(tmp)])

    def add_kernel_file(self, cu: Path, flags: list[str]) -> None:
        """A .cu file, rewritten (line for line) and compiled with instrumentation."""
        text = f'#line 1 "{cu.relative_to(ROOT)}"\n' + rewrite_shared(cu.read_text())
        self.add(cu, [f"-I{cu.parent}", *KERNEL_FLAGS, *flags], text)

    def add_runtime(self) -> None:
        for src in RUNTIME_SOURCES:
            self.add(src, RUNTIME_FLAGS)

    def build(self) -> list[Path]:
        workers = max(1, int(os.environ.get("MAX_JOBS", min(2, os.cpu_count() or 1))))
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(_run, cmd) for cmd in self.jobs]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
        for cmd in self.jobs:
            Path(cmd[-1]).replace(cmd[-1].replace(".tmp.o", ".o"))
        return self.objects


def _link(objs: list[Path], name: str, libs: list[str], key_extra: list[str] = ()) -> Path:
    """Links objs into cache_root()/<name>-<key>.so (cached by the objects' names and the libraries)."""
    key = _digest([], [o.name for o in objs] + libs + list(key_extra))
    target = cache_root() / f"{name}-{key}.so"
    if not target.exists():
        tmp = target.with_suffix(".tmp.so")
        _run([CXX, "-shared", "-o", str(tmp), *map(str, objs), *libs, "-ldl", "-Wl,-z,defs"])
        tmp.replace(target)
    return target


def build_core() -> Path:
    """Builds (or finds cached) the torch-free core library with the test kernels; returns its path."""
    objects = _Objects()
    objects.add_runtime()
    for cu in sorted((EMU_DIR / "kernels").glob("*.cu")):
        objects.add_kernel_file(cu, ["-include", "cuda_emu/runtime.h"])
    return _link(objects.build(), "libcuda_emu_core", [])


def csrc_kernel_sources() -> list[Path]:
    """The .cu files of csrc/sources.txt."""
    lines = (CSRC / "sources.txt").read_text().splitlines()
    return [ROOT / line.strip() for line in lines if line.strip().endswith(".cu") and not line.startswith("#")]


def _native_library() -> Path:
    """The built pgnface._C, whose host code (argument checks, prologues) the emulated entry points call."""
    import importlib.util

    spec = importlib.util.find_spec("pgnface._C")
    if spec is None or spec.origin is None:
        raise RuntimeError("pgnface._C is not built; build pgnface first (make build)")
    return Path(spec.origin)


def _torch_flags() -> tuple[list[str], list[str]]:
    import torch
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # Our stub CUDA headers come first (INCLUDE is in COMMON_FLAGS, before these).
    # The version macro keys the object cache to the torch in use.
    cflags = [f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-DPGN_EMU_TORCH_VERSION={torch.__version__}"]
    cflags += [f"-isystem{p}" for p in include_paths()]
    lib_dir = library_paths()[0]
    libs = [f"-L{lib_dir}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{lib_dir}"]
    return cflags, libs


def build_extension() -> Path:
    """Builds (or finds cached) the emulated pgnface extension; returns its path.

    It links against the built pgnface._C by path, for the host functions of
    csrc (argument checks, prologues) that the CUDA entry points call: the same
    code the real extension runs.
    """
    cflags, libs = _torch_flags()
    objects = _Objects()
    for cu in csrc_kernel_sources():
        objects.add_kernel_file(cu, [*cflags, "-include", "cuda_emu/prelude.h"])
    # The registration of the CUDA entry points, remapped to pgnface_emu (cuda_emu/library_remap.h).
    objects.add(CSRC / "cuda_ops.cpp", [*RUNTIME_FLAGS, *cflags, "-DWITH_CUDA", "-include", "cuda_emu/library_remap.h"])
    for cpp in sorted((EMU_DIR / "torch_glue").glob("*.cpp")):
        objects.add(cpp, [*RUNTIME_FLAGS, *cflags])
    objects.add_runtime()
    native = _native_library()
    stamp = f"{native}:{native.stat().st_size}:{native.stat().st_mtime_ns}"
    return _link(objects.build(), "pgnface_emu", [str(native), *libs], key_extra=[stamp])
