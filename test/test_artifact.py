"""Model artifact: save/load round trip, version string, tamper and inconsistency rejection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from snn_fusion_ros.snn.artifact import ArtifactError, load_artifact, save_artifact
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet

pytestmark = pytest.mark.unit

CFG = FusionNetConfig(audio_neurons=8, dvs_neurons=16, imu_neurons=4, hidden_neurons=8, fusion_neurons=8,
                      num_classes=3, seed=3)


@pytest.fixture
def saved(tmp_path):
    model = FusionNet(CFG)
    path = save_artifact(tmp_path / "m1", model, ["walk", "run", "idle"], {"audio": {"num_channels": 4}},
                         {"note": "test"})
    return model, path


def test_round_trip(saved):
    model, path = saved
    art = load_artifact(path)
    assert art.config == CFG
    assert art.class_names == ("walk", "run", "idle")
    assert art.encoder_config == {"audio": {"num_channels": 4}}
    meta = json.loads((path / "model.json").read_text())
    assert art.version == f"m1@{meta['weights_sha256'][:12]}"
    assert meta["input_neurons"] == {"audio": 8, "dvs": 16, "imu": 4}
    assert meta["extra"] == {"note": "test"} and meta["created_by"]
    for k, v in model.artifact_tensors().items():
        assert torch.equal(art.tensors[k], v)
    rebuilt = art.build_model()
    rng = np.random.default_rng(0)
    win = {m: rng.random((10, n)) < 0.3 for m, n in CFG.input_sizes.items()}
    np.testing.assert_array_equal(rebuilt.step_values(win), model.step_values(win))
    assert load_artifact(path / "model.json").version == art.version


def test_weights_are_safetensors_not_pickle(saved):
    _, path = saved
    raw = (path / "weights.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert "w_fuse" in header and not raw.startswith(b"\x80")  # no pickle protocol marker
    # readable by the user that runs the node, not only by the one who trained it (installed to share/)
    assert (path / "weights.safetensors").stat().st_mode & 0o777 == 0o644


def test_tampered_weights_rejected(saved):
    _, path = saved
    w = path / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0x01
    w.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(path)


def _edit_meta(path, **changes):
    meta = json.loads((path / "model.json").read_text())
    meta.update(changes)
    (path / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(("change", "message"), [
    ({"format_version": 99}, "format_version"),
    ({"class_names": ["a", "b"]}, "class_names"),
    ({"class_names": ["a", "a", "b"]}, "class_names"),
    ({"input_neurons": {"audio": 9, "dvs": 16, "imu": 4}}, "input_neurons"),
    ({"weights_sha256": "0" * 64}, "sha256"),
    ({"weights_file": "../weights.safetensors"}, "plain file name"),
    ({"tensors": {}}, "tensor shapes"),
])
def test_inconsistent_metadata_rejected(saved, change, message):
    _, path = saved
    _edit_meta(path, **change)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


def test_config_not_matching_weights_rejected(saved):
    _, path = saved
    meta = json.loads((path / "model.json").read_text())
    meta["network_config"]["hidden_neurons"] = 9
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError):
        load_artifact(path)


def test_missing_or_garbage_files_rejected(tmp_path, saved):
    _, path = saved
    with pytest.raises(ArtifactError, match=r"no model\.json"):
        load_artifact(tmp_path / "nowhere")
    (path / "model.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(path)
    (path / "model.json").write_text("[]")
    with pytest.raises(ArtifactError, match="JSON object"):
        load_artifact(path)


def test_save_checks_class_names(tmp_path):
    with pytest.raises(ArtifactError, match="class_names"):
        save_artifact(tmp_path / "x", FusionNet(CFG), ["a", "b"], {})
