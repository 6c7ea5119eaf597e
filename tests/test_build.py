"""The build: extension/torch match, the loader's rebuild message, the CMake build."""

import importlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from op_harness import OP_NAMES

import pgnface
import pgnface.ops._native as ext

ROOT = Path(__file__).resolve().parents[1]


def test_extension_built_against_installed_torch():
    assert torch.ops.pgnface.torch_version_built() == torch.__version__
    assert isinstance(pgnface.ops.cuda_built(), bool)


def test_build_metadata_are_ops_and_the_module_is_empty():
    assert torch.ops.pgnface.cuda_built() == pgnface.ops.cuda_built()
    assert torch.ops.pgnface.cuda_built() == importlib.import_module("pgnface._build_info").WITH_CUDA
    # No binding library: the module only exists to load the op registrations.
    assert not [name for name in vars(ext._C) if not name.startswith("__")]


def test_ops_are_registered_in_the_dispatcher():
    for name in (*OP_NAMES, "cuda_built", "torch_version_built"):
        assert hasattr(torch.ops.pgnface, name)


def test_loader_explains_a_torch_mismatch(monkeypatch):
    monkeypatch.setattr(ext, "_build_info", lambda: ("1.0.0", False))
    with pytest.raises(ImportError, match=r"built against torch 1\.0\.0 .*--no-build-isolation"):
        ext._load()


def test_source_list_names_existing_files():
    listed = [
        line.strip()
        for line in (ROOT / "csrc" / "sources.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert listed, "csrc/sources.txt lists no sources"
    for src in listed:
        assert (ROOT / src).is_file(), f"csrc/sources.txt lists missing file {src}"
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*") if p.suffix in (".cpp", ".cu")}
    assert on_disk == set(listed), "every .cpp/.cu under csrc/ must be in csrc/sources.txt"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_cpu_only_build_loads_and_runs(tmp_path):
    build = tmp_path / "build"
    env_python = f"-DPython3_EXECUTABLE={sys.executable}"
    # A build type without flags compiles without optimisation: what is tested is that the CMake
    # build finds torch, compiles every source and links a module that loads, not its speed.
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), env_python, "-DCMAKE_BUILD_TYPE=Unoptimised"]
    subprocess.run(configure, check=True, capture_output=True, text=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True, text=True)
    built = list(build.glob("_C*.so"))
    assert len(built) == 1, f"expected one _C module in {build}, found {built}"
    # Load the CMake-built module alone in a fresh interpreter and run the op.
    script = textwrap.dedent(f"""
        import importlib.util, torch
        spec = importlib.util.spec_from_file_location("_C", {str(built[0])!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert not torch.ops.pgnface.cuda_built()
        assert torch.ops.pgnface.torch_version_built() == torch.__version__
        mean, basis, c = torch.randn(50, 3), torch.randn(50, 3, 4), torch.randn(3, 4)
        R, s, t = torch.eye(3).expand(3, 3, 3).contiguous(), torch.ones(3), torch.zeros(3, 3)
        out, status = torch.ops.pgnface.synthesize(mean, basis, c, R, s, t)
        assert status.tolist() == [0]
        ref = mean + torch.einsum("ndk,bk->bnd", basis, c)
        torch.testing.assert_close(out, ref)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_sync_debug_mode_covers_each_op_its_checks_and_its_backward(monkeypatch):
    # PGNFACE_SYNC_DEBUG (scripts/gpu_check.sh): every pgnface op runs under
    # torch.cuda.set_sync_debug_mode, backward included; here the mode is faked (no GPU needed).
    import conftest

    state = {"mode": 0}
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: state["mode"])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: state.update(mode=mode))
    seen = []

    def spy(name):
        op = getattr(torch.ops.pgnface, name)

        def call(*args, **kwargs):
            seen.append((name, state["mode"]))
            return op(*args, **kwargs)

        return call

    for name in ("rasterize", "rasterize_backward"):
        monkeypatch.setattr(torch.ops.pgnface, name, spy(name))
    conftest.install_sync_debug("error", set_attr=monkeypatch.setattr)
    assert torch.ops.pgnface.rasterize_backward.__name__ == "call"
    pos = torch.tensor([[[-1.0, -1.0, 0.5, 1.0], [1.0, -1.0, 0.5, 1.0], [-1.0, 1.0, 0.5, 1.0]]], requires_grad=True)
    fragments = pgnface.ops.rasterize(pos, torch.tensor([[0, 1, 2]]), (8, 8))
    assert state["mode"] == 0
    fragments.bary.sum().backward()
    assert seen == [("rasterize", "error"), ("rasterize_backward", "error")]
    assert state["mode"] == 0 and pos.grad is not None


@pytest.mark.skipif(not pgnface.ops.cuda_built(), reason="a CPU-only build registers no CUDA kernels")
def test_a_cuda_build_registers_every_op_for_both_devices():
    # The CUDA entry points are registered apart from the .cu files (csrc/cuda_ops.cpp): an op
    # missing there would only show on a GPU, so the registrations are compared here.
    names = sorted(n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("pgnface::"))
    device_ops = [n for n in names if torch._C._dispatch_has_kernel_for_dispatch_key(f"pgnface::{n}", "CPU")]
    missing = [n for n in device_ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"pgnface::{n}", "CUDA")]
    assert len(device_ops) >= 10 and not missing, f"no CUDA kernel registered for {missing}"
