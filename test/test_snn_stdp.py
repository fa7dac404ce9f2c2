"""Online STDP: sign of the pair rule, bounds, off by default, checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.snn.stdp import OnlineSTDP, STDPConfig, stdp_window_numpy

pytestmark = pytest.mark.unit


def _pair(pre_t: int, post_t: int, cfg: STDPConfig) -> float:
    pre = np.zeros((10, 1), bool)
    post = np.zeros((10, 1), bool)
    pre[pre_t, 0] = True
    post[post_t, 0] = True
    w, _, _ = stdp_window_numpy(np.zeros((1, 1), np.float32), pre, post, np.zeros(1), np.zeros(1),
                                np.exp(-5 / 20), np.exp(-5 / 20), cfg)
    return float(w[0, 0])


def test_pre_before_post_potentiates_and_reverse_depresses():
    cfg = STDPConfig(enabled=True, learning_rate=0.1)
    ltp = _pair(2, 4, cfg)
    ltd = _pair(4, 2, cfg)
    assert ltp == pytest.approx(0.1 * np.exp(-10 / 20), rel=1e-5)
    assert ltd == pytest.approx(-0.1 * 1.05 * np.exp(-10 / 20), rel=1e-5)
    assert _pair(2, 3, cfg) > ltp  # closer pairs change more


def test_weights_stay_within_bounds():
    cfg = STDPConfig(enabled=True, learning_rate=1.0, w_min=-0.5, w_max=0.5)
    pre = np.ones((10, 4), bool)
    post = np.ones((10, 3), bool)
    w, _, _ = stdp_window_numpy(np.zeros((3, 4)), pre, post, np.zeros(4), np.zeros(3), 0.9, 0.9, cfg)
    assert w.max() <= 0.5 and w.min() >= -0.5
    with pytest.raises(ValueError, match="w_min"):
        STDPConfig(w_min=1.0, w_max=0.0)


def test_online_stdp_off_by_default_and_checkpoints():
    cfg = FusionNetConfig(audio_neurons=8, dvs_neurons=8, imu_neurons=8, hidden_neurons=8, fusion_neurons=6,
                          num_classes=2, input_gain=5.0)
    model = FusionNet(cfg)
    stdp = OnlineSTDP(model)
    w0 = model.w_fuse.detach().clone()
    rng = np.random.default_rng(0)
    win = {m: rng.random((10, 8)) < 0.5 for m in ("audio", "dvs", "imu")}
    model.step(win)
    assert not stdp.update()
    assert np.array_equal(model.w_fuse.detach().numpy(), w0.numpy())
    stdp.configure(STDPConfig(enabled=True, learning_rate=0.01))
    for _ in range(5):
        model.step(win)
        assert stdp.update()
    assert not np.array_equal(model.w_fuse.detach().numpy(), w0.numpy())
    state = stdp.state_dict()
    other = OnlineSTDP(FusionNet(cfg))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.model.w_fuse.detach().numpy(), state["w_fuse"])
    assert other.updates == 5
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({**state, "w_fuse": np.zeros((2, 2))})
