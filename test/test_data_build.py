"""Build tests: determinism, caching, split disjointness, fused samples and `snn-fusion dataset`.

The sources (Debian Asterisk packages, the aeon wheel) are fetched once into the default cache
(``$SNN_FUSION_DATA`` or ~/.cache/snn_fusion_ros/datasets) and reused; builds go to tmp dirs.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from snn_fusion_ros.data import builder, cli
from snn_fusion_ros.data.dataset import load_split
from snn_fusion_ros.data.store import load_json, load_npz

pytestmark = pytest.mark.unit

pytest.importorskip("espeakng_loader", reason="espeakng-loader not installed")

DURATION_MS = 300.0


def _cfg(seed: int = 7) -> builder.BuildConfig:
    return builder.BuildConfig.create(seed=seed, quick=True, duration_ms=DURATION_MS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("data_a")
    return cache, builder.build(_cfg(), cache=cache, sources=builder.default_cache(), workers=2)


def test_same_seed_gives_byte_identical_files(built, tmp_path):
    # the second build also runs the DVS emulator in one process instead of two
    _, out_a = built
    out_b = builder.build(_cfg(), cache=tmp_path, sources=builder.default_cache(), workers=1)
    names = sorted(p.name for p in out_a.iterdir())
    assert names == sorted(p.name for p in out_b.iterdir())
    assert "manifest.json" in names and "pairs_test.npz" in names
    for name in names:
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), f"{name} differs between builds"


def test_different_seed_gives_different_data(built, tmp_path):
    _, out_a = built
    out_c = builder.build(_cfg(seed=8), cache=tmp_path, sources=builder.default_cache(), workers=1)
    assert out_c.name != out_a.name
    # (quick builds have one unaugmented rendition per voice, so their audio does not depend on the seed)
    for name in ("dvs_train.npz", "dvs_test.npz", "pairs_test.npz"):
        assert (out_a / name).read_bytes() != (out_c / name).read_bytes(), f"{name} ignores the seed"


def test_second_build_is_skipped(built):
    cache, out = built
    stamp = (out / "dvs_train.npz").stat().st_mtime_ns
    assert builder.build(_cfg(), cache=cache, sources=builder.default_cache()) == out
    assert (out / "dvs_train.npz").stat().st_mtime_ns == stamp, "cached part was rebuilt"


def test_partial_build_rebuilds_only_missing_parts(built, tmp_path):
    _, out = built
    target = tmp_path / "builds" / out.name
    target.mkdir(parents=True)
    (target / "dvs_train.npz").write_bytes((out / "dvs_train.npz").read_bytes())
    stamp = (target / "dvs_train.npz").stat().st_mtime_ns
    builder.build(_cfg(), cache=tmp_path, sources=builder.default_cache(), workers=1)
    assert (target / "dvs_train.npz").stat().st_mtime_ns == stamp
    assert (target / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()


def test_splits_are_disjoint(built):
    _, out = built
    manifest = load_json(out / "manifest.json")
    tr, te = (set(load_npz(out / f"audio_{s}.npz")["speaker"].tolist()) for s in ("train", "test"))
    assert tr and te and not tr & te, f"speakers in both splits: {tr & te}"
    assert "june" in te and "allison" in tr, "real voices: Allison trains, June tests"
    assert set(manifest["speakers"]["test"]["espeak"]) == {s[len("espeak:"):] for s in te - {"june"}}
    d_tr, d_te = (load_npz(out / f"dvs_{s}.npz")["image_index"] for s in ("train", "test"))
    assert not set(d_tr.tolist()) & set(d_te.tolist()), "handwritten images in both splits"
    i_tr, i_te = (load_npz(out / f"imu_{s}.npz")["accel"] for s in ("train", "test"))
    for a in i_te:
        assert not any(np.array_equal(a, b) for b in i_tr), "an IMU series appears in both splits"


@pytest.mark.parametrize("split", ["train", "test"])
def test_fused_samples_share_class_and_time_axis(built, split):
    cache, _ = built
    ds = load_split(split, cache=cache)
    assert len(ds) > 0 and ds.duration_ns == int(DURATION_MS * 1e6)
    for m, labels in ds.modality_labels().items():
        col = ds.pairs.index[:, ("audio", "dvs", "imu").index(m)]
        np.testing.assert_array_equal(labels[col], ds.labels, err_msg=f"{m} label != fused label")
    for i in range(0, len(ds), max(1, len(ds) // 7)):
        s = ds[i]
        assert s.audio.shape == (int(DURATION_MS * 1e-3 * s.sample_rate_hz),)
        assert len(s.events) > 0 and s.events["t"].min() >= 0 and s.events["t"].max() <= ds.duration_ns
        assert s.events["x"].max() < s.sensor_size[0] and s.events["y"].max() < s.sensor_size[1]
        assert s.imu_stamps_ns[0] == 0 and s.imu_stamps_ns[-1] < ds.duration_ns
        assert s.accel.shape == (len(s.imu_stamps_ns), 3) and np.all(np.isfinite(s.accel))
        assert np.abs(s.audio).max() > 0.05, "audio sample is silent"


def test_train_pairing_is_redrawn_per_epoch_test_pairing_is_fixed(built):
    cache, _ = built
    train = load_split("train", cache=cache)
    again = train.repaired(np.random.default_rng(123))
    assert not np.array_equal(train.pairs.index, again.pairs.index)
    np.testing.assert_array_equal(np.sort(train.labels), np.sort(again.labels))
    a, b = load_split("test", cache=cache), load_split("test", cache=cache)
    np.testing.assert_array_equal(a.pairs.index, b.pairs.index)


def test_cli_info_json_counts(built, capsys):
    cache, _ = built
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["info", "--cache", str(cache), "--json"])) == 0
    info = json.loads(capsys.readouterr().out)
    for split in ("train", "test"):
        entry = info["splits"][split]
        for m in ("audio", "dvs", "imu"):
            assert entry[m]["total"] == sum(entry[m]["per_class"].values()) > 0
            assert set(entry[m]["per_class"]) == {str(k) for k in range(10)}, f"{split}/{m} lacks a class"
        assert entry["speakers"]
    assert info["splits"]["test"]["fused"] >= info["splits"]["test"]["audio"]["total"]


def test_cli_build_offline_empty_cache_fails_with_message(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    rc = cli.run(parser.parse_args(["build", "--cache", str(tmp_path), "--quick", "--offline"]))
    assert rc == 1
    assert "asterisk-core-sounds-en-wav" in capsys.readouterr().err


def test_dataset_command_through_the_entry_point(built, capsys, monkeypatch):
    from snn_fusion_ros import cli as top

    cache, out = built
    monkeypatch.setitem(top.COMMANDS, "dataset", ("snn_fusion_ros.data.cli", "data set"))
    assert top.main(["dataset", "info", "--cache", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["build"] == out.name
    # the same build is already in the cache: found and skipped even offline, with no source there
    assert top.main(["dataset", "build", "--cache", str(cache), "--seed", "7", "--quick",
                     "--duration-ms", str(DURATION_MS), "--offline", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"built {out}"
    assert top.main(["dataset", "build", "--cache", str(cache), "--seed", "99", "--quick",
                     "--offline", "--no-progress"]) == 1, "a new build needs the sources: offline must fail"
    assert "asterisk-core-sounds-en-wav" in capsys.readouterr().err


def test_dvs_emulator_option_names_the_build_and_refuses_bad_fields(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["build", "--dvs-emulator", "saccade_px=4", "--dvs-emulator", "threshold=0.1"])
    dvs = cli.dvs_emulator_overrides(args, "snn-fusion dataset build")
    cfg = builder.BuildConfig.create(**dvs)
    assert (cfg.dvs.saccade_px, cfg.dvs.threshold) == (4.0, 0.1)
    assert cfg.key != builder.BuildConfig.create().key
    assert cfg.key == builder.BuildConfig.create(saccade_px=4.0, threshold=0.1).key
    # a field set to its default is the default build (earlier builds keep their keys)
    assert builder.BuildConfig.create(**cli.parse_overrides(["saccade_px=2"])).key == builder.BuildConfig.create().key
    rc = cli.run(parser.parse_args(["build", "--cache", str(tmp_path), "--quick", "--offline",
                                    "--dvs-emulator", "saccade=4"]))
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("snn-fusion dataset build: --dvs-emulator: unknown DVS emulator field 'saccade'")
    assert not any(tmp_path.iterdir()), "a refused option must not start a build"


def test_aeon_wheel_series_parse_and_convert():
    from snn_fusion_ros.data import imu

    sources = builder.default_cache()
    bm = imu.load_aeon_dataset("BasicMotions", "train", sources)
    assert len(bm.series) == 40 and len(bm.classes) == 4 and bm.series[0].shape == (6, 100)
    stamps, accel, gyro = imu.basic_motions_to_imu(bm.series[0])
    assert stamps[1] == 100_000_000 and accel.shape == gyro.shape == (100, 3)
    for split in ("train", "test"):
        pg = imu.load_aeon_dataset("PickupGestureWiimoteZ", split, sources)
        assert len(pg.series) == 50 and np.bincount(pg.labels).tolist() == [5] * 10
        lengths = [s.shape[1] for s in pg.series]
        assert min(lengths) >= 29 and max(lengths) <= 361
        rest = np.median([np.median(s) for s in pg.series])
        assert 0.7 < rest < 1.1, f"values should be in g (about 1 at rest), median {rest}"


def test_distorted_renditions_extend_only_the_train_split():
    plain, more = _cfg(), builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS,
                                                       dvs_train_distortions=2)
    assert builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS, dvs_train_distortions=0).key \
        == plain.key, "the default must keep the keys of earlier builds"
    assert more.key != plain.key
    a, b = builder.build_dvs(plain, "train", False), builder.build_dvs(more, "train", False)
    n = len(a["labels"])
    assert "copy" not in a and len(b["labels"]) == 3 * n
    np.testing.assert_array_equal(b["copy"], np.repeat([0, 1, 2], n))
    np.testing.assert_array_equal(b["image_index"], np.tile(a["image_index"], 3))
    np.testing.assert_array_equal(b["labels"], np.tile(a["labels"], 3))
    # the originals come first and are the plain build's, byte for byte
    np.testing.assert_array_equal(b["offsets"][: n + 1], a["offsets"])
    np.testing.assert_array_equal(b["events"][: len(a["events"])], a["events"])

    def events(d, j):
        return d["events"][d["offsets"][j]: d["offsets"][j + 1]]

    for j in (0, n // 2):
        renditions = [events(b, j + c * n) for c in range(3)]
        assert all(len(r) > 0 for r in renditions)
        assert not np.array_equal(renditions[0], renditions[1]) and not np.array_equal(renditions[1], renditions[2])
    t_plain, t_more = builder.build_dvs(plain, "test", False), builder.build_dvs(more, "test", False)
    assert set(t_plain) == set(t_more)
    for k in t_plain:
        np.testing.assert_array_equal(t_more[k], t_plain[k], err_msg=f"test split {k} changed")


def test_distort_is_seeded_bounded_and_the_identity_at_zero_range(monkeypatch):
    import cv2

    from snn_fusion_ros.data import handwriting

    images, _ = handwriting.load_handwritten()
    img = images[3]
    d1 = handwriting.distort(img, 28, np.random.default_rng(1))
    assert d1.shape == (28, 28) and d1.dtype == np.float32 and 0.0 <= d1.min() and d1.max() <= 1.0
    np.testing.assert_array_equal(d1, handwriting.distort(img, 28, np.random.default_rng(1)))
    assert not np.array_equal(d1, handwriting.distort(img, 28, np.random.default_rng(2)))
    big = cv2.resize(img, (28, 28), interpolation=cv2.INTER_LINEAR)
    assert np.abs(d1 - big).mean() > 0.01, "a distortion must change the image"
    monkeypatch.setitem(handwriting.DISTORTION, "rotation_deg", 0.0)
    monkeypatch.setitem(handwriting.DISTORTION, "scale", 0.0)
    monkeypatch.setitem(handwriting.DISTORTION, "shear", 0.0)
    np.testing.assert_allclose(handwriting.distort(img, 28, np.random.default_rng(1)), np.clip(big, 0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="2-D"):
        handwriting.distort(np.zeros(5), 28, np.random.default_rng(0))


def _extended_train_audio(field: str, default: str, value: str) -> tuple[dict, int]:
    """Train audio of a quick build with ``field=value``, after checking what every appending option keeps:
    the default's key is the earlier builds' key, the build without the option is a byte-for-byte prefix of
    the train audio, and the test split is unchanged. Returns (train audio arrays, length of that prefix)."""
    plain = _cfg()
    more = builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS, **{field: value})
    assert builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS, **{field: default}).key \
        == plain.key, "the default must keep the keys of earlier builds"
    assert more.key != plain.key
    sources = builder.default_cache()
    a, b = (builder.build_audio(c, "train", sources, False, False) for c in (plain, more))
    n = len(a["labels"])
    for k in ("waveforms", "labels", "speaker", "source"):
        np.testing.assert_array_equal(b[k][:n], a[k], err_msg=f"train {k} changed")
    t_plain, t_more = (builder.build_audio(c, "test", sources, False, False) for c in (plain, more))
    for k in t_plain:
        np.testing.assert_array_equal(t_more[k], t_plain[k], err_msg=f"test split {k} changed")
    return b, n


def test_other_languages_extend_only_the_train_audio():
    b, n = _extended_train_audio("train_languages", "en", "en-es-fr")
    extra = b["source"][n:]
    spk = builder.speakers("train", True, "core", "en-es-fr")
    voices = spk["espeak_es"] + spk["espeak_fr"]
    assert sorted(set(extra.tolist())) == sorted(f"espeak:{v}:{lang}" for lang in ("es", "fr")
                                                 for v in spk[f"espeak_{lang}"])
    assert len(extra) == 10 * len(voices)  # quick builds: one rendition per voice and digit
    np.testing.assert_array_equal(np.bincount(b["labels"][n:], minlength=10), [len(voices)] * 10)
    assert all(len(w) and np.abs(w).max() > 0.1 for w in b["waveforms"][n:]), "an utterance is silent"
    test_bases = {v.split("+")[0] for v in builder.speakers("test", False)["espeak"]}
    assert not {v.split("+")[0] for v in voices} & test_bases, "a test base voice reads training words"
    assert "espeak_fr" not in builder.speakers("test", False, "core", "en-es-fr")
    with pytest.raises(ValueError, match="train_languages"):
        builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS, train_languages="de")


def test_more_real_voices_extend_only_the_train_audio():
    from snn_fusion_ros.data import audio

    b, n = _extended_train_audio("train_voices", "allison", "asterisk")
    voices = builder.TRAIN_VOICES["asterisk"][1:]
    assert builder.speakers("train", True, train_voices="asterisk")["asterisk_more"] == list(voices)
    assert sorted(set(b["speaker"][n:].tolist())) == sorted(voices)
    assert len(b["labels"]) - n == 10 * len(voices)  # quick builds: one rendition per voice and digit
    for v in voices:  # each voice says 0..9 once, in order, from its own prompt files
        sel = b["speaker"][n:] == v
        np.testing.assert_array_equal(b["labels"][n:][sel], np.arange(10))
        folder, ext = audio.ASTERISK_SPEAKERS[v][0].folder, audio.ASTERISK_SPEAKERS[v][0].ext
        assert b["source"][n:][sel].tolist() == [f"asterisk:{folder}/digits/{d}.{ext}" for d in range(10)]
    assert all(np.abs(w).max() > 0.1 for w in b["waveforms"][n:]), "an utterance is silent"
    rms = np.sqrt((b["waveforms"][n:] ** 2).mean(axis=1))
    assert rms.min() > 0.01, "a decoded prompt is nearly silent (a codec failure?)"
    assert not {"june"} & set(builder.TRAIN_VOICES["asterisk"]), "the test split's real voice must never train"
    test_packages = {v.package for s in builder.ASTERISK_SPLIT["test"] for v in audio.ASTERISK_SPEAKERS[s]}
    assert not test_packages & {x.package for v in voices for x in audio.ASTERISK_SPEAKERS[v]}
    assert "asterisk_more" not in builder.speakers("test", False, train_voices="asterisk")
    with pytest.raises(ValueError, match="train_voices"):
        builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS, train_voices="june")
    with pytest.raises(ValueError, match="train_voices"):
        builder.speakers("train", True, train_voices="everyone")


def test_all_variants_change_only_the_train_voices():
    plain = _cfg()
    spread = builder.BuildConfig.create(seed=7, quick=True, duration_ms=DURATION_MS, train_variants="all")
    assert spread.key != plain.key
    sources = builder.default_cache()
    a, b = (builder.build_audio(c, "train", sources, False, False) for c in (plain, spread))
    assert len(b["labels"]) == len(a["labels"]), "the variant pool must not change the sample count"
    np.testing.assert_array_equal(b["labels"], a["labels"])
    want = {f"espeak:{v}" for v in builder.speakers("train", True, train_variants="all")["espeak"]} | {"allison"}
    assert set(b["speaker"].tolist()) == want
    recorded = b["speaker"] == "allison"  # the recorded voice and its draws are untouched
    np.testing.assert_array_equal(b["waveforms"][recorded], a["waveforms"][recorded])
    assert not np.array_equal(b["waveforms"][~recorded], a["waveforms"][~recorded])
    t_plain, t_spread = (builder.build_audio(c, "test", sources, False, False) for c in (plain, spread))
    for k in t_plain:
        np.testing.assert_array_equal(t_spread[k], t_plain[k], err_msg=f"test split {k} changed")


def test_digit_words_carry_their_digit_in_every_language():
    from snn_fusion_ros.data import audio

    reqs = audio.espeak_requests(["fr-be+m1"], 2, np.random.default_rng(0), "fr")
    assert [(d, u.text) for u, d in reqs[::2]] == list(enumerate(audio.DIGIT_WORDS_BY_LANGUAGE["fr"]))
    assert reqs[6][0].text == "trois" and reqs[6][1] == 3 and reqs[7][0].rate_wpm != 175
    assert audio.espeak_requests(["es+m1"], 1, np.random.default_rng(0), "es")[4][0].text == "cuatro"
    with pytest.raises(ValueError, match="language"):
        audio.espeak_requests(["fr-be+m1"], 1, np.random.default_rng(0), "klingon")
