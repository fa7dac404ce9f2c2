"""End to end: bags replayed (sim time) through the encoder and fusion processes."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_davis346_bag_replays_without_rejections_and_diagnostics_ok(shared_events, ros_msgs, encoder_sized_model,
                                                                    tmp_path):
    from snn_fusion_ros.bags.cli_make import main as make_bag
    from snn_fusion_ros.demo import run_session, summarize

    bag = tmp_path / "davis"
    assert make_bag(["-o", str(bag), "--from-recording", str(shared_events / "davis346.aedat4")]) == 0
    session, facts = run_session(bag, model=str(encoder_sized_model), modalities=("dvs", "imu"),
                                 log_dir=tmp_path / "logs")
    s = summarize(session, facts)
    assert not facts["died"] and facts["replay_exit"] == 0, facts
    # 2.36 s of sensor time in 50 ms windows
    assert s["windows_classified"] >= 40, s
    assert set(s["rejected"]) == {"dvs_encoder", "imu_encoder", "fusion"} and not any(s["rejected"].values()), s
    assert all(v == "OK" for v in s["diagnostics_last"].values()), s["diagnostics_last"]
    assert {m for r in session.results for m in r.modalities} == {"dvs", "imu"}
