"""The second task (``snn-fusion task basic-motions``): real 6-axis smart-watch IMU, 4 activities.

The aeon wheel holding the UEA files is fetched from PyPI on first use and cached (as for the fused
build). The short run trains 2 epochs on the archive's 40 training recordings and is judged on its
40 test recordings, which training never sees.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from snn_fusion_ros.cli import main
from snn_fusion_ros.data.encode import node_encoder_configs
from snn_fusion_ros.snn.motions import encode_recordings, nearest_neighbour_accuracy


@pytest.mark.unit
def test_recordings_stream_through_the_node_encoder_from_sensor_time_zero():
    cfg = node_encoder_configs().imu
    rng = np.random.default_rng(0)
    rec = [rng.normal(0, 3, (6, 100)), rng.normal(0, 3, (6, 60))]
    x = encode_recordings(rec, cfg)
    steps = round(cfg.window_ms / cfg.step_ms)
    assert x.dtype == bool and x.shape == (2, 200 * steps, 6 * cfg.population_size)  # 10 s of 50 ms windows
    # the population code fires one neuron per channel at each 10 Hz sample (every 20th 5 ms step); the
    # 6 s recording is zero-padded after its last sample
    fired = x.any(axis=2)
    assert fired.sum(1).tolist() == [100, 60]
    np.testing.assert_array_equal(np.nonzero(fired[1])[0], np.arange(60) * 20)
    assert (x[0, fired[0]].sum(1) == 6).all()
    with pytest.raises(ValueError, match=r"\(6, n\)"):
        encode_recordings([rng.normal(size=(3, 100))], cfg)


@pytest.mark.unit
def test_nearest_neighbour_baseline():
    a, b = np.sin(np.linspace(0, 6, 50))[None], np.cos(np.linspace(0, 6, 50))[None]
    train = [a, b]
    test = [a * 5 + 1, b * 0.1 - 2, b]  # z-normalisation ignores gain and offset
    assert nearest_neighbour_accuracy(train, np.array([0, 1]), test, np.array([0, 1, 1])) == 1.0
    assert nearest_neighbour_accuracy(train, np.array([0, 1]), test, np.array([1, 1, 1])) == pytest.approx(2 / 3)


@pytest.mark.unit
@pytest.mark.slow
def test_short_run_beats_chance_and_its_model_streams_in_the_backend(tmp_path, capsys):
    from snn_fusion_ros.backends import create_backend
    from snn_fusion_ros.data.builder import default_cache
    from snn_fusion_ros.data.imu import load_aeon_dataset
    from snn_fusion_ros.snn.artifact import load_artifact
    from snn_fusion_ros.snn.training import last_window_scores

    out = tmp_path / "motions"
    assert main(["task", "basic-motions", "--epochs", "2", "--json", "--no-progress", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    for k in ("test_accuracy", "train_accuracy", "baseline", "confusion_matrix", "classes", "n_train", "n_test",
              "decision_rule", "history", "settings", "imu_encoder"):
        assert k in res, k
    assert res["classes"] == ["Standing", "Running", "Walking", "Badminton"]
    assert res["n_train"] == 40 and res["n_test"] == 40 and len(res["history"]) == 2
    cm = np.array(res["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 40 and (cm.sum(1) == 10).all()
    assert np.trace(cm) == round(res["test_accuracy"] * 40)
    assert res["test_accuracy"] >= 0.5, res  # chance is 0.25
    assert 0.25 < res["baseline"]["test_accuracy"] <= 1.0
    # the artifact streams window by window with only the IMU present, as the fusion node runs it, and
    # decides as the batched evaluation did
    art = load_artifact(out)
    assert list(art.class_names) == res["classes"] and art.metadata["extra"]["modalities"] == ["imu"]
    cfg = node_encoder_configs().imu
    te = load_aeon_dataset("BasicMotions", "test", default_cache())
    x = encode_recordings(te.series[:4], cfg)
    be = create_backend("torch")
    be.load(art)
    steps = art.config.steps_per_window
    decisions = []
    for rec in x:
        be.reset()
        for lo in range(0, len(rec), steps):
            probs = be.step({"imu": rec[lo:lo + steps]})
        decisions.append(int(np.argmax(probs)))
    batched = last_window_scores(art.build_model(), {"imu": x}).argmax(1).tolist()
    assert decisions == batched
