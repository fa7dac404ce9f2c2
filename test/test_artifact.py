"""Model artifact: save/load round trip, version string, tamper and inconsistency rejection."""

from __future__ import annotations

import dataclasses
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


# --- format 2: a merge's block-structured tensors stored as their blocks ---------------------------

def _merged(tmp_path):
    from snn_fusion_ros.snn.merge import merge_networks

    members = [FusionNet(dataclasses.replace(CFG, seed=s)) for s in (1, 2, 3)]
    net = merge_networks(members)
    return net, save_artifact(tmp_path / "merged", net, ["walk", "run", "idle"], {}, {"merged_from": []},
                              store_blocks=True)


def _stored_keys(path):
    raw = (path / "weights.safetensors").read_bytes()
    return set(json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])) - {"__metadata__"}


def test_single_network_stays_format_1(saved):
    model, path = saved
    meta = json.loads((path / "model.json").read_text())
    assert meta["format_version"] == 1 and "stored_blocks" not in meta
    assert _stored_keys(path) == set(model.artifact_tensors())


def test_merge_stored_as_blocks_loads_equal(tmp_path):
    net, path = _merged(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    assert meta["format_version"] == 2
    # three members: the fusion and recurrent weights are three independent blocks each
    assert meta["stored_blocks"]["w_fuse"] == 3 and all(meta["stored_blocks"][f"w_rec.{m}"] == 3
                                                      for m in ("audio", "dvs", "imu"))
    assert "w_in.audio" in _stored_keys(path) and "w_fuse" not in _stored_keys(path)  # stacked rows: dense
    from safetensors.torch import load_file

    stored = load_file(str(path / "weights.safetensors"))
    dense_bytes = sum(4 * t.numel() for t in net.artifact_tensors().values())
    assert sum(t.element_size() * t.numel() for t in stored.values()) < 0.6 * dense_bytes
    # the same network saved without block storage is format 1
    plain = save_artifact(tmp_path / "plain", net, ["walk", "run", "idle"], {})
    assert json.loads((plain / "model.json").read_text())["format_version"] == 1
    art = load_artifact(path)
    assert meta["tensors"] == {k: list(v.shape) for k, v in net.artifact_tensors().items()}
    for k, v in net.artifact_tensors().items():
        assert torch.equal(art.tensors[k], v), k
    rng = np.random.default_rng(1)
    win = {m: rng.random((10, n)) < 0.3 for m, n in CFG.input_sizes.items()}
    np.testing.assert_array_equal(art.build_model().step_values(win), net.step_values(win))


def _rewrite_weights(path, edit):
    """Apply ``edit`` to the stored tensors and re-sign the file (a consistent checksum, bad content)."""
    from safetensors.torch import load_file, save_file

    from snn_fusion_ros.snn.artifact import sha256_file

    w = path / "weights.safetensors"
    stored = load_file(str(w))
    edit(stored)
    save_file(stored, str(w))
    _edit_meta(path, weights_sha256=sha256_file(w))


def _shift_rows(stored):
    stored["w_fuse@block1.rows"] = stored["w_fuse@block0.rows"].clone()  # overlaps block 0


def _out_of_range(stored):
    stored["w_fuse@block2.cols"] = stored["w_fuse@block2.cols"] + 1000


def _drop_block(stored):
    del stored["w_rec.dvs@block1.values"]


def _bad_values(stored):
    stored["w_fuse@block0.values"] = stored["w_fuse@block0.values"][:, :-1].contiguous()


def _float_indices(stored):
    stored["rec_mask.imu@block0.rows"] = stored["rec_mask.imu@block0.rows"].float()


@pytest.mark.parametrize(("edit", "message"), [
    (_shift_rows, "used by no other block"),
    (_out_of_range, "within"),
    (_drop_block, "lacks"),
    (_bad_values, "float32 of shape"),
    (_float_indices, "int32"),
])
def test_corrupt_blocks_rejected(tmp_path, edit, message):
    _, path = _merged(tmp_path)
    _rewrite_weights(path, edit)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"format_version": 1}, "stored_blocks needs format_version 2"),
    ({"stored_blocks": {"w_fuse": 3, "w_nope": 2}}, "not in tensors"),
    ({"stored_blocks": {"w_fuse": 1}}, "block counts >= 2"),
    ({"stored_blocks": {"w_fuse": 4}}, "lacks"),
])
def test_inconsistent_block_metadata_rejected(tmp_path, change, message):
    _, path = _merged(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    if "stored_blocks" in change:
        change = {"stored_blocks": {**meta["stored_blocks"], **change["stored_blocks"]}}
    _edit_meta(path, **change)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)
