"""The encoders benchmark runs end to end on the real recordings and reports its stable keys."""

from __future__ import annotations

import argparse
import math

import pytest

from snn_fusion_ros.bench import encoders as bench
from snn_fusion_ros.bench.cli import Row

pytestmark = pytest.mark.unit

KEYS = ("dvs_events_per_s", "tonic_events_per_s", "dvs_vs_tonic_ratio", "audio_realtime_factor",
        "imu_samples_per_s", "decode_evt3_events_per_s", "decode_aedat4_events_per_s", "decode_es_events_per_s",
        "decode_xytp_evt3_events_per_s", "decode_xytp_davis346_events_per_s")


def test_bench_encoders_quick(shared_events):
    args = argparse.Namespace(quick=True, data_dir=str(shared_events), json=True, write=None, name="encoders")
    result = bench.measure(args)
    for key in KEYS:
        assert key in result, key
        assert math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    assert result["tonic_events"] == 78_830 + 50_000
    assert result["threads"] == 1
    rows = bench.rows(result)
    assert rows and all(isinstance(r, Row) and r.bench == "encoders" for r in rows)
    assert rows[0].baseline_value == pytest.approx(result["tonic_events_per_s"] / 1e6)


def test_bench_missing_data_dir(tmp_path):
    args = argparse.Namespace(quick=True, data_dir=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        bench.measure(args)
