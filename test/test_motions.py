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
from snn_fusion_ros.snn.baselines import nearest_neighbour_accuracy
from snn_fusion_ros.snn.motions import encode_recordings


def _streamed_decisions(art, x: np.ndarray) -> list[int]:
    """The class of each recording in ``x`` (R, steps, neurons) at its last window, streamed window by window
    through the torch backend with only the IMU present (as the fusion node runs it), state reset per
    recording."""
    from snn_fusion_ros.backends import create_backend

    be = create_backend("torch")
    be.load(art)
    steps = art.config.steps_per_window
    decisions = []
    for rec in x:
        be.reset()
        for lo in range(0, len(rec), steps):
            probs = be.step({"imu": rec[lo:lo + steps]})
        decisions.append(int(np.argmax(probs)))
    return decisions


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
    decisions = _streamed_decisions(art, x)
    batched = last_window_scores(art.build_model(), {"imu": x}).argmax(1).tolist()
    assert decisions == batched


@pytest.mark.unit
def test_shipped_basic_motions_model_reproduces_its_recorded_test_accuracy():
    """models/basic_motions (installed with the package) decides the archive's 40 test recordings as
    the run that made it recorded, through the streaming backend the fusion node uses."""
    from snn_fusion_ros.data.builder import default_cache
    from snn_fusion_ros.data.imu import load_aeon_dataset
    from snn_fusion_ros.models import resolve_model
    from snn_fusion_ros.snn.artifact import load_artifact
    from snn_fusion_ros.snn.motions import DATASET

    art = load_artifact(resolve_model("basic_motions"))
    extra = art.metadata["extra"]
    assert extra["task"] == "basic-motions" and extra["modalities"] == ["imu"]
    assert art.metadata["created_by"].startswith("snn-fusion task basic-motions")
    te = load_aeon_dataset(DATASET, "test", default_cache())
    assert list(art.class_names) == list(te.classes)
    # the encoder settings the model was trained with are the IMU encoder node's defaults
    cfg = node_encoder_configs().imu
    assert art.encoder_config["imu"] == node_encoder_configs().to_dict()["imu"]
    x = encode_recordings(te.series, cfg)
    decisions = _streamed_decisions(art, x)
    acc = float(np.mean(np.asarray(decisions) == np.asarray(te.labels)))
    assert acc == pytest.approx(extra["test_accuracy"], abs=1e-9), (acc, extra["test_accuracy"])
    assert acc >= 0.8  # chance 0.25, the archive's 1-NN baseline 0.725


@pytest.mark.ros
def test_fusion_node_runs_the_shipped_basic_motions_model_with_only_the_imu(rclpy_context, executor, ros_msgs):
    """The fusion node loads models/basic_motions by name with ``alignment.modalities: [imu]`` and, fed
    one test recording's IMU windows over DDS, publishes one classification per window whose last one is
    the streaming backend's decision for that recording."""
    import rclpy
    from conftest import spin_until
    from rclpy.parameter import Parameter

    from snn_fusion_ros.data.builder import default_cache
    from snn_fusion_ros.data.imu import load_aeon_dataset
    from snn_fusion_ros.models import resolve_model
    from snn_fusion_ros.msg import Classification, SpikeTrain
    from snn_fusion_ros.ros.convert import spike_window_to_msg
    from snn_fusion_ros.ros.fusion_node import FusionNode
    from snn_fusion_ros.ros.qos import results_qos, spikes_qos
    from snn_fusion_ros.snn.artifact import load_artifact
    from snn_fusion_ros.snn.motions import DATASET
    from snn_fusion_ros.spikes import SpikeWindow

    te = load_aeon_dataset(DATASET, "test", default_cache())
    i = int(np.flatnonzero(np.asarray(te.labels) == 1)[0])  # a Running recording
    x = encode_recordings([te.series[i]], node_encoder_configs().imu)[0]
    art = load_artifact(resolve_model("basic_motions"))
    steps, step_ns = art.config.steps_per_window, int(art.config.step_ms * 1e6)
    expected = art.class_names[_streamed_decisions(art, x[None])[0]]

    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("model_path", value="basic_motions"), Parameter("alignment.modalities", value=["imu"])])
    rig = rclpy.create_node("basic_motions_rig", context=rclpy_context)
    executor.add_node(rig)
    executor.add_node(fusion)
    pub = rig.create_publisher(SpikeTrain, "imu_encoder/spikes", spikes_qos(500))
    results = []
    rig.create_subscription(Classification, "fusion/classification", results.append, results_qos(500))
    assert spin_until(executor, lambda: pub.get_subscription_count() > 0, 10)
    spin_until(executor, lambda: False, 0.5)  # let the reader match this writer too
    windows = len(x) // steps
    for k in range(windows):
        pub.publish(spike_window_to_msg(SpikeWindow("imu", x[k * steps:(k + 1) * steps], (k + 1) * steps * step_ns,
                                                    step_ns, k)))
        spin_until(executor, lambda k=k: len(results) > k, 2.0)
    assert spin_until(executor, lambda: len(results) >= windows, 10), f"{len(results)} of {windows} classified"
    last = results[-1]
    assert list(last.class_names) == list(art.class_names) and list(last.modalities_used) == ["imu"]
    assert last.model_version == art.version and last.label == expected
