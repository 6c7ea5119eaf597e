"""bench.train_step on a tiny config: the split adds up, the ops' profiler keys are found, the
phase-split step computes the same gradients as Trainer.train_step. No timing thresholds."""

import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ lives next to tests/

from bench import train_step as bench  # noqa: E402
from pgnface.train import Trainer  # noqa: E402

TINY = dict(
    batch_size=2, size=64, width=0.25, device="cpu", threads=1, overrides=["net.head_hidden=32", "net.fpn_channels=16"]
)


@pytest.fixture(scope="module")
def result():
    return bench.measure(bench.build_config(**TINY), steps=1, warmup=0)


def test_throughput_and_data(result):
    assert result["step_ms"] > 0 and result["data_ms"] > 0
    assert result["images_per_s"] == pytest.approx(2 / (result["step_ms"] / 1e3))
    assert result["config"]["images_per_step"] == 2


def test_phase_split_adds_up(result):
    phases = result["phases"]
    assert [p["key"] for p in phases] == [k for k, _ in bench.PHASES]
    assert all(p["ms"] >= 0 and p["pct"] >= 0 for p in phases)
    total = sum(p["ms"] for p in phases)
    assert total <= result["phase_step_ms"] * (1 + 1e-9)
    assert total == pytest.approx(result["phase_step_ms"], rel=1e-6)  # consecutive intervals
    assert result["geometry_rendering_pct"] == pytest.approx(
        sum(p["pct"] for p in phases if p["key"] in bench.GEOMETRY_PHASES)
    )
    assert result["target"]["applies"] is False and result["target"]["met"] is None


def test_op_split_keys_and_sums(result):
    found = {(o["op"], o["pass"]) for o in result["ops"]}
    for op in ("synthesize", "similarity_align", "rasterize", "interpolate"):
        assert (op, "forward") in found and (op, "backward") in found, (op, sorted(found))
        assert f"pgnface::{op}" in result["op_keys"][op]
    assert all(o["ms"] >= 0 and o["pct"] >= 0 and o["calls"] >= 1 for o in result["ops"])
    assert result["pgnface_ops_ms"] == pytest.approx(sum(o["ms"] for o in result["ops"]))
    assert 0 < result["pgnface_ops_ms"] <= result["profiled_step_ms"]
    assert result["other_ms"] >= 0
    assert result["pgnface_ops_pct"] + result["other_pct"] == pytest.approx(100.0)


def test_report_and_markdown(result):
    text = bench.report(result)
    assert "images/s" in text and "everything else" in text and "not applicable on a CPU" in text
    md = bench.markdown(result)
    assert md.startswith("### Training step") and "| synthesize | forward |" in md


def test_phase_split_matches_train_step():
    """The cut autograd graph gives the gradients of the real step."""
    config = bench.build_config(**TINY)
    grads = []
    for staged in (False, True):
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(config, out, progress=False)  # same seed: same initial weights
            batch = trainer.batches.batch(0, config.batch_size)
            if staged:
                bench.phase_split(trainer, batch)
            else:
                trainer.train_step(batch)
            grads.append([p.grad.clone() if p.grad is not None else None for p in trainer.net.parameters()])
            trainer.close()
    assert sum(g is not None for g in grads[0]) > 0
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
