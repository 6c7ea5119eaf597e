"""bench.under_load: runs with a spinner, stops it, restores the thread settings, reports each count."""

import json

import pytest
import torch

import pgnface.ops as ops
from bench import under_load


@pytest.mark.parametrize("pool", [False, True])
def test_under_load_reports_both_thread_counts_and_cleans_up(tmp_path, pool):
    threads, pool_before = torch.get_num_threads(), ops.use_cpu_thread_pool(False)
    ops.use_cpu_thread_pool(pool_before)
    out = tmp_path / "load.json"
    args = ["--spinners", "1", "--calls", "2", "--ops", "svd3x3", "--json", str(out)]
    under_load.main(args + (["--pool"] if pool else []))
    result = json.loads(out.read_text())
    assert result["pool"] is pool and result["spinners"] == 1
    (row,) = result["rows"]
    for n in (1, 2):
        assert 0 < row[f"{n}t median ms"] <= row[f"{n}t p95 ms"] <= row[f"{n}t max ms"]
    assert torch.get_num_threads() == threads
    assert ops.use_cpu_thread_pool(pool_before) == pool_before


def test_under_load_rejects_unknown_ops():
    with pytest.raises(SystemExit) as exit_info:
        under_load.main(["--ops", "nope"])
    assert exit_info.value.code == 2
