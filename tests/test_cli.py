"""The command line: every subcommand reports a usage error as one line and exit code 2."""

import subprocess
import sys

import pytest

from pgnface.cli import bench, main

MISSING = "missing.pt"


def _usage_error(capsys, argv) -> str:
    """Runs `pgnface argv`, checks exit code 2 and one stderr line naming the command; returns the message."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    command = " ".join(argv[:2]) if argv[0] == "eval" else argv[0]
    assert err.count("\n") == 1 and err.startswith(f"pgnface {command}: "), err
    return err[len(f"pgnface {command}: ") :].strip()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["render", "-n", "0"], "--num must be at least 1"),
        (["render", "--size", "4", "-o", "{tmp}/r"], "--size must be at least 8 px"),
        (["render", "--morphable", "{tmp}/none.npz", "-o", "{tmp}/r"], "3DMM file not found"),
        (["train", "--out", "{tmp}/t", "data.framing=landmarks"], "it is 'data.synthetic.framing' now"),
        (["train", "--out", "{tmp}/t", "data.hair_prob=0.7"], "'data.hair_prob' no longer exists"),
        (["train", "--out", "{tmp}/t", "--config", "{tmp}/none.json"], "none.json does not exist"),
        (["eval", "aflw2000", "{tmp}/none"], "AFLW2000-3D folder not found"),
        (["eval", "aflw2000", "{tmp}", "--flip", "--mean-face"], "--flip does not apply to --mean-face"),
        (["eval", "aflw2000", "{tmp}", "--landmarks", "recon", "--mean-face"], "--landmarks does not apply"),
        (["eval", "dense", "{tmp}/a.obj", "{tmp}"], "PRED and GT must both be files or both be folders"),
        (["eval", "synthetic", "-n", "0"], "-n must be at least 1"),
        (["eval", "synthetic", "--checkpoint", "{tmp}/" + MISSING], f"--checkpoint {{tmp}}/{MISSING}"),
        (["reconstruct", "{tmp}/none.jpg"], "input not found"),
        (["reconstruct", "{tmp}", "--fps", "0"], "--fps must be at least 0.1 frames per second"),
        (["demo", "--frames", "0"], "--frames must be at least 1"),
        (["demo", "-o", "{tmp}/d", "--checkpoint", "{tmp}/" + MISSING], f"--checkpoint {{tmp}}/{MISSING}"),
        (["export-onnx", "--opset", "11"], "--opset must be at least 18"),
        (["export-onnx", "--checkpoint", "{tmp}/" + MISSING], f"--checkpoint {{tmp}}/{MISSING}"),
        (["probe", "--checkpoint", "{tmp}/" + MISSING, "--images", "{tmp}"], f"--checkpoint {{tmp}}/{MISSING}"),
        (["bench", "nosuch"], "unknown benchmark 'nosuch'"),
    ],
)
def test_each_command_reports_a_usage_error_as_one_line(tmp_path, capsys, argv, expected):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert expected.replace("{tmp}", str(tmp_path)) in _usage_error(capsys, argv)


def test_bench_needs_a_source_checkout(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "SOURCE_ROOT", tmp_path)
    assert "needs a source checkout" in _usage_error(capsys, ["bench", "synthesize"])


def test_bench_passes_the_arguments_after_the_separator_on():
    assert bench.split_passthrough(["bench", "rasterize", "--", "--device", "cuda"]) == (
        ["bench", "rasterize"],
        ["--device", "cuda"],
    )
    assert bench.split_passthrough(["train", "--", "lr=1"]) == (["train", "--", "lr=1"], [])


def _run_without(modules, *argv) -> subprocess.CompletedProcess:
    """`pgnface argv` in a fresh interpreter in which importing any of `modules` fails."""
    blocked = ", ".join(repr(m) for m in modules)
    code = f"import sys\nsys.modules.update(dict.fromkeys([{blocked}]))\nfrom pgnface.cli import main\nsys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)


def test_a_missing_application_dependency_names_the_extra(tmp_path):
    app = ("cv2", "scipy", "tqdm", "onnx", "onnxruntime", "onnxscript", "tensorboard")
    shown = _run_without(app, "--help")
    assert shown.returncode == 0 and "reconstruct" in shown.stdout
    for argv, name in (
        (["render", "-n", "1", "-o", str(tmp_path)], "opencv"),
        (["export-onnx", "-o", str(tmp_path / "a.onnx")], "onnx"),
    ):
        result = _run_without(app, *argv)
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"pgnface {argv[0]}: needs {name}: pip install 'pgnface[app]'\n"
