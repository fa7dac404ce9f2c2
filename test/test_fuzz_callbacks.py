"""Property-based fuzzing of every node's message callback, in process (real rclpy nodes, no DDS peer).

Each node is constructed once per test; each hypothesis example is a list of messages played as a
fresh stream into it (encoder nodes: sequence and encoder state reset per example, so failures
reproduce; fusion keeps its state across examples), so sequences of adversarial messages (gaps,
duplicates, restarts, stamps jumping around) are exercised too. The
callbacks are called directly (``_on_input`` / ``_on_spikes``) with hypothesis-generated messages:
wrong encodings, truncated payloads, odd lengths, NaN/inf, sizes up to the caps, stamps far in the
past/future, extreme sequence numbers.

Invariants, per message: nothing raises out of the callback; nothing hangs (pytest-timeout);
the message is either accepted (decoded and pushed into the encoder / aligner) or counted once
under a documented rejection reason - ``received == accepted + rejected`` at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.errors import REASONS

pytestmark = pytest.mark.ros

SETTINGS = settings(max_examples=120,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
W = 50_000_000

sec = st.one_of(st.integers(-2**31, 2**31 - 1), st.integers(1_000, 1_100))  # far away or near each other
nsec = st.one_of(st.integers(0, 999_999_999), st.integers(10**9, 2**32 - 1))
seq = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 20))  # extremes or dense (duplicates, gaps)


class Outcomes:
    """Per message: accepted (the encoder returned) or rejected (some rejection counter grew)."""

    def __init__(self, node) -> None:
        self.node = node
        self.accepted = 0
        self.rejected = 0
        self.reasons: set[str] = set()
        inner = node.encode_message
        self._done = False

        def accept(msg):
            out = inner(msg)
            self._done = True
            return out

        node.encode_message = accept

    def feed(self, msg) -> None:
        node = self.node
        before = node.rejection_counts()
        self._done = False
        _call(node._on_input, msg)
        after = node.rejection_counts()
        grew = {k for k, v in after.items() if v > before.get(k, 0)}
        assert set(after) <= set(REASONS), after
        if self._done:
            self.accepted += 1
            return
        assert grew, f"message neither encoded nor counted as rejected: {msg!r:.400}"
        self.rejected += 1
        self.reasons |= grew

    def check(self, received: int) -> None:
        assert received == self.accepted + self.rejected, (
            f"received {received} != accepted {self.accepted} + rejected {self.rejected}")


def _call(callback, msg) -> None:
    try:
        callback(msg)
    except Exception as exc:  # the invariant: a callback never raises (rclpy would kill the executor)
        raise AssertionError(f"{type(exc).__name__} escaped the callback for {msg!r:.400}") from exc


def fresh_stream(node) -> None:
    """Each example is a new stream (reproducible examples): sequence state, encoder, decoder state."""
    from snn_fusion_ros.sequence import SequenceTracker

    node.sequence = SequenceTracker()
    node.encoder = node.make_encoder(node.encoder_config)
    if hasattr(node, "_evt3"):
        node._evt3.reset()
        node._evt3_time_base = None
        node._resolution = None


def _stamp(msg, s, ns) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = s, ns


def fuzz_node(node, messages, max_size: int) -> Outcomes:
    """Feed hypothesis-drawn lists of ``messages`` (each list a fresh stream) to ``node``'s callback;
    every message must be accepted or counted as rejected. Returns the outcomes for further checks."""
    out = Outcomes(node)

    @SETTINGS
    @given(msgs=st.lists(messages, min_size=1, max_size=max_size))
    def run(msgs):
        fresh_stream(node)
        for m in msgs:
            out.feed(m)

    run()
    out.check(node.received)
    return out


# --- audio ---------------------------------------------------------------------------------------

@st.composite
def audio_msgs(draw):
    from snn_fusion_ros.msg import AudioFrame

    # valid choices repeated: about half the messages are well-formed, so both paths are exercised
    fmt = draw(st.sampled_from(["S16LE", "F32LE", "S16LE", "F32LE", "S24LE", "", "f32le"]))
    channels = draw(st.sampled_from([1, 1, 2, 3, 0, 65535]))
    rate = draw(st.sampled_from([16000, 16000, 44100, 8000, 0, 1, 999_983, 2**32 - 1]))
    m = AudioFrame(sample_rate_hz=rate, channels=channels, sample_format=fmt, seq=draw(seq))
    _stamp(m, draw(sec), draw(nsec))
    kind = draw(st.sampled_from(["valid", "random", "odd", "poison", "big"]))
    if kind == "random":
        m.data = draw(st.binary(max_size=600))
    elif kind == "big":
        m.data = bytes(4 * 64 * 1024 + 4)  # above the node's cap set in the fixture
    else:
        n = draw(st.integers(1, 400))
        x = np.sin(np.arange(n * max(channels, 1)) * 0.3).astype("<f4")
        raw = (x if fmt == "F32LE" else (x * 3000).astype("<i2")).tobytes()
        if kind == "odd":
            raw = raw[:-1]
        if kind == "poison" and fmt == "F32LE":
            raw = np.float32(draw(st.sampled_from([np.nan, np.inf, -np.inf]))).tobytes() + raw[4:]
        m.data = raw
    return m


def test_audio_encoder_callback_fuzz(rclpy_context, ros_msgs):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode

    node = AudioEncoderNode(context=rclpy_context,
                            parameter_overrides=[Parameter("max_message_bytes", value=256 * 1024)])
    try:
        out = fuzz_node(node, audio_msgs(), 8)
        assert out.accepted > 0 and out.rejected > 0, (out.accepted, out.rejected)
    finally:
        node.destroy_node()


# --- dvs -----------------------------------------------------------------------------------------

@st.composite
def event_msgs(draw):
    from snn_fusion_ros.codecs.evt3 import encode_evt3
    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.msg import EventArray

    enc = draw(st.sampled_from(["xytp", "evt3", "xytp", "evt3", "evt2", "", "XYTP"]))
    w = draw(st.sampled_from([64, 346, 64, 346, 0, 1, 2**32 - 1]))
    h = draw(st.sampled_from([64, 260, 64, 260, 0, 1, 2**32 - 1]))
    base = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(10**12, 10**12 + 10**10)))
    m = EventArray(width=w, height=h, encoding=enc, time_base_ns=base, seq=draw(seq))
    _stamp(m, draw(sec), draw(nsec))
    kind = draw(st.sampled_from(["valid", "random", "truncated", "empty", "big"]))
    if kind == "random":
        m.events = draw(st.binary(max_size=500))
    elif kind == "empty":
        m.events = b""
    elif kind == "big":
        m.events = bytes(10 * 6001)  # above the fixture's max_events / max_message_bytes caps
    else:
        n = draw(st.integers(1, 300))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        ev = np.zeros(n, EVENT_DTYPE)
        ev["t"] = np.sort(rng.integers(0, draw(st.sampled_from([1, 10**6, 10**9, 4 * 10**12])), n))
        ev["x"], ev["y"] = rng.integers(0, 400, n), rng.integers(0, 300, n)
        ev["p"] = rng.integers(0, 2, n)
        raw = encode_evt3(ev) if enc == "evt3" else encode_xytp(ev, 0)
        m.events = raw[:-draw(st.integers(1, 9))] if kind == "truncated" and len(raw) > 9 else raw
    return m


def test_dvs_encoder_callback_fuzz(rclpy_context, ros_msgs):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode

    node = DvsEncoderNode(context=rclpy_context, parameter_overrides=[
        Parameter("max_message_bytes", value=60_000), Parameter("encoder.max_events", value=5000)])
    try:
        out = fuzz_node(node, event_msgs(), 8)
        assert out.accepted > 0 and out.rejected > 0, (out.accepted, out.rejected, node.rejections.snapshot())
        assert {"bad_encoding", "oversized", "bad_shape"} <= out.reasons, out.reasons
    finally:
        node.destroy_node()


# --- imu -----------------------------------------------------------------------------------------

@st.composite
def imu_msgs(draw):
    from sensor_msgs.msg import Imu

    m = Imu()
    _stamp(m, draw(sec), draw(nsec))
    vals = [draw(st.floats(-100, 100)) for _ in range(6)]
    if draw(st.booleans()):  # half the messages carry NaN/inf/huge values somewhere
        vals[draw(st.integers(0, 5))] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308]))
    m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = vals[:3]
    m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = vals[3:]
    m.linear_acceleration_covariance[0] = draw(st.sampled_from([-1.0, 0.0, 0.5]))
    m.angular_velocity_covariance[0] = draw(st.sampled_from([-1.0, 0.0, 0.5]))
    return m


def test_imu_encoder_callback_fuzz(rclpy_context, ros_msgs):
    from snn_fusion_ros.ros.imu_encoder_node import ImuEncoderNode

    node = ImuEncoderNode(context=rclpy_context)
    try:
        out = fuzz_node(node, imu_msgs(), 10)
        assert out.accepted > 0 and out.rejected > 0, (out.accepted, out.rejected)
    finally:
        node.destroy_node()


# --- fusion --------------------------------------------------------------------------------------

SIZES = {"audio": 8, "dvs": 16, "imu": 6}


@st.composite
def spike_msgs(draw):
    from snn_fusion_ros.msg import SpikeTrain
    from snn_fusion_ros.spikes import pack_spikes

    modality = draw(st.sampled_from(["audio", "dvs", "imu", "lidar", ""]))
    encoding = draw(st.sampled_from(["dense_bits", "sparse_u32", "rle"]))
    kind = draw(st.sampled_from(["valid", "valid", "wrong_size", "random", "huge"]))
    steps, neurons = 10, SIZES.get(modality, 4)
    if kind == "wrong_size":
        steps, neurons = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    elif kind == "huge":
        steps, neurons = draw(st.integers(1, 2**32 - 1)), draw(st.integers(1, 2**32 - 1))
    k = draw(st.one_of(st.integers(0, 40), st.integers(0, 2**33)))
    m = SpikeTrain(modality=modality, num_neurons=neurons, num_steps=steps, encoding=encoding,
                   step_ns=draw(st.sampled_from([5_000_000, 0, 1, 2**64 - 1])), seq=draw(seq))
    _stamp(m, *divmod((k + 1) * W, 10**9)) if draw(st.booleans()) else _stamp(m, draw(sec), draw(nsec))
    if kind == "random":
        m.data = draw(st.binary(max_size=64))
    elif steps * neurons <= 4096:
        rng = np.random.default_rng(k)
        m.data = pack_spikes(rng.random((steps, neurons)) < 0.2, encoding if encoding != "rle" else "dense_bits")
    return m


def test_fusion_callback_fuzz(rclpy_context, ros_msgs, tiny_model):
    """Windows: received == accepted by the aligner + rejected at input; fused windows released by the
    aligner are all classified or rejected by the backend chain (a window whose sizes do not fit the
    model is refused there as bad_shape)."""
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    node = FusionNode(context=rclpy_context, parameter_overrides=[Parameter("model_path", value=str(tiny_model))])
    accepted = {"n": 0}
    record = node.rejections.record
    at_classify = {"on": False, "rejected": 0}
    input_rejected = []

    def rec(exc):
        assert exc.reason in REASONS, exc
        if at_classify["on"]:
            at_classify["rejected"] += 1
        else:
            input_rejected.append(exc.reason)
        return record(exc)

    node.rejections.record = rec
    inner_classify = node._classify

    def classify(fused):
        at_classify["on"] = True
        try:
            return inner_classify(fused)
        finally:
            at_classify["on"] = False

    node._classify = classify
    inner_push = node.aligner.push

    def push(window, now_ns):
        out = inner_push(window, now_ns)
        accepted["n"] += 1
        return out

    node.aligner.push = push

    @SETTINGS
    @given(msgs=st.lists(spike_msgs(), min_size=1, max_size=12))
    def run(msgs):
        for m in msgs:
            _call(node._on_spikes, m)
        node._poll()

    try:
        run()
        assert node.received == accepted["n"] + len(input_rejected), (
            node.received, accepted["n"], len(input_rejected))
        assert accepted["n"] > 0 and input_rejected, (accepted["n"], input_rejected)
        assert node.aligner.released == node.fused + at_classify["rejected"], (
            node.aligner.released, node.fused, at_classify["rejected"])
        assert node.fused > 0, "nothing was ever classified"
        assert {"unknown_modality", "bad_shape", "out_of_range"} <= set(input_rejected), set(input_rejected)
        node.updater.update()  # diagnostics over whatever state the fuzzing left: must not raise
    finally:
        node.chain.close()
        node.destroy_node()


def test_fusion_window_with_negative_stamp_is_rejected_not_raised(rclpy_context, ros_msgs, tiny_model):
    """Found by the fuzzer: a window stamped before the epoch (Time.sec is int32) was aligned and
    classified, then ns_to_stamp raised ValueError out of _on_spikes. Now refused as out_of_range."""
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.convert import spike_window_to_msg
    from snn_fusion_ros.ros.fusion_node import FusionNode
    from snn_fusion_ros.spikes import SpikeWindow

    node = FusionNode(context=rclpy_context, parameter_overrides=[Parameter("model_path", value=str(tiny_model))])
    try:
        for m, n in SIZES.items():
            msg = spike_window_to_msg(SpikeWindow(m, np.zeros((10, n), bool), W, 5_000_000, 0))
            msg.header.stamp.sec = -1
            _call(node._on_spikes, msg)
        assert node.fused == 0 and node.rejections.snapshot() == {"out_of_range": 3}, node.rejections.snapshot()
    finally:
        node.chain.close()
        node.destroy_node()


def test_dvs_packet_with_zero_width_does_not_end_the_stream(rclpy_context, ros_msgs):
    """Found by the load test: an EventArray with width 0 between valid packets flushed the open window
    (a resolution "change"), so every valid window went out twice - an empty copy first, which fusion
    then aligned instead of the real one. The same windows must come out as without it."""
    from rclpy.parameter import Parameter

    from snn_fusion_ros.bench import soak
    from snn_fusion_ros.msg import EventArray
    from snn_fusion_ros.ros.convert import ns_to_stamp
    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode

    class Feed:  # what Player.play_window publishes on 'events' goes straight into the callback
        def __init__(self, node):
            self.publish = node._on_input

    def run(junk: bool):
        node = DvsEncoderNode(context=rclpy_context, parameter_overrides=[Parameter("encoder.ba_filter", value=False)])
        out = []
        node.publish_windows = lambda ws, frame_id="": out.extend((w.stamp_ns, int(w.spikes.sum())) for w in ws)
        player = soak.Player.__new__(soak.Player)
        player.pub_audio = player.pub_imu = type("Sink", (), {"publish": lambda self, m: None})()
        player.pub_events, player.dvs_events = Feed(node), 400
        player.sent, player.published_wall = {"audio": 0, "events": 0, "imu": 0}, {}
        for k in range(6):
            if junk and k:
                m = EventArray(width=0, height=96, encoding="xytp", time_base_ns=soak.T0, seq=(1 << 40) + k)
                m.header.stamp = ns_to_stamp(soak.T0 + (k - 1) * soak.W_NS)
                m.events = bytes(100)
                node._on_input(m)
            player.play_window(k)
        counts = node.rejection_counts()
        node.destroy_node()
        return out, counts

    clean, _ = run(False)
    noisy, counts = run(True)
    assert len(clean) == 6 and all(n > 0 for _, n in clean), clean
    assert noisy == clean
    assert counts == {"bad_shape": 5}, counts


def test_encoder_rejection_totals_survive_stream_restart_and_reconfigure(rclpy_context, ros_msgs):
    """Found by the fuzzer: a stream restart (sensor time jumping back) and an encoder reconfigure
    replaced the encoder together with its rejection counter, so the totals in diagnostics went down
    and the next rejection looked like none."""
    from rclpy.parameter import Parameter

    from snn_fusion_ros.codecs.layout import EVENT_DTYPE
    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.msg import EventArray
    from snn_fusion_ros.ros.convert import ns_to_stamp
    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode

    node = DvsEncoderNode(context=rclpy_context)

    def packet(stamp_ns: int, seq: int) -> EventArray:
        ev = np.zeros(3, EVENT_DTYPE)
        ev["t"] = stamp_ns - 1000
        ev["x"] = [1, 2, 70]  # 70 is outside the 64 x 64 sensor: counted by the encoder core
        m = EventArray(width=64, height=64, encoding="xytp", time_base_ns=0, seq=seq)
        m.header.stamp = ns_to_stamp(stamp_ns)
        m.events = encode_xytp(ev, 0)
        return m

    try:
        node._on_input(packet(5 * 10**9, 0))
        assert node.rejection_counts() == {"out_of_range": 1}
        node._on_input(packet(2 * 10**9, 1))  # 3 s back in sensor time: a new stream
        assert node.stream_restarts == 1
        assert node.rejection_counts() == {"out_of_range": 2}
        old = node.encoder
        assert node.set_parameters([Parameter("encoder.refractory_us", value=500.0)])[0].successful
        assert node.encoder is not old  # reconfigured: a new encoder
        node._on_input(packet(2 * 10**9 + 10**7, 2))
        assert node.rejection_counts() == {"out_of_range": 3}
    finally:
        node.destroy_node()
