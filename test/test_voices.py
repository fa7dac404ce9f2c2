"""`snn-fusion voices`: the audio path on fresh eSpeak voices, and the model's own validation accents."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from snn_fusion_ros.data.audio import espeak_base
from snn_fusion_ros.data.encode import encode_split, node_encoder_configs
from snn_fusion_ros.snn import train_cli, voices
from snn_fusion_ros.snn.artifact import load_artifact

pytestmark = pytest.mark.unit

pytest.importorskip("espeakng_loader", reason="espeakng-loader not installed")


@pytest.fixture(scope="module")
def accent_model(quick_key, tmp_path_factory):
    """A 1-epoch model of the quick build whose validation holds out whole accents; and its encoded split."""
    from snn_fusion_ros.data.dataset import load_split

    tmp = tmp_path_factory.mktemp("model")
    enc = encode_split(load_split("train", key=quick_key), progress=False)
    s = train_cli.TrainSettings(epochs=1, hidden_neurons=8, fusion_neurons=8, val_fraction=0.5,
                                val_audio_holdout="accent")
    train_cli.fit(enc, node_encoder_configs(), s, tmp / "m", tmp / "ck", quick_key, progress=False)
    return tmp / "m", enc, s


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    p = argparse.ArgumentParser()
    voices.add_arguments(p)
    rc = voices.run(p.parse_args(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_model_validation_accents_are_the_accents_its_validation_held_out(accent_model):
    path, enc, s = accent_model
    _, val = train_cli.split_validation(enc, s.val_fraction, np.random.default_rng([s.seed, 1]), "accent")
    held = sorted({espeak_base(x) for x in enc.speakers[val["audio"]].tolist()})
    assert held and voices.model_validation_accents(load_artifact(path)) == held
    trained = {espeak_base(x) for i, x in enumerate(enc.speakers.tolist()) if i not in set(val["audio"].tolist())}
    assert not set(held) & trained, "a validation accent was trained on"


def test_voices_json_scores_the_audio_path_on_unused_variants(accent_model, capsys):
    path, _, _ = accent_model
    rc, out, _ = _run(["--model", str(path), "--variants", "m6,m7", "--reps", "1", "--json"], capsys)
    assert rc == 0
    res = json.loads(out)
    accents = voices.model_validation_accents(load_artifact(path))
    assert res["accents"] == accents and res["variants"] == ["m6", "m7"]
    assert res["n"] == 10 * 2 * len(accents)  # ten digit words per voice, one rendition
    assert set(res["per_variant"]) == {"m6", "m7"} and set(res["per_accent"]) == set(accents)
    assert sum(v["n"] for v in res["per_voice"].values()) == res["n"]
    lo, hi = res["accuracy_ci95"]
    assert 0.0 <= lo <= res["audio_alone_accuracy"] <= hi <= 1.0
    assert res["split_overlap"] == {"train_accents": [], "model_validation_accents": accents, "test_accents": [],
                                    "train_variants": [], "test_variants": []}


def test_voices_flags_test_split_voices_and_refuses_what_it_cannot_do(accent_model, tiny_model, capsys):
    path, _, _ = accent_model
    rc, out, _ = _run(["--model", str(path), "--accents", "fr", "--variants", "m4", "--reps", "1", "--json"], capsys)
    assert rc == 0
    overlap = json.loads(out)["split_overlap"]
    assert overlap["test_accents"] == ["fr"] and overlap["test_variants"] == ["m4"]
    rc, _, err = _run(["--model", str(path), "--variants", "m99", "--reps", "1"], capsys)
    assert rc == 1 and "unknown eSpeak variant" in err and "m99" in err
    # a model without recorded training settings: its validation accents are unknown
    rc, _, err = _run(["--model", str(tiny_model), "--reps", "1"], capsys)
    assert rc == 1 and "pass --accents" in err


def test_synthesized_voices_say_every_digit_in_order():
    waves, labels, speakers = voices.synthesize_voices(["da+m6"], 2, seed=0, sample_rate_hz=16000, duration_ms=1000)
    assert waves.shape == (20, 16000) and waves.dtype == np.float32
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 2))
    assert set(speakers.tolist()) == {"espeak:da+m6"}
    assert np.abs(waves).max() > 0.01  # speech, not silence
