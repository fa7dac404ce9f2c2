"""Property-based fuzzing of the decoders, the encoder cores and the message conversions (no DDS).

Invariant everywhere: adversarial input either decodes/encodes into well-formed output or raises
:class:`InputRejected` with a documented reason - never another exception, never a hang (pytest-timeout
bounds every test), never a silent drop (encoder counters reconcile). Examples are the same on every
run unless ``SNN_FUSION_FUZZ_EXPLORE=1`` (``test/conftest.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.errors import REASONS, InputRejected

pytestmark = pytest.mark.unit

FAST = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
INT64_MAX = np.iinfo(np.int64).max


def check_rejected(exc: InputRejected) -> None:
    assert exc.reason in REASONS, exc


def events_ok(ev: np.ndarray) -> None:
    assert ev.dtype == EVENT_DTYPE, ev.dtype
    assert ev.ndim == 1
    assert set(np.unique(ev["p"]).tolist()) <= {0, 1}


# --- codecs ------------------------------------------------------------------------------------

@FAST
@given(payload=st.binary(max_size=400), time_base=st.integers(0, 2**62))
def test_decode_xytp_decodes_or_rejects_bad_length(payload, time_base):
    from snn_fusion_ros.codecs.xytp import decode_xytp

    try:
        ev = decode_xytp(payload, time_base)
    except InputRejected as exc:
        assert exc.reason == "bad_length" and len(payload) % 10, exc
        return
    assert len(payload) % 10 == 0 and ev.size == len(payload) // 10
    events_ok(ev)
    assert (ev["t"] >= time_base).all()


@FAST
@given(chunks=st.lists(st.binary(max_size=300), min_size=1, max_size=6), time_base=st.integers(0, 2**60))
def test_evt3_decoder_survives_random_streams_and_is_chunk_invariant(chunks, time_base):
    """Any byte stream decodes (unknown words skipped and counted), and the result does not depend on
    how the stream is cut into chunks (the decoder carries an odd byte and its time state)."""
    from snn_fusion_ros.codecs.evt3 import Evt3Decoder

    dec = Evt3Decoder(time_base)
    parts = [dec.decode(c) for c in chunks]
    for p in parts:
        events_ok(p)
    whole = Evt3Decoder(time_base).decode(b"".join(chunks))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert dec.pending_bytes == sum(map(len, chunks)) % 2


@FAST
@given(data=st.data())
def test_evt3_mutated_valid_stream_never_crashes(data):
    from snn_fusion_ros.codecs.evt3 import Evt3Decoder, encode_evt3

    n = data.draw(st.integers(1, 200))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 10**10, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 2048, n), rng.integers(0, 2048, n), rng.integers(0, 2, n)
    raw = bytearray(encode_evt3(ev))
    for _ in range(data.draw(st.integers(1, 20))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    out = Evt3Decoder().decode(bytes(raw[:cut]))
    events_ok(out)
    assert out.size <= 12 * (cut // 2)  # a vector word carries at most 12 events


def _mutate(data: bytes, draw) -> bytes:
    raw = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "truncate":
        return bytes(raw[:draw(st.integers(0, len(raw)))])
    if kind == "splice":
        at = draw(st.integers(0, len(raw)))
        return bytes(raw[:at] + draw(st.binary(min_size=1, max_size=64)) + raw[at:])
    for _ in range(draw(st.integers(1, 16))):
        # mostly the header and the first packets, where the structure lives
        pos = draw(st.integers(0, min(len(raw) - 1, 4096)))
        raw[pos] = draw(st.integers(0, 255))
    return bytes(raw)


@pytest.fixture(scope="module")
def small_recordings(shared_events, tmp_path_factory) -> dict[str, bytes]:
    """The first bytes of each real recording (enough for headers and several packets)."""
    out = {}
    for name in ("davis346.aedat4", "dvs.es", "evt3.raw"):
        p = shared_events / name
        if p.is_file():
            out[name] = p.read_bytes() if name != "evt3.raw" else p.read_bytes()[:200_000]
    if not out:
        pytest.skip(f"no recordings in {shared_events}")
    return out


def _read_mutated(recordings, name: str, reader, tmp_path: Path, draw, end: int, keep: int = 0):
    """Read recording ``name`` with its bytes ``[keep, end)`` mutated (the first ``keep`` intact):
    the reader's result, or None after a clear rejection."""
    blob = recordings.get(name)
    if blob is None:
        pytest.skip(f"{name} absent")
    path = tmp_path / f"m{Path(name).suffix}"
    path.write_bytes(blob[:keep] + _mutate(blob[keep:end], draw))
    try:
        return reader(path)
    except InputRejected as exc:
        check_rejected(exc)
        assert exc.reason in ("bad_encoding", "corrupt", "bad_length", "bad_shape"), exc
        return None


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_aedat4_reader_on_mutated_real_file(data, small_recordings, tmp_path):
    from snn_fusion_ros.codecs.aedat4 import read_aedat4

    res = _read_mutated(small_recordings, "davis346.aedat4", read_aedat4, tmp_path, data.draw, 300_000)
    if res is not None:
        ev, imu, _w, _h = res
        events_ok(ev)
        assert imu["t_ns"].shape[0] == imu["accel"].shape[0]


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_es_reader_on_mutated_real_file(data, small_recordings, tmp_path):
    from snn_fusion_ros.codecs.es import read_es

    res = _read_mutated(small_recordings, "dvs.es", read_es, tmp_path, data.draw, 200_000)
    if res is not None:
        ev, w, h = res
        events_ok(ev)
        if ev.size:  # the reader promises coordinates inside the declared size (else 'corrupt')
            assert int(ev["x"].max()) < w and int(ev["y"].max()) < h


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_evt3_file_reader_on_mutated_real_file(data, small_recordings, tmp_path):
    from snn_fusion_ros.codecs.evt3 import parse_raw_header, read_evt3_file

    blob = small_recordings.get("evt3.raw")
    # the payload only: a damaged header raises InputRejected (tested below)
    start = parse_raw_header(blob)[1] if blob is not None else 0
    res = _read_mutated(small_recordings, "evt3.raw", read_evt3_file, tmp_path, data.draw, 50_000, keep=start)
    if res is not None:
        events_ok(res[0])


# --- spike windows -----------------------------------------------------------------------------

@FAST
@given(data=st.binary(max_size=200), steps=st.integers(-3, 40), neurons=st.integers(-3, 40),
       encoding=st.sampled_from(["dense_bits", "sparse_u32", "", "dense", "sparse_u32\x00"]))
def test_unpack_spikes_shapes_or_rejects(data, steps, neurons, encoding):
    from snn_fusion_ros.spikes import unpack_spikes

    try:
        s = unpack_spikes(data, steps, neurons, encoding)
    except InputRejected as exc:
        assert exc.reason in ("bad_shape", "bad_length", "out_of_range", "bad_encoding"), exc
        return
    assert s.shape == (steps, neurons) and s.dtype == np.bool_


@FAST
@given(spikes=hnp.arrays(np.bool_, st.tuples(st.integers(1, 20), st.integers(1, 70))),
       encoding=st.sampled_from(["dense_bits", "sparse_u32"]))
def test_pack_unpack_roundtrip(spikes, encoding):
    from snn_fusion_ros.spikes import pack_spikes, unpack_spikes

    np.testing.assert_array_equal(unpack_spikes(pack_spikes(spikes, encoding), *spikes.shape, encoding), spikes)


# --- encoder cores -----------------------------------------------------------------------------

finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@pytest.fixture(scope="module")
def audio_encoder():
    from snn_fusion_ros.encoders.audio import AudioEncoder, AudioEncoderConfig

    return AudioEncoder(AudioEncoderConfig())


@SLOW
@given(samples=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=700),
                          elements=finite_or_not.map(lambda v: v if not (math.isfinite(v) and abs(v) > 1e6) else 1e6)),
       dtype=st.sampled_from([np.float32, np.float64, np.int16]),
       rate=st.sampled_from([0, -1, 8000, 16000, 44100, 48000]),
       jump_ns=st.integers(-10**10, 10**10))
def test_audio_encoder_push_encodes_or_rejects(audio_encoder, samples, dtype, rate, jump_ns):
    enc = audio_encoder
    samples = (np.clip(np.nan_to_num(samples, posinf=0, neginf=0), -32768, 32767).astype(dtype)
               if dtype is np.int16 else samples.astype(dtype))
    stamp = max(0, (enc._last_end_ns or 10**12) + jump_ns)
    before = enc.rejections.total
    try:
        windows = enc.push(samples, rate, stamp)
    except InputRejected as exc:
        check_rejected(exc)
        assert enc.rejections.total == before + 1, "a refused chunk must be counted exactly once"
        return
    for w in windows:
        assert w.spikes.shape == (10, enc.num_neurons) and w.stamp_ns % (50 * 10**6) == 0
    seqs = [w.seq for w in windows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


@pytest.fixture(scope="module")
def dvs_encoder():
    from snn_fusion_ros.encoders.dvs import DvsEncoder, DvsEncoderConfig

    return DvsEncoder(DvsEncoderConfig(max_events=5000))


@SLOW
@given(n=st.integers(0, 6000), width=st.integers(-1, 400), height=st.integers(-1, 300),
       t0=st.integers(0, 2**40), spread=st.integers(0, 10**10), unsorted=st.booleans(), seed=st.integers(0, 99))
def test_dvs_encoder_push_encodes_or_rejects(dvs_encoder, n, width, height, t0, spread, unsorted, seed):
    """Adversarial packets: empty, over the cap, zero/negative sensor sizes, coordinates up to 65535,
    out-of-order times, huge time jumps (the grid skips ahead after max_gap_windows)."""
    enc = dvs_encoder
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = t0 + rng.integers(0, spread + 1, n)
    if not unsorted:
        ev["t"].sort()
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 65536, n), rng.integers(0, 65536, n), rng.integers(0, 2, n)
    from snn_fusion_ros.codecs.xytp import validate_events

    before = enc.rejections.total
    try:
        if width > 0 and height > 0:
            ev, _ = validate_events(ev, width, height)
        windows = enc.push(ev, width, height)
    except InputRejected as exc:
        check_rejected(exc)
        assert enc.rejections.total >= before + (0 if exc.reason == "bad_shape" and n else 1)
        return
    for w in windows:
        assert w.spikes.shape == (10, enc.num_neurons)
    assert len(windows) <= enc.config.max_gap_windows + 2 + (spread // (50 * 10**6) + 2)


@pytest.fixture(scope="module")
def imu_encoder():
    from snn_fusion_ros.encoders.imu import ImuEncoder, ImuEncoderConfig

    return ImuEncoder(ImuEncoderConfig())


@SLOW
@given(data=st.data())
def test_imu_encoder_push_every_sample_encoded_or_counted(imu_encoder, data):
    """received == accepted + counted (non_finite / time_backwards) + absent (all-NaN rows, REP-145)."""
    enc = imu_encoder
    n = data.draw(st.integers(0, 60))
    base = data.draw(st.integers(0, 2**50))
    stamps = np.array(data.draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)), np.int64) + base
    rows = hnp.arrays(np.float64, (n, 3), elements=st.one_of(
        st.floats(-1e4, 1e4), st.just(float("nan")), st.just(float("inf"))))
    accel = data.draw(st.one_of(st.none(), rows))
    gyro = data.draw(st.one_of(st.none(), rows))
    st0, rej0 = dict(enc.stats.snapshot()), enc.rejections.total
    try:
        windows = enc.push(stamps, accel, gyro)
    except InputRejected as exc:
        check_rejected(exc)
        assert exc.reason in ("empty", "bad_shape")
        return
    s = enc.stats.snapshot()
    accepted = s["accepted"] - st0["accepted"]
    counted = enc.rejections.total - rej0

    def absent(a):
        return np.ones(n, bool) if a is None else np.isnan(a).all(axis=1)

    both_absent = int((absent(accel) & absent(gyro)).sum())
    # a row counted as non_finite may also be entirely absent on the other sensor; the identity
    # holds as an upper/lower bound pair: nothing is lost, nothing is counted twice.
    assert accepted + counted <= n, (accepted, counted, n)
    assert accepted + counted + both_absent >= n, (accepted, counted, both_absent, n)
    for w in windows:
        assert w.spikes.shape == (10, enc.num_neurons)


# --- message conversions -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def msgs():
    pytest.importorskip("snn_fusion_ros.msg", reason="snn_fusion_ros.msg not built: run through make pytest")
    import snn_fusion_ros.msg as m

    return m


stamp_sec = st.integers(-2**31, 2**31 - 1)
stamp_nsec = st.integers(0, 2**32 - 1)


@FAST
@given(fmt=st.sampled_from(["S16LE", "F32LE", "s16le", "", "U8", "F64LE"]), channels=st.integers(0, 9),
       rate=st.integers(0, 2**32 - 1), payload=st.binary(max_size=256), sec=stamp_sec, nsec=stamp_nsec,
       cap=st.integers(1, 300), poison=st.sampled_from([None, np.nan, np.inf, -np.inf]))
def test_msg_to_audio_converts_or_rejects(msgs, fmt, channels, rate, payload, sec, nsec, cap, poison):
    from snn_fusion_ros.ros.convert import msg_to_audio

    m = msgs.AudioFrame(sample_rate_hz=rate, channels=channels, sample_format=fmt)
    m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
    raw = bytearray(payload)
    if poison is not None and fmt == "F32LE" and len(raw) >= 4:
        raw[:4] = np.float32(poison).tobytes()
    m.data = bytes(raw)
    try:
        c = msg_to_audio(m, cap)
    except InputRejected as exc:
        assert exc.reason in ("bad_encoding", "bad_shape", "empty", "oversized", "bad_length", "non_finite"), exc
        return
    assert c.samples.dtype == np.float32 and c.samples.shape[1] == channels
    assert np.isfinite(c.samples).all() and np.abs(c.samples).max() <= 1.0 + (fmt == "F32LE") * 1e38
    assert poison is None or fmt != "F32LE" or len(raw) < 4


@FAST
@given(vals=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=6, max_size=6),
       cov_a=st.sampled_from([-1.0, 0.0, 1.0, float("nan")]), cov_g=st.sampled_from([-1.0, 0.0, 1.0]),
       sec=stamp_sec, nsec=stamp_nsec)
def test_msg_to_imu_converts_or_rejects(vals, cov_a, cov_g, sec, nsec):
    pytest.importorskip("sensor_msgs.msg")
    from sensor_msgs.msg import Imu

    from snn_fusion_ros.ros.convert import msg_to_imu

    m = Imu()
    m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
    m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = vals[:3]
    m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = vals[3:]
    m.linear_acceleration_covariance[0], m.angular_velocity_covariance[0] = cov_a, cov_g
    try:
        s = msg_to_imu(m)
    except InputRejected as exc:
        assert exc.reason in ("non_finite", "empty"), exc
        return
    for v, cov in ((s.accel, cov_a), (s.gyro, cov_g)):
        assert np.isnan(v).all() if cov == -1.0 else np.isfinite(v).all()


@FAST
@given(modality=st.sampled_from(["audio", "dvs", "imu", "lidar", ""]), steps=st.integers(0, 2**32 - 1),
       neurons=st.integers(0, 2**32 - 1), step_ns=st.integers(0, 2**64 - 1),
       encoding=st.sampled_from(["dense_bits", "sparse_u32", "gzip"]), payload=st.binary(max_size=64),
       small=st.booleans(), sec=stamp_sec, nsec=stamp_nsec, seq=st.integers(0, 2**64 - 1))
def test_msg_to_spike_window_converts_or_rejects(msgs, modality, steps, neurons, step_ns, encoding, payload, small,
                                                 sec, nsec, seq):
    from snn_fusion_ros.ros.convert import msg_to_spike_window

    if small:  # sizes that can match the payload, so the accepting path is exercised too
        steps, neurons = steps % 12, neurons % 12
    m = msgs.SpikeTrain(modality=modality, num_neurons=neurons, num_steps=steps, step_ns=step_ns, encoding=encoding,
                        seq=seq)
    m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
    m.data = payload
    try:
        w = msg_to_spike_window(m, max_cells=1 << 16)
    except InputRejected as exc:
        assert exc.reason in ("unknown_modality", "bad_shape", "oversized", "bad_length", "out_of_range",
                              "bad_encoding"), exc
        return
    assert w.spikes.shape == (steps, neurons) and w.modality == modality


@FAST
@given(sec=stamp_sec, nsec=stamp_nsec)
def test_stamp_roundtrip_or_refused(sec, nsec):
    """Time stamps from the wire: negative seconds (int32) and nanosec >= 1e9 are legal message values."""
    from builtin_interfaces.msg import Time

    from snn_fusion_ros.ros.convert import ns_to_stamp, stamp_to_ns

    ns = stamp_to_ns(Time(sec=sec, nanosec=nsec))
    assume(ns >= 0)
    back = ns_to_stamp(ns)
    assert stamp_to_ns(back) == ns and back.nanosec < 10**9


def test_recordings_fixture_is_not_vacuous(shared_events):
    """The mutated-file fuzzers above only mean something when the real files are readable."""
    from snn_fusion_ros.codecs.es import read_es

    p = shared_events / "dvs.es"
    if not p.is_file():
        pytest.skip("dvs.es absent")
    ev, w, h = read_es(p)
    assert ev.size > 0 and w > 0 and h > 0


# --- absurd sizes from the wire are refused by the cores themselves, not only by the nodes ----

def test_audio_encoder_refuses_absurd_sample_rate():
    from snn_fusion_ros.encoders.audio import AudioEncoder

    with pytest.raises(InputRejected):
        AudioEncoder().push(np.zeros(10, np.float32), 2**32 - 1, 0)


def test_dvs_encoder_refuses_absurd_sensor_size():
    from snn_fusion_ros.encoders.dvs import DvsEncoder

    with pytest.raises(InputRejected):
        DvsEncoder().push(np.zeros(3, EVENT_DTYPE), 2**32 - 1, 64)


def test_evt3_file_reader_refuses_truncated_header_with_input_rejected(shared_events, tmp_path):
    from snn_fusion_ros.codecs.evt3 import read_evt3_file

    src = shared_events / "evt3.raw"
    if not src.is_file():
        pytest.skip("evt3.raw absent")
    path = tmp_path / "cut.raw"
    path.write_bytes(src.read_bytes()[:33])  # inside the '% evt 3.0' line
    with pytest.raises(InputRejected):
        read_evt3_file(path)
