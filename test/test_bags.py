"""Bags without DDS: type registration, writing from real recordings and synthetic fused streams, exact
read-back, and damaged bags (truncated, corrupt chunk, missing metadata)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from snn_fusion_ros.bags.reader import BagReader, read_all
from snn_fusion_ros.bags.types import BagError, from_cdr, rclpy_class, to_cdr, type_name, typestore
from snn_fusion_ros.bags.writer import (
    AUDIO_FRAME,
    EVENT_ARRAY,
    GROUND_TRUTH_TOPIC,
    IMU,
    STRING,
    RecordingOptions,
    label_msg,
    parse_label,
    recording_streams,
    write_streams,
)

pytestmark = pytest.mark.unit


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


# ---------------------------------------------------------------- types
def test_typestore_knows_own_and_standard_types(ros_msgs):
    store = typestore()
    for name in ("snn_fusion_ros/msg/EventArray", "snn_fusion_ros/msg/AudioFrame", "snn_fusion_ros/msg/SpikeTrain",
                 "snn_fusion_ros/msg/Classification", IMU, "diagnostic_msgs/msg/DiagnosticArray",
                 "rosgraph_msgs/msg/Clock", STRING):
        assert name in store.types, name
    assert rclpy_class(EVENT_ARRAY) is ros_msgs.EventArray
    assert type_name(ros_msgs.AudioFrame()) == AUDIO_FRAME
    with pytest.raises(LookupError, match="nope_msgs/msg/Thing"):
        rclpy_class("nope_msgs/msg/Thing")


def test_rclpy_cdr_matches_the_registered_msg_definitions(ros_msgs):
    """rclpy's CDR bytes deserialise with rosbags' definitions from msg/ (the schema in bags is right)."""
    from snn_fusion_ros.ros.convert import audio_to_msg, events_to_msg

    ev = events_to_msg(bytes(range(30)), encoding="xytp", width=346, height=260, time_base_ns=7, stamp_ns=12345,
                       seq=9, frame_id="cam")
    raw = to_cdr(ev)
    got = typestore().deserialize_cdr(raw, EVENT_ARRAY)
    assert (got.width, got.height, got.encoding, got.time_base_ns, got.seq) == (346, 260, "xytp", 7, 9)
    assert got.header.frame_id == "cam" and got.header.stamp.nanosec == 12345
    assert bytes(got.events) == bytes(range(30))
    # and the other way (padding bytes may differ, the fields may not)
    again = from_cdr(bytes(typestore().serialize_cdr(got, EVENT_ARRAY)), EVENT_ARRAY)
    assert again == from_cdr(raw, EVENT_ARRAY)
    back = from_cdr(raw, EVENT_ARRAY)
    assert bytes(back.events) == bytes(range(30)) and back.seq == 9

    au = audio_to_msg(np.linspace(-1, 1, 160), 16000, 10**9, 3)
    got = typestore().deserialize_cdr(to_cdr(au), AUDIO_FRAME)
    assert (got.sample_rate_hz, got.channels, got.sample_format, got.seq) == (16000, 1, "S16LE", 3)
    assert bytes(got.data) == bytes(au.data)


# ---------------------------------------------------------------- real recordings
def _decode_bag_events(path: Path):
    from snn_fusion_ros.codecs.xytp import decode_xytp

    msgs = [from_cdr(raw, EVENT_ARRAY) for _, _, _, raw in read_all(path, {"/events"})]
    events = np.concatenate([decode_xytp(bytes(m.events), m.time_base_ns) for m in msgs])
    return msgs, events


def test_davis346_first_half_second_round_trip(shared_events, tmp_path, ros_msgs):
    from snn_fusion_ros.codecs.aedat4 import read_aedat4

    ev, imu, width, height = read_aedat4(shared_events / "davis346.aedat4")
    counts = write_streams(tmp_path / "bag", recording_streams(
        shared_events / "davis346.aedat4", RecordingOptions(packet_ms=10, max_duration_s=0.5)))
    end = int(ev["t"][0]) + 500_000_000
    ref = ev[ev["t"] < end]
    ref_imu_t = imu["t_ns"][imu["t_ns"] < end]
    assert counts == {"/events": len(np.unique(ref["t"] // 10_000_000)), "/imu": ref_imu_t.size}

    msgs, got = _decode_bag_events(tmp_path / "bag")
    assert got.size == ref.size
    np.testing.assert_array_equal(got["t"] // 1000, ref["t"] // 1000)  # xytp carries microseconds
    np.testing.assert_array_equal(got[["x", "y", "p"]], ref[["x", "y", "p"]])
    assert stamp_ns(msgs[0]) == ref["t"][np.flatnonzero(ref["t"] // 10_000_000 == ref["t"][0] // 10_000_000)[-1]]
    assert stamp_ns(msgs[-1]) == ref["t"][-1]
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    assert all(m.width == width and m.height == height and m.encoding == "xytp" for m in msgs)

    bag = read_all(tmp_path / "bag")
    log_times = [t for _, _, t, _ in bag]
    assert log_times == sorted(log_times)
    imu_msgs = [(t, from_cdr(raw, IMU)) for topic, _, t, raw in bag if topic == "/imu"]
    assert [t for t, _ in imu_msgs] == ref_imu_t.tolist()  # bag time == sensor time (no offset)
    first = imu_msgs[0][1]
    assert stamp_ns(first) == ref_imu_t[0]
    assert first.orientation_covariance[0] == -1.0  # REP-145: orientation absent
    np.testing.assert_allclose([first.angular_velocity.x, first.angular_velocity.y, first.angular_velocity.z],
                               imu["gyro"][0])
    np.testing.assert_allclose([first.linear_acceleration.x, first.linear_acceleration.y,
                                first.linear_acceleration.z], imu["accel"][0])
    with BagReader(tmp_path / "bag") as reader:
        assert reader.topics["/events"].type_name == EVENT_ARRAY
        assert reader.topics["/imu"].qos[0].reliability.name == "BEST_EFFORT"


def test_evt3_raw_packets_carry_the_exact_words(shared_events, tmp_path, ros_msgs):
    from snn_fusion_ros.codecs.evt3 import Evt3Decoder, parse_raw_header, read_evt3_file

    data = (shared_events / "evt3.raw").read_bytes()
    _, offset = parse_raw_header(data)
    ref, width, height = read_evt3_file(shared_events / "evt3.raw")
    write_streams(tmp_path / "bag", recording_streams(shared_events / "evt3.raw", RecordingOptions(packet_ms=10)),
                  storage="sqlite3")
    msgs = [from_cdr(raw, EVENT_ARRAY) for *_, raw in read_all(tmp_path / "bag")]
    payload = b"".join(bytes(m.events) for m in msgs)
    assert payload == data[offset:offset + (len(data) - offset) // 2 * 2]
    dec = Evt3Decoder(0)
    got = np.concatenate([dec.decode(bytes(m.events)) for m in msgs])
    np.testing.assert_array_equal(got, ref)
    stamps = [stamp_ns(m) for m in msgs]
    assert stamps == sorted(stamps) and stamps[-1] == ref["t"][-1]
    assert all(m.encoding == "evt3" and (m.width, m.height) == (width, height) for m in msgs)


def test_event_stream_file_round_trip(shared_events, tmp_path, ros_msgs):
    from snn_fusion_ros.codecs.es import read_es

    ref, _, _ = read_es(shared_events / "dvs.es")
    write_streams(tmp_path / "bag", recording_streams(shared_events / "dvs.es", RecordingOptions(packet_ms=50)))
    _, got = _decode_bag_events(tmp_path / "bag")
    np.testing.assert_array_equal(got, ref)


def test_unknown_recording_suffix_is_a_bag_error(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(BagError, match=r"\.wav"):
        list(recording_streams(tmp_path / "x.wav"))


# ---------------------------------------------------------------- synthetic fused bag
T0 = 1_700_000_000_000_000_000


def fused_items(seconds: float = 1.0):
    """Audio 10 ms chunks, 10 ms xytp event packets, 200 Hz IMU, one label per 0.5 s; sorted by stamp."""
    from snn_fusion_ros.codecs.layout import EVENT_DTYPE
    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.ros.convert import audio_to_msg, events_to_msg, imu_to_msg

    rng = np.random.default_rng(5)
    items = []
    n10 = int(seconds * 100)
    for k in range(n10):
        t = T0 + k * 10_000_000
        items.append(("/audio", AUDIO_FRAME, t, audio_to_msg(rng.uniform(-1, 1, 160), 16000, t, k)))
        ev = np.zeros(200, EVENT_DTYPE)
        ev["t"] = t + np.sort(rng.integers(0, 10_000, 200)) * 1000
        ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, 200), rng.integers(0, 128, 200), rng.integers(0, 2, 200)
        stamp = int(ev["t"][-1])
        items.append(("/events", EVENT_ARRAY, stamp, events_to_msg(encode_xytp(ev, t), encoding="xytp", width=128,
                                                                   height=128, time_base_ns=t, stamp_ns=stamp, seq=k)))
    for k in range(int(seconds * 200)):
        t = T0 + k * 5_000_000
        items.append(("/imu", IMU, t, imu_to_msg(t, rng.normal(size=3), rng.normal(size=3))))
    for k in range(int(seconds * 2)):
        start = T0 + k * 500_000_000
        items.append((GROUND_TRUTH_TOPIC, STRING, start, label_msg(f"word{k}", start, start + 500_000_000)))
    items.sort(key=lambda it: it[2])
    return items


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synthetic_fused_bag_reads_back_exactly(tmp_path, storage, ros_msgs):
    items = fused_items()
    counts = write_streams(tmp_path / "fused", items, storage=storage)
    assert counts == {"/audio": 100, "/events": 100, "/imu": 200, GROUND_TRUTH_TOPIC: 2}
    back = read_all(tmp_path / "fused")
    assert len(back) == len(items)
    # every topic in its own order with equal messages (CDR padding bytes are not deterministic in rclpy)
    for topic, tname in (("/audio", AUDIO_FRAME), ("/events", EVENT_ARRAY), ("/imu", IMU),
                         (GROUND_TRUTH_TOPIC, STRING)):
        want = [(t, m) for top, _, t, m in items if top == topic]
        got = [(t, from_cdr(raw, tname)) for top, _, t, raw in back if top == topic]
        assert got == want, topic
    assert [t for _, _, t, _ in back] == sorted(t for _, _, t, _ in items)
    labels = [parse_label(from_cdr(raw, STRING)) for top, _, _, raw in back if top == GROUND_TRUTH_TOPIC]
    assert labels == [{"label": "word0", "start_ns": T0, "end_ns": T0 + 500_000_000},
                      {"label": "word1", "start_ns": T0 + 500_000_000, "end_ns": T0 + 10**9}]
    audio = from_cdr(next(raw for top, _, _, raw in back if top == "/audio"), AUDIO_FRAME)
    assert stamp_ns(audio) == T0 and len(audio.data) == 320


def test_raw_cdr_items_are_stored_byte_for_byte(tmp_path, ros_msgs):
    items = [(top, tn, t, to_cdr(m)) for top, tn, t, m in fused_items(0.2)]
    write_streams(tmp_path / "raw", items)
    assert [(top, tn, t, raw) for top, tn, t, raw in read_all(tmp_path / "raw")] == items


def test_receive_offset_shifts_bag_time_not_stamps(tmp_path, ros_msgs):
    items = fused_items(0.1)
    write_streams(tmp_path / "b", items, receive_offset_ns=2_000_000)
    back = read_all(tmp_path / "b", {"/imu"})
    for (_, _, t, raw) in back:
        assert t == stamp_ns(from_cdr(raw, IMU)) + 2_000_000


def test_writer_refuses_existing_path_and_bad_storage(tmp_path):
    (tmp_path / "b").mkdir()
    with pytest.raises(BagError, match="exists"):
        write_streams(tmp_path / "b", [])
    with pytest.raises(BagError, match="sqlite3"):
        write_streams(tmp_path / "c", [], storage="rosbag1")


def test_label_rejects_bad_span_and_bad_text():
    with pytest.raises(ValueError, match="end_ns"):
        label_msg("x", 10, 5)
    with pytest.raises(ValueError, match="label, start_ns, end_ns"):
        parse_label('{"label": "x"}')


# ---------------------------------------------------------------- damaged bags
@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory, ros_msgs):
    """A ~2.6 MB MCAP bag (three 1 MiB chunks) and its messages."""
    path = tmp_path_factory.mktemp("bags") / "good"
    write_streams(path, fused_items(8.0))
    return path, read_all(path)


def _copy_with(src: Path, dst: Path, data: bytes) -> Path:
    dst.mkdir()
    shutil.copy(src / "metadata.yaml", dst / "metadata.yaml")
    (dst / "good.mcap").write_bytes(data)
    return dst


def _read_until_error(path: Path):
    got = []
    err = None
    try:
        with BagReader(path) as bag:
            for item in bag.messages():
                got.append(item)
    except BagError as exc:
        err = exc
    return got, err


@pytest.mark.parametrize("fraction", [0.0005, 0.2, 0.45, 0.7, 0.95])
def test_truncated_mcap_yields_the_messages_before_the_cut(mcap_bag, tmp_path, fraction):
    path, full = mcap_bag
    data = (path / "good.mcap").read_bytes()
    assert len(data) > 2 * 2**20
    bad = _copy_with(path, tmp_path / "cut", data[:int(len(data) * fraction)])
    got, err = _read_until_error(bad)
    assert err is not None and err.problem == "truncated", err
    assert str(bad) in str(err)
    # file order == log order here, so the readable part is exactly a prefix of the bag
    assert got == full[:len(got)]
    assert err.messages_read == len(got)
    if fraction >= 0.45:
        assert len(got) > 0.3 * len(full)  # whole chunks and complete records of the cut chunk survive
    with pytest.raises(BagError, match="truncated"):
        BagReader(bad, salvage=False)


def test_mcap_cut_inside_the_summary_still_reads_everything(mcap_bag, tmp_path):
    path, full = mcap_bag
    data = (path / "good.mcap").read_bytes()
    bad = _copy_with(path, tmp_path / "cut", data[:-40])
    got, err = _read_until_error(bad)
    assert err is None and got == full


def test_flipped_bytes_inside_a_chunk_are_reported_as_corrupt(mcap_bag, tmp_path):
    path, full = mcap_bag
    data = bytearray((path / "good.mcap").read_bytes())
    # the second chunk: 0x06 record after the first chunk (first one starts right after the header)
    second = data.index(b"\x06", 2**20 + 100)
    while not (data[second] == 0x06 and int.from_bytes(data[second + 1:second + 9], "little") < 2**21
               and data[second - 1] != 0):
        second = data.index(b"\x06", second + 1)
    pos = second + 200_000
    data[pos:pos + 4] = bytes(b ^ 0xFF for b in data[pos:pos + 4])
    bad = _copy_with(path, tmp_path / "flip", bytes(data))
    got, err = _read_until_error(bad)
    assert err is not None and err.problem == "corrupt" and "checksum" in str(err).lower(), err
    assert got == full[:len(got)] and 0 < len(got) < len(full)


def test_sqlite3_bag_without_metadata(tmp_path, ros_msgs):
    path = tmp_path / "sq"
    write_streams(path, fused_items(0.5), storage="sqlite3")
    full = read_all(path)
    (path / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=r"metadata\.yaml is missing") as info:
        BagReader(path, salvage=False)
    assert info.value.problem == "missing_metadata"
    with BagReader(path) as bag:
        assert any("metadata.yaml missing" in w for w in bag.warnings)
        assert set(bag.topics) == {"/audio", "/events", "/imu", GROUND_TRUTH_TOPIC}
        assert list(bag.messages()) == full


def test_metadata_disagreeing_with_the_mcap_channels_still_reads(tmp_path, ros_msgs):
    path = tmp_path / "b"
    write_streams(path, fused_items(0.3))
    full = read_all(path)
    meta = path / "metadata.yaml"
    meta.write_text(meta.read_text().replace("depth: 50", "depth: 5"))  # QoS no longer equal to the channels'
    assert read_all(path) == full


def test_damaged_sqlite3_is_a_bag_error(tmp_path, ros_msgs):
    path = tmp_path / "sq"
    write_streams(path, fused_items(1.0), storage="sqlite3")
    data = (path / "sq.db3").read_bytes()
    (path / "sq.db3").write_bytes(data[:len(data) // 2])
    got, err = _read_until_error(path)
    assert got == [] and err is not None and err.problem == "corrupt" and "malformed" in str(err)


def test_missing_bag_and_empty_directory(tmp_path):
    with pytest.raises(BagError, match="missing"):
        BagReader(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match=r"no metadata\.yaml and no \.mcap/\.db3") as info:
        BagReader(tmp_path / "empty")
    assert info.value.problem == "missing_metadata"


def test_not_an_mcap_file_is_corrupt(tmp_path):
    (tmp_path / "x.mcap").write_bytes(b"hello world, not a bag at all")
    got, err = _read_until_error(tmp_path / "x.mcap")
    assert got == [] and err is not None and err.problem in ("corrupt", "truncated")


# ---------------------------------------------------------------- CLI modules and options
def test_cli_make_writes_a_bag_and_refuses_to_overwrite(shared_events, tmp_path, capsys, ros_msgs):
    from snn_fusion_ros.bags import cli_make

    args = ["-o", str(tmp_path / "b"), "--from-recording", str(shared_events / "dvs.es"), "--max-duration-s", "0.2",
            "--storage", "sqlite3", "--packet-ms", "5"]
    assert cli_make.main(args) == 0
    with BagReader(tmp_path / "b", salvage=False) as bag:
        assert bag.topics["/events"].count and bag.topics["/events"].type_name == EVENT_ARRAY
        span = bag.end_ns - bag.start_ns
    assert 0 < span < 200_000_000
    assert cli_make.main(args) == 1
    assert "exists" in capsys.readouterr().err
    # no data set built in this cache: a clear error naming what to run, exit 1
    assert cli_make.main(["-o", str(tmp_path / "d"), "--from-dataset", "test", "--cache", str(tmp_path / "none")]) == 1
    assert "snn-fusion dataset build" in capsys.readouterr().err


def test_replay_options_and_topic_mapping():
    from snn_fusion_ros.bags import cli_replay
    from snn_fusion_ros.bags.replay import ReplayOptions, output_topic

    opts = ReplayOptions(remap={"/audio": "/mic"}, namespace="/replay")
    assert output_topic("/audio", opts) == "/replay/mic" and output_topic("/imu", opts) == "/replay/imu"
    assert output_topic("/imu", ReplayOptions()) == "/imu"
    for bad, word in (({"rate": 0}, "rate"), ({"start_offset_s": -1}, "start_offset_s"),
                      ({"qos_from": "x"}, "qos_from"), ({"namespace": "rel"}, "namespace")):
        with pytest.raises(ValueError, match=word):
            ReplayOptions(**bad)
    import argparse

    parser = argparse.ArgumentParser()
    cli_replay.add_arguments(parser)
    args = parser.parse_args(["b", "--remap", "/a:=/b", "--remap", "/c:=/d", "--rate", "2", "--topics", "/a", "/c"])
    assert args.remap == [("/a", "/b"), ("/c", "/d")] and args.topics == ["/a", "/c"] and args.rate == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["b", "--remap", "/a=/b"])
