"""`snn-fusion eval`: JSON schema, report PNGs, backends, user folders (audio WAV, IMU CSV)."""

from __future__ import annotations

import argparse
import json
import wave

import numpy as np
import pytest

from snn_fusion_ros.data.encode import encode_imu, node_encoder_configs
from snn_fusion_ros.snn import eval_cli, train_cli
from snn_fusion_ros.snn.user_data import load_user_modality, read_imu_csv

pytestmark = pytest.mark.unit

pytest.importorskip("espeakng_loader", reason="espeakng-loader not installed")

MISSING_KEYS = {"audio", "dvs", "imu", "audio+dvs", "audio+imu", "dvs+imu"}


@pytest.fixture(scope="module")
def tiny_model(quick_key, tmp_path_factory):
    """A 1-epoch, 8-neuron model trained on the quick build (the schema does not need a good model)."""
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.data.encode import encode_split

    tmp = tmp_path_factory.mktemp("model")
    enc = encode_split(load_split("train", key=quick_key), progress=False)
    s = train_cli.TrainSettings(epochs=1, hidden_neurons=8, fusion_neurons=8, val_fraction=0.2)
    train_cli.fit(enc, node_encoder_configs(), s, tmp / "m", tmp / "ck", quick_key, progress=False)
    return tmp / "m"


def _eval(argv: list[str], capsys) -> dict:
    p = argparse.ArgumentParser()
    eval_cli.add_arguments(p)
    assert eval_cli.run(p.parse_args(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _write_wav(path, x: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _write_csv(path, t_s: np.ndarray, accel: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["t_s,ax,ay,az"] + [f"{t:.9f},{a[0]:.9g},{a[1]:.9g},{a[2]:.9g}" for t, a in zip(t_s, accel, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_eval_json_schema_and_report(tiny_model, quick_key, tmp_path, capsys):
    res = _eval(["--model", str(tiny_model), "--build", quick_key, "--json", "--backends", "torch,nir",
                 "--report-dir", str(tmp_path / "rep"), "--no-progress", "--threads", "1"], capsys)
    for k in ("fused_accuracy", "modality_accuracy", "missing_modality_accuracy", "backend_accuracy", "n_test",
              "noise_accuracy", "noise_settings", "latency_ms_per_step", "decision_rule", "backend_details"):
        assert k in res, f"missing key {k}"
    assert res["n_test"] == 44  # quick build: 44 fused test samples
    assert set(res["modality_accuracy"]) == {"audio", "dvs", "imu"}
    assert set(res["missing_modality_accuracy"]) == MISSING_KEYS
    # a modality alone == the two others missing
    assert res["modality_accuracy"]["audio"] == res["missing_modality_accuracy"]["dvs+imu"]
    assert set(res["noise_accuracy"]) == {"audio", "dvs", "imu", "all"}
    assert res["noise_settings"]["audio_snr_db"] == 10.0
    accs = [res["fused_accuracy"], *res["modality_accuracy"].values(), *res["missing_modality_accuracy"].values(),
            *res["noise_accuracy"].values(), *res["backend_accuracy"].values()]
    assert all(0.0 <= a <= 1.0 for a in accs), accs
    # the torch backend streams window by window and must reproduce the batched reference exactly
    assert res["backend_accuracy"]["torch"] == res["fused_accuracy"]
    assert res["backend_details"]["torch"]["agreement_with_torch"] == 1.0
    assert res["backend_details"]["nir"]["n_samples"] == 44
    assert res["backend_details"]["torch"]["device"] == "torch:cpu"
    assert res["backend_details"]["nir"]["device"] == "nir:numpy"
    assert res["latency_ms_per_step"]["torch"]["median"] > 0
    # the 1-NN reference for the IMU path: quick build, 25 train and 25 test series, read on the 44 fused samples
    imu_base = res["baseline"]["imu"]
    assert (imu_base["n_train_series"], imu_base["n_test_series"], imu_base["n_fused_samples"]) == (25, 25, 44)
    for kind in ("raw", "z_normalised"):
        assert 0.0 <= imu_base[kind]["series_accuracy"] <= 1.0 and 0.0 <= imu_base[kind]["fused_sample_accuracy"] <= 1.0
    cm = np.array(res["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 44
    # per test speaker (quick build: June + eSpeak fr m4/f3): counts add up, weighted means give the totals
    spk = res["audio_speaker_accuracy"]
    assert set(spk) == {"june", "espeak:fr+m4", "espeak:fr+f3"}
    assert sum(v["n"] for v in spk.values()) == 44
    for key, total in (("audio_alone", res["modality_accuracy"]["audio"]), ("fused", res["fused_accuracy"])):
        assert sum(v["n"] * v[key] for v in spk.values()) == pytest.approx(total * 44)
    assert np.trace(cm) == round(res["fused_accuracy"] * 44)
    # every accuracy has its 95 % interval, which holds the accuracy itself
    ci = res["accuracy_ci95"]
    pairs = [(ci["fused"], res["fused_accuracy"]), (ci["backend"]["nir"], res["backend_accuracy"]["nir"])]
    for group, key in (("modality", "modality_accuracy"), ("missing_modality", "missing_modality_accuracy"),
                       ("noise", "noise_accuracy")):
        assert set(ci[group]) == set(res[key])
        pairs += [(ci[group][k], v) for k, v in res[key].items()]
    for (lo, hi), acc in pairs:
        assert 0.0 <= lo <= acc <= hi <= 1.0 and hi - lo > 0.05  # 44 samples cannot pin an accuracy down
    for name in ("confusion_matrix.png", "raster_audio.png", "raster_dvs.png", "raster_imu.png"):
        f = tmp_path / "rep" / name
        assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_backend_subset_is_recorded(tiny_model, quick_key, capsys):
    res = _eval(["--model", str(tiny_model), "--build", quick_key, "--json", "--backends", "torch",
                 "--backend-samples", "torch=5", "--no-noise", "--no-progress"], capsys)
    d = res["backend_details"]["torch"]
    assert d["n_samples"] == 5 and d["subset"] is True and "first 5" in d["subset_rule"]
    assert "noise_accuracy" not in res and "noise" not in res["accuracy_ci95"]
    # the backend's interval is over the 5 samples it ran, wider than the fused row's over 44
    lo, hi = res["accuracy_ci95"]["backend"]["torch"]
    f_lo, f_hi = res["accuracy_ci95"]["fused"]
    assert hi - lo > f_hi - f_lo


def test_default_build_is_the_models_then_its_validation_build(tiny_model, quick_key, tmp_path, capsys):
    """A merge of members from several builds records no ``build`` but the ``validation_build`` its rows were
    scored on (whose test split the members share): eval takes it by default, not the seed-0 default build."""
    from snn_fusion_ros.snn.artifact import load_artifact, save_artifact

    art = load_artifact(tiny_model)
    extra = {k: v for k, v in art.metadata["extra"].items() if k != "build"}
    mixed = save_artifact(tmp_path / "mixed", art.build_model(), art.class_names, art.encoder_config,
                          extra={**extra, "validation_build": quick_key})
    argv = ["--json", "--backends", "torch", "--backend-samples", "torch=2", "--no-noise", "--no-progress"]
    assert _eval(["--model", str(tiny_model), *argv], capsys)["build"] == quick_key
    assert _eval(["--model", str(mixed), *argv], capsys)["build"] == quick_key


@pytest.mark.unit
def test_proportion_ci95_known_values():
    from snn_fusion_ros.snn.evaluate import proportion_ci95

    # Clopper-Pearson: 0 of n -> [0, 1 - 0.025 ** (1 / n)]; n of n -> [0.025 ** (1 / n), 1]
    assert proportion_ci95(0, 10) == pytest.approx([0.0, 1 - 0.025 ** 0.1])
    assert proportion_ci95(10, 10) == pytest.approx([0.025 ** 0.1, 1.0])
    lo, hi = proportion_ci95(376, 397)  # 94.71 %, the shipped model's audio-missing row
    assert lo == pytest.approx(0.9203, abs=2e-4) and hi == pytest.approx(0.9670, abs=2e-4)
    assert proportion_ci95(0, 0) is None
    with pytest.raises(ValueError):
        proportion_ci95(11, 10)


def test_user_folders(tiny_model, quick_key, tmp_path, capsys):
    """WAVs at other rates and IMU CSVs written from test data replace the test sources."""
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.data.encode import encode_split

    ds = load_split("test", key=quick_key)
    ua, ui = tmp_path / "audio", tmp_path / "imu"
    from scipy.signal import resample_poly

    for j in range(len(ds.audio_labels)):
        lab = int(ds.audio_labels[j])
        if lab > 3:
            continue
        rate = (8000, 22050)[j % 2]
        x = resample_poly(ds.audio[j], rate // 50, 16000 // 50) if rate != 16000 else ds.audio[j]
        _write_wav(ua / str(lab) / f"u{j}.wav", x, rate)
    for j in range(len(ds.imu_labels)):
        _write_csv(ui / str(int(ds.imu_labels[j])) / f"s{j}.csv", ds.imu_stamps_ns * 1e-9, ds.imu_accel[j])
    cfgs = node_encoder_configs()
    # an IMU CSV of a test series gives exactly the test encoding (same encoder, same stamps)
    imu = load_user_modality("imu", ui, cfgs, ds.duration_ns)
    ref = encode_split(ds, cfgs, progress=False)
    first = int(np.nonzero(imu.labels == ds.imu_labels[0])[0][0])
    np.testing.assert_array_equal(imu.spikes[first], encode_imu(ds.imu_stamps_ns, ds.imu_accel[0], None, cfgs.imu, 20))
    assert imu.spikes.shape[1:] == ref.spikes["imu"].shape[1:]
    aud = load_user_modality("audio", ua, cfgs, ds.duration_ns)
    assert set(aud.labels.tolist()) <= {0, 1, 2, 3} and aud.spikes.any()
    res = _eval(["--model", str(tiny_model), "--build", quick_key, "--json", "--user-audio", str(ua),
                 "--user-imu", str(ui), "--no-noise", "--no-progress"], capsys)
    assert res["sources"]["audio"].startswith("user:") and res["sources"]["imu"].startswith("user:")
    assert res["sources"]["dvs"] == "test split"
    assert 0 < res["n_test"] and sum(map(sum, res["confusion_matrix"])) == res["n_test"]
    assert np.array(res["confusion_matrix"])[4:].sum() == 0, "only the user's classes 0-3 are paired"
    assert "audio_speaker_accuracy" not in res, "user audio has no test speakers"
    assert "skipped" in res["baseline"]["imu"], "user IMU folders have no raw train split to compare with"
    # user audio only: the IMU baseline is read on the re-paired fused samples
    res = _eval(["--model", str(tiny_model), "--build", quick_key, "--json", "--user-audio", str(ua),
                 "--backend-samples", "torch=2", "--no-noise", "--no-progress"], capsys)
    assert res["baseline"]["imu"]["n_fused_samples"] == res["n_test"]


def test_user_folder_errors(tmp_path):
    cfgs = node_encoder_configs()
    (tmp_path / "x" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a class name"):
        load_user_modality("audio", tmp_path / "x", cfgs, 10**9)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,ax,ay\n0,1,2\n")
    with pytest.raises(ValueError, match=r"columns \['t_s', 'az'\] missing"):
        read_imu_csv(bad)
    with pytest.raises(ValueError, match="modality 'dvs'"):
        load_user_modality("dvs", tmp_path, cfgs, 10**9)
    with pytest.raises(FileNotFoundError):
        load_user_modality("imu", tmp_path / "nope", cfgs, 10**9)
