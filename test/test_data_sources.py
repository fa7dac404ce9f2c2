"""Unit tests of the data sources, pairing and splits (no build; fast)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from snn_fusion_ros.data import builder, handwriting, imu
from snn_fusion_ros.data.audio import (
    ASTERISK_SPEAKERS,
    RawAudio,
    load_asterisk,
    place_audio,
    read_gsm,
    read_wav,
    speech_centre,
)
from snn_fusion_ros.data.pairing import pair_samples
from snn_fusion_ros.data.sources import SourceUnavailable, fetch_debian_package, fetch_wheel
from snn_fusion_ros.data.store import load_npz, save_json, save_npz
from snn_fusion_ros.spikes import MODALITIES

pytestmark = pytest.mark.unit

TS_TEXT = """# comment
@problemName Toy
@univariate true
@equalLength false
@classLabel true 1 2 3
@data
1.0,1.0,2.0,1.0:1
0.5,0.5,NaN,NaN:3
1.0,2.0,3.0:2
"""


def test_parse_ts_strips_nan_padding_and_maps_labels():
    ts = imu.parse_ts(TS_TEXT)
    assert ts.classes == ("1", "2", "3")
    np.testing.assert_array_equal(ts.labels, [0, 2, 1])
    assert [s.shape for s in ts.series] == [(1, 4), (1, 2), (1, 3)]


@pytest.mark.parametrize("bad", ["@classLabel true 1\n@data\n1,2:7\n", "@classLabel true 1\n1,2:1\n",
                                 "@classLabel true 1\n@data\n1,NaN,2:1\n"])
def test_parse_ts_rejects_malformed(bad):
    with pytest.raises(ValueError):
        imu.parse_ts(bad)


def test_wiimote_to_imu_units_length_and_centring():
    z = np.ones(300)
    z[200:220] = 2.0  # the gesture, at rest (1 g) elsewhere
    stamps, accel = imu.wiimote_to_imu(z[None, :], duration_ms=1000.0, rate_hz=100.0)
    assert stamps.dtype == np.int64 and len(stamps) == 100 and stamps[0] == 0
    assert stamps[-1] == 990_000_000
    assert accel.shape == (100, 3) and accel.dtype == np.float32
    np.testing.assert_allclose(accel[:, :2], 0.0)
    assert np.isclose(accel[:, 2].min(), imu.STANDARD_GRAVITY), "1 g -> 9.80665 m/s^2"
    peak = np.nonzero(accel[:, 2] > 1.5 * imu.STANDARD_GRAVITY)[0]
    assert 40 <= peak.mean() <= 60, "the motion must be centred in the window"
    _, short = imu.wiimote_to_imu(np.array([[1.0, 3.0, 1.5]]), 1000.0, 100.0)
    assert short.shape == (100, 3) and short[0, 2] == pytest.approx(9.80665) and short[-1, 2] == pytest.approx(
        1.5 * 9.80665), "short series are padded with their edge values"


def test_pairing_matches_labels_and_uses_every_sample():
    rng = np.random.default_rng(0)
    labels = {"audio": np.repeat(np.arange(10), 7), "dvs": np.repeat(np.arange(10), 3),
              "imu": rng.permutation(np.repeat(np.arange(10), 5))}
    p = pair_samples(labels, np.random.default_rng(1))
    assert len(p) == 70
    for m, col in zip(MODALITIES, p.index.T, strict=True):
        np.testing.assert_array_equal(labels[m][col], p.labels, err_msg=f"{m} paired with a wrong class")
        assert set(col.tolist()) == set(range(len(labels[m]))), f"some {m} sample never used"
    q = pair_samples(labels, np.random.default_rng(1))
    r = pair_samples(labels, np.random.default_rng(2))
    np.testing.assert_array_equal(p.index, q.index)
    assert not np.array_equal(p.index, r.index), "another generator must give another pairing"


def test_pairing_refuses_a_class_missing_in_a_modality():
    labels = {"audio": np.array([0, 1]), "dvs": np.array([0, 1]), "imu": np.array([0, 0])}
    with pytest.raises(ValueError, match="class 1"):
        pair_samples(labels, np.random.default_rng(0))


def test_place_audio_centres_speech_and_sets_length():
    x = np.zeros(4000, dtype=np.float32)
    x[500:1300] = np.sin(np.arange(800) * 0.3)  # 0.1 s burst early in a 0.5 s recording at 8 kHz
    out = place_audio(RawAudio(x, 8000, 3, "s", "t"), 16000, 1000.0)
    assert out.shape == (16000,) and out.dtype == np.float32
    assert abs(speech_centre(out, 16000) - 8000) < 400, "speech must be centred in the window"
    assert np.abs(out).max() == pytest.approx(0.5, rel=0.05)
    longer = place_audio(RawAudio(np.tile(x, 8), 8000, 3, "s", "t"), 16000, 1000.0)
    assert longer.shape == (16000,), "a longer utterance is cropped to the window"


def test_read_wav_roundtrip(tmp_path):
    import wave

    pcm = (np.sin(np.arange(800) * 0.1) * 10000).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000
    np.testing.assert_allclose(x, pcm / 32768.0)


def test_read_gsm_decodes_a_tone_and_refuses_a_truncated_file(tmp_path):
    import soundfile

    t = np.arange(8000) / 8000.0
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    soundfile.write(str(tmp_path / "a.gsm"), tone, 8000, format="RAW", subtype="GSM610")
    assert (tmp_path / "a.gsm").stat().st_size == 50 * 33, "1 s is 50 GSM frames of 33 bytes"
    x, rate = read_gsm(tmp_path / "a.gsm")
    assert rate == 8000 and x.dtype == np.float32 and len(x) == 8000
    spectrum = np.abs(np.fft.rfft(x[800:]))
    assert abs(np.argmax(spectrum) * 8000 / len(x[800:]) - 440.0) < 5.0, "the tone's pitch must survive the codec"
    assert 0.25 < np.abs(x[800:]).max() < 0.8
    (tmp_path / "b.gsm").write_bytes((tmp_path / "a.gsm").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"GSM 6\.10 frames"):
        read_gsm(tmp_path / "b.gsm")
    (tmp_path / "c.gsm").write_bytes(b"")
    with pytest.raises(ValueError, match="0 bytes"):
        read_gsm(tmp_path / "c.gsm")


def _fake_asterisk_package(cache, package, folder, ext, files):
    """An unpacked, complete-marked Debian package in ``cache`` holding digit prompts ``files[d]`` (bytes)."""
    root = cache / "sources" / "deb" / package
    digits = root / "usr" / "share" / "asterisk" / "sounds" / folder / "digits"
    digits.mkdir(parents=True)
    for d in range(10):
        (digits / f"{d}.{ext}").write_bytes(files[d])
    (root / ".complete").write_text("")
    return digits


@pytest.mark.parametrize("voice", ["es_co", "june"])
def test_a_corrupt_prompt_in_a_cached_package_is_a_source_error_naming_file_and_package(tmp_path, voice):
    import soundfile

    (spec,) = ASTERISK_SPEAKERS[voice]
    if spec.ext == "gsm":
        soundfile.write(str(tmp_path / "ok"), np.zeros(800), 8000, format="RAW", subtype="GSM610")
        bad = (tmp_path / "ok").read_bytes()[:50]  # not a whole number of 33-byte frames
    else:
        soundfile.write(str(tmp_path / "ok"), np.zeros(800), 8000, format="WAV", subtype="PCM_16")
        bad = b"RIFF\x00\x00\x00\x00WAVEjunk"  # a header that stops in the middle
    good = (tmp_path / "ok").read_bytes()
    _fake_asterisk_package(tmp_path, spec.package, spec.folder, spec.ext, [good] * 10)
    assert len(load_asterisk(voice, tmp_path, offline=True)) == 10, "the intact package loads"
    shutil.rmtree(tmp_path / "sources")
    digits = _fake_asterisk_package(tmp_path, spec.package, spec.folder, spec.ext, [good] * 7 + [bad] + [good] * 2)
    with pytest.raises(SourceUnavailable, match=rf"{spec.package}.*7\.{spec.ext} cannot be decoded") as err:
        load_asterisk(voice, tmp_path, offline=True)
    assert err.value.source == spec.package and str(digits / f"7.{spec.ext}") in str(err.value)


def test_handwriting_split_is_disjoint_with_guard_block():
    tr, te = handwriting.split_indices("train"), handwriting.split_indices("test")
    assert not set(tr) & set(te)
    assert te.min() - tr.max() > 1797 // 13, "the guard block must exceed one writer's share"
    with pytest.raises(ValueError, match="split"):
        handwriting.split_indices("val")


@pytest.mark.parametrize("variants", sorted(builder.TRAIN_VARIANTS))
@pytest.mark.parametrize("accents", sorted(builder.TRAIN_ACCENTS))
@pytest.mark.parametrize("quick", [False, True])
def test_speakers_disjoint_and_test_has_a_human_voice(quick, accents, variants):
    tr = builder.speakers("train", quick, accents, train_variants=variants)
    te = builder.speakers("test", quick, accents, train_variants=variants)
    assert not set(tr["asterisk"]) & set(te["asterisk"])
    assert not set(tr["espeak"]) & set(te["espeak"])
    bases = [{v.split("+")[0] for v in s["espeak"]} for s in (tr, te)]
    variants = [{v.split("+")[1] for v in s["espeak"]} for s in (tr, te)]
    assert not bases[0] & bases[1] and not variants[0] & variants[1], "no voice or variant shared"
    assert te["asterisk"], "the test split must hold a real human speaker"


def test_eu_accents_extend_core_and_leave_the_test_split_alone():
    core, eu = (builder.speakers("train", False, a)["espeak"] for a in ("core", "eu"))
    assert set(core) < set(eu)
    assert len({v.split("+")[0] for v in eu}) == 21 and len(eu) == 21 * len(builder.ESPEAK_VARIANTS["train"])
    assert builder.speakers("test", False, "eu") == builder.speakers("test", False, "core")
    with pytest.raises(ValueError, match="train_accents"):
        builder.speakers("train", False, "world")


def test_all_variants_spread_over_the_accents_at_the_same_size():
    core = builder.speakers("train", False, "eu")["espeak"]
    spread = builder.speakers("train", False, "eu", train_variants="all")["espeak"]
    assert len(spread) == len(core) == 21 * builder.VARIANTS_PER_BASE, "the pool must not change the sample count"
    assert builder.speakers("train", False, "eu", train_variants="core")["espeak"] == core
    per_base: dict[str, list[str]] = {}
    for v in spread:
        per_base.setdefault(v.split("+")[0], []).append(v.split("+")[1])
    assert list(per_base) == list(builder.TRAIN_ACCENTS["eu"]) and all(len(set(v)) == 6 for v in per_base.values())
    assert per_base["en"] == list(builder.ESPEAK_VARIANTS["train"]), "the first base keeps the core six"
    assert per_base["de"] == ["Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy"]
    heard = {v for vs in per_base.values() for v in vs}
    assert heard == set(builder.TRAIN_VARIANTS["all"]), "126 slots must hear every one of the 97 variants"
    assert not heard & (set(builder.ESPEAK_VARIANTS["test"]) | set(builder.PROBE_VARIANTS))
    assert builder.speakers("test", False, "eu", train_variants="all") == builder.speakers("test", False, "eu")
    quick = builder.speakers("train", True, "eu", train_variants="all")["espeak"]
    assert quick == ["en+m1", "en+f1", "de+Alex", "de+Alicia"]
    langs = builder.speakers("train", False, "core", "en-es-fr", train_variants="all")
    assert langs["espeak_es"][0] == "es+" + builder.TRAIN_VARIANTS["all"][36], "native bases continue the rotation"
    with pytest.raises(ValueError, match="train_variants"):
        builder.speakers("train", False, train_variants="m4")


def test_all_variants_are_in_the_pinned_espeak_data_and_synthesise():
    from snn_fusion_ros.data import audio
    from snn_fusion_ros.snn.voices import espeak_variants

    shipped = espeak_variants()
    pool = builder.TRAIN_VARIANTS["all"]
    assert len(set(pool)) == len(pool) == 97 and set(pool) <= shipped
    assert set(pool) == shipped - set(builder.ESPEAK_VARIANTS["test"]) - set(builder.PROBE_VARIANTS)
    raws = audio.load_espeak([f"en+{v}" for v in pool], 1, np.random.default_rng(0))[5::10]  # "five", each voice
    assert len(raws) == len(pool) and all(np.abs(r.samples).max() > 0.05 for r in raws), "a variant is silent"


def test_build_key_ignores_core_accents_so_older_builds_keep_their_keys():
    import hashlib
    import json

    cfg = builder.BuildConfig.create()
    d = cfg.to_dict()
    for later in ("train_accents", "dvs_train_distortions", "train_languages", "train_voices", "train_variants"):
        del d[later]  # added after the first builds
    before = hashlib.sha256(json.dumps({"format": builder.FORMAT_VERSION, **d}, sort_keys=True).encode()).hexdigest()
    assert cfg.key == before[:16] == "77278bf346a9faf0", "the core build's key (doc/data.md) must not change"
    eu = builder.BuildConfig.create(train_accents="eu")
    assert eu.key != cfg.key
    assert builder.BuildConfig.from_dict(eu.to_dict()) == eu
    with pytest.raises(ValueError, match="train_accents"):
        builder.BuildConfig.create(train_accents="world")
    with pytest.raises(ValueError, match="dvs_train_distortions"):
        builder.BuildConfig.create(dvs_train_distortions=-1)
    spread = builder.BuildConfig.create(train_accents="eu", train_variants="all")
    assert spread.key not in (eu.key, cfg.key) and builder.BuildConfig.from_dict(spread.to_dict()) == spread
    assert builder.BuildConfig.create(train_variants="core").key == cfg.key
    with pytest.raises(ValueError, match="train_variants"):
        builder.BuildConfig.create(train_variants="m4")


def test_dataset_cli_offers_every_accent_set():
    import argparse

    from snn_fusion_ros.data import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    for accents in builder.TRAIN_ACCENTS:
        assert parser.parse_args(["build", "--train-accents", accents]).train_accents == accents
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--train-accents", "world"])
    for voices in builder.TRAIN_VOICES:
        assert parser.parse_args(["build", "--train-voices", voices]).train_voices == voices
    assert parser.parse_args(["build"]).train_voices == "allison"
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--train-voices", "june"])
    assert parser.parse_args(["build"]).train_variants == "core"
    assert parser.parse_args(["build", "--train-variants", "all"]).train_variants == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--train-variants", "m4"])


def test_missing_source_raises_naming_the_package(tmp_path, monkeypatch):
    with pytest.raises(SourceUnavailable, match="asterisk-core-sounds-fr-wav"):
        fetch_debian_package("asterisk-core-sounds-fr-wav", tmp_path, offline=True)
    with pytest.raises(SourceUnavailable, match=r"aeon==1\.6\.0"):
        fetch_wheel("aeon", "1.6.0", tmp_path, offline=True)
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(SourceUnavailable, match=r"apt-get.*not found"):
        fetch_debian_package("asterisk-core-sounds-fr-wav", tmp_path)


def test_build_into_empty_dir_offline_fails_clearly(tmp_path):
    cfg = builder.BuildConfig.create(seed=0, quick=True)
    with pytest.raises(SourceUnavailable, match="asterisk-core-sounds-en-wav"):
        builder.build(cfg, cache=tmp_path, offline=True)
    with pytest.raises(FileNotFoundError, match="snn-fusion dataset build"):
        builder.find_build(tmp_path)


def test_build_config_key_depends_on_every_parameter():
    a = builder.BuildConfig.create(seed=0)
    assert a.key == builder.BuildConfig.create(seed=0).key
    assert a.key != builder.BuildConfig.create(seed=1).key
    assert a.key != builder.BuildConfig.create(seed=0, threshold=0.3).key
    assert builder.BuildConfig.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="duration_ms"):
        builder.BuildConfig(duration_ms=500.0)


def test_save_npz_is_byte_reproducible_and_pickle_free(tmp_path):
    arrays = {"s": np.asarray(3), "b": np.arange(5), "a": np.array(["x", "yz"]), "e": np.zeros(3, dtype=[("t", "<i8")])}
    save_npz(tmp_path / "1.npz", arrays)
    save_npz(tmp_path / "2.npz", arrays)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    back = load_npz(tmp_path / "1.npz")
    assert back["s"].shape == () and back["a"].tolist() == ["x", "yz"] and back["e"].dtype == arrays["e"].dtype
    with pytest.raises(ValueError, match="object"):
        save_npz(tmp_path / "3.npz", {"o": np.array([None, 1], dtype=object)})


def test_concurrent_writers_of_one_cache_file_do_not_collide(tmp_path):
    """Two training runs started together encode the same split and write the same cache entry."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    arrays = {"a": np.random.default_rng(0).integers(0, 2, (400, 4096), dtype=np.uint8)}
    target = tmp_path / "shared.npz"
    barrier = Barrier(4)

    def write(_: int) -> None:
        barrier.wait()
        for _ in range(5):
            save_npz(target, arrays)
            save_json(tmp_path / "shared.json", {"n": 1})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))  # re-raises a writer's error
    assert np.array_equal(load_npz(target)["a"], arrays["a"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json", "shared.npz"], "temporary files left"


def test_espeak_synthesis_is_reproducible():
    pytest.importorskip("espeakng_loader", reason="espeakng-loader not installed")
    from snn_fusion_ros.data.espeak import Utterance, synthesize

    reqs = [Utterance("de+f2", "seven", 160, 40), Utterance("en+m1", "one"), Utterance("fr+m4", "two")]
    a, b = synthesize(reqs), synthesize(reqs)
    assert all(len(x) > 2000 for x in a), "each word should last > 0.1 s"
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)), "eSpeak output must be reproducible"
    with pytest.raises(SourceUnavailable, match="unknown eSpeak voice"):
        synthesize([Utterance("no-such-voice", "one")])
