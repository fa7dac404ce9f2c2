"""Benchmark plumbing: BENCHMARKS.md rows are rewritten in place; the JSON keys the team reads exist."""

from __future__ import annotations

import argparse
import json

import pytest

from snn_fusion_ros.bench.cli import Row, write_table


@pytest.mark.unit
def test_write_table_replaces_only_the_generated_block(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nhand-written notes\n")
    rows = [Row("e2e", "latency p99", 12.5, "ms", "relay p99", 2.5, 5.0, "note")]
    write_table(path, rows, "snn-fusion bench all --write BENCHMARKS.md")
    write_table(path, [Row("e2e", "latency p99", 11.0, "ms", "relay p99", 2.0, 5.5)], "cmd2")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written notes\n")
    assert text.count("<!-- bench:begin -->") == 1 and "| e2e | latency p99 | 11 | ms | relay p99 | 2 | 5.5x |" in text
    assert "cmd2" in text and "12.5" not in text


@pytest.mark.unit
def test_backend_rows_show_cuda_only_where_it_ran():
    from snn_fusion_ros.bench.backends import rows

    base = {"torch": {"available": True, "step_ms_p50": 0.6, "step_ms_p99": 0.8, "windows": 160,
                      "device": "torch:cpu"}}
    absent = rows({**base, "torch_cuda": {"available": False, "reason": "torch.cuda.is_available() is False"}})
    assert [r.figure for r in absent] == ["torch window step p50 (torch:cpu)"]
    cuda = {"available": True, "step_ms_p50": 1.2, "step_ms_p99": 1.5, "windows": 160, "device": "torch:cuda:0",
            "gpu": "NVIDIA H200", "decision_agreement_vs_torch": 1.0, "max_abs_prob_diff_vs_torch": 3e-7}
    got = {r.figure: r for r in rows({**base, "torch_cuda": cuda})}
    r = got["torch window step p50 (torch:cuda:0, NVIDIA H200)"]
    assert r.value == 1.2 and r.baseline_value == 0.6 and r.ratio == pytest.approx(2.0)
    assert got["torch cuda decision agreement"].value == 1.0


@pytest.mark.ros
@pytest.mark.slow
def test_bench_e2e_json_has_the_keys_the_team_reads(ros_msgs, capsys):
    from snn_fusion_ros.bench.cli import run

    run(argparse.Namespace(name="e2e", json=True, write=None, quick=True, data_dir="../shared/data/events"))
    out = json.loads(capsys.readouterr().out)
    assert {"latency_ms_p50", "latency_ms_p99", "loopback_ms_p99", "ratio"} <= out.keys()
    # how many windows a loaded machine classifies in real time is a measurement, not asserted here
    assert 0 < out["classifications"] <= out["classifications_expected"], out
    assert out["ratio"] == pytest.approx(out["latency_ms_p99"] / out["loopback_ms_p99"])
