"""``snn-fusion merge``: K networks side by side in one network whose readout is the sum of theirs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from snn_fusion_ros import cli
from snn_fusion_ros.backends import create_backend
from snn_fusion_ros.snn.artifact import load_artifact, save_artifact
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.merge import merge_networks, merged_config
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.snn.synthetic import make_synthetic, train_synthetic_artifact

pytestmark = pytest.mark.unit

BASE = FusionNetConfig(audio_neurons=12, dvs_neurons=20, imu_neurons=6, hidden_neurons=8, fusion_neurons=10,
                       num_classes=4)
CLASSES = ("a", "b", "c", "d")


def _random_net(seed: int, **kw) -> FusionNet:
    net = FusionNet(dataclasses.replace(BASE, seed=seed, **kw))
    with torch.no_grad():  # a readout large enough that a wrong block layout changes the decisions
        net.w_out.mul_(5.0)
    return net.eval()


def _inputs(cfg: FusionNetConfig, batch: int, steps: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: (torch.rand(batch, steps, n, generator=g) < 0.2).float() for m, n in cfg.input_sizes.items()}


POPULATION_TAUS = {"population_tau_mem_ms": (20.0, 60.0, 200.0), "population_tau_syn_ms": (10.0, 5.0, 20.0)}


@pytest.mark.parametrize(("delay", "taus"), [(0, {}), (1, {}), (1, POPULATION_TAUS)])
def test_merged_readout_is_the_sum_of_the_members(delay, taus):
    members = [_random_net(1, synaptic_delay_steps=delay, **taus),
               _random_net(2, hidden_neurons=5, fusion_neurons=7, synaptic_delay_steps=delay, **taus),
               _random_net(3, hidden_neurons=11, synaptic_delay_steps=delay, **taus)]
    merged = merge_networks(members)
    assert (merged.config.hidden_neurons, merged.config.fusion_neurons) == (24, 27)
    x = _inputs(BASE, 6, 40, seed=7)
    with torch.no_grad():
        v = merged(x)
        parts = [m(x) for m in members]
        total = sum(parts)
        torch.testing.assert_close(v, total, atol=1e-4, rtol=1e-5)
        assert not torch.allclose(parts[0], parts[1]), "members differ, so the test would see a mixed-up layout"
        # each member's modality populations stay its own: a missing modality is still all-zero input
        x_no_dvs = dict(x, dvs=torch.zeros_like(x["dvs"]))
        torch.testing.assert_close(merged(x_no_dvs), sum(m(x_no_dvs) for m in members), atol=1e-4, rtol=1e-5)
    # streaming (the nodes' path, one product per member block) gives the summed membranes' softmax
    assert merged._inference_weights()["fuse"].n_blocks == 3
    s = BASE.steps_per_window
    merged.reset()
    for w in range(4):
        probs = merged.step({m: a[0, w * s:(w + 1) * s].numpy().astype(bool) for m, a in x.items()})
        ref = torch.softmax(total[0, (w + 1) * s - 1], dim=-1).numpy()
        np.testing.assert_allclose(probs, ref, atol=1e-5)


def _stream_ends(net: FusionNet, x: dict[str, torch.Tensor], windows: int) -> np.ndarray:
    s = net.config.steps_per_window
    net.reset()
    return np.stack([net.step_values({m: a[0, w * s:(w + 1) * s].numpy().astype(bool) for m, a in x.items()})
                     for w in range(windows)])


def test_streaming_follows_in_place_weight_changes_across_member_blocks():
    """The step's cached block products are rebuilt when w_fuse changes in place (as online STDP does):
    a synapse written between two members' blocks joins them, and streaming still equals forward."""
    merged = merge_networks([_random_net(1), _random_net(2)])
    x = _inputs(BASE, 1, 40, seed=8)
    before = _stream_ends(merged, x, 4)
    assert merged._inference_weights()["fuse"].n_blocks == 2
    with torch.no_grad():
        merged.w_fuse.add_(0.3)  # every fusion neuron now reads every hidden neuron of both members
        ref = merged.window_end_values(merged(x))[0].numpy()
    after = _stream_ends(merged, x, 4)
    assert merged._inference_weights()["fuse"].n_blocks == 1
    assert not np.allclose(before, after, atol=1e-3), "the change must matter for the test to see a stale cache"
    np.testing.assert_allclose(after, ref[:4], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (CI has none; runs on a GPU machine)")
def test_merged_network_streams_on_cuda_as_on_the_cpu():
    """The block products of the step run on the GPU too (dense recurrence there): same readouts."""
    merged = merge_networks([_random_net(1), _random_net(2), _random_net(3)])
    x = _inputs(BASE, 1, 40, seed=9)
    ref = _stream_ends(merged, x, 4)
    merged.to("cuda")
    got = _stream_ends(merged, x, 4)
    assert merged._inference_weights()["fuse"].n_blocks == 3
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_only_population_sizes_and_seed_may_differ():
    a = dataclasses.replace(BASE, seed=1)
    assert merged_config([a, dataclasses.replace(BASE, seed=9, hidden_neurons=3)]).hidden_neurons == 11
    for change in ({"tau_mem_ms": 30.0}, {"threshold": 0.5}, {"dvs_neurons": 21}, {"synaptic_delay_steps": 0},
                   {"num_classes": 5}, {"population_tau_mem_ms": (20.0, 20.0, 200.0)}):
        with pytest.raises(ValueError, match=next(iter(change))):
            merged_config([a, dataclasses.replace(BASE, **change)])
    with pytest.raises(ValueError, match="at least 2"):
        merged_config([a])


@pytest.fixture(scope="module")
def trained_members(tmp_path_factory):
    cfg = FusionNetConfig(audio_neurons=16, dvs_neurons=32, imu_neurons=8, hidden_neurons=12, fusion_neurons=12,
                          num_classes=4)
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("members")
    paths = [train_synthetic_artifact(root / f"m{i}", dataclasses.replace(cfg, seed=i), seed=i, epochs=6)
             for i in range(2)]
    return cfg, paths


def test_merge_cli_writes_an_artifact_every_backend_runs(trained_members, tmp_path, capsys):
    cfg, paths = trained_members
    out = tmp_path / "merged"
    rc = cli.main(["merge", "--model", str(paths[0]), "--model", str(paths[1]), "--out", str(out), "--json",
                   "--threads", "1"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    art = load_artifact(out)
    assert res["version"] == art.version and (res["hidden_neurons"], res["fusion_neurons"]) == (24, 24)
    members = [load_artifact(p) for p in paths]
    meta = art.metadata
    assert [m["version"] for m in meta["extra"]["merged_from"]] == [m.version for m in members]
    assert meta["created_by"] == f"snn-fusion merge --model {paths[0]} --model {paths[1]} --out {out}"
    assert meta["extra"]["readout_abs_max"] == pytest.approx(
        sum(m.metadata["extra"]["readout_abs_max"] for m in members)), "an upper bound of the summed readout"
    data = make_synthetic(cfg, 8, 3, np.random.default_rng(5))
    x = {m: torch.as_tensor(a, dtype=torch.float32) for m, a in data.inputs.items()}
    with torch.no_grad():
        v = art.build_model()(x)
        ref = sum(m.build_model()(x) for m in members)
    torch.testing.assert_close(v, ref, atol=1e-4, rtol=1e-5)
    s = cfg.steps_per_window
    seq = [{m: a[0, w * s:(w + 1) * s] for m, a in data.inputs.items()} for w in range(3)]
    ref_probs = torch.softmax(ref[0, s - 1::s], dim=-1).numpy()
    for name in ("torch", "nir"):
        be = create_backend(name)
        be.load(art)
        probs = np.stack([be.step(w) for w in seq])
        np.testing.assert_allclose(probs, ref_probs, atol=1e-4, err_msg=name)


def test_merge_cli_refuses_members_that_do_not_fit(trained_members, tmp_path, capsys):
    cfg, paths = trained_members
    m0 = load_artifact(paths[0])
    other = tmp_path / "other_classes"
    save_artifact(other, m0.build_model(), ("w", "x", "y", "z"), m0.encoder_config, extra={})
    slow = tmp_path / "slow"
    save_artifact(slow, FusionNet(dataclasses.replace(cfg, tau_mem_ms=40.0)), m0.class_names, m0.encoder_config)
    for bad, msg in ((other, "classes"), (slow, "tau_mem_ms"), (tmp_path / "absent", "no model artifact")):
        rc = cli.main(["merge", "--model", str(paths[0]), "--model", str(bad), "--out", str(tmp_path / "o")])
        assert rc == 1 and msg in capsys.readouterr().err, bad
    rc = cli.main(["merge", "--model", str(paths[0]), "--out", str(tmp_path / "o")])
    assert rc == 1 and "at least twice" in capsys.readouterr().err
    # synthetic members record no data build, so there is no validation split to score on
    rc = cli.main(["merge", "--model", str(paths[0]), "--model", str(paths[1]), "--out", str(tmp_path / "o"),
                   "--validate"])
    assert rc == 1 and "one data build" in capsys.readouterr().err
    assert not (tmp_path / "o").exists(), "nothing is written when the merge is refused"


def test_bench_measures_the_structured_step_against_dense_products(trained_members, tmp_path):
    """``snn-fusion bench backends``' baseline row: the same torch step with dense products, on the same
    windows, takes the same decisions; a merged network of two members has two fusion blocks."""
    from snn_fusion_ros.bench.backends import _dense_products, _windows, rows

    _cfg, paths = trained_members
    merged = merge_networks([load_artifact(p).build_model() for p in paths])
    art = load_artifact(save_artifact(tmp_path / "m2", merged, CLASSES, {}))
    seqs, _ = _windows(art, 3, 4)
    got = _dense_products(art, seqs)
    assert got["fusion_blocks"] == 2
    assert got["decision_agreement"] == 1.0 and got["max_abs_prob_diff"] < 1e-5
    assert {"step_ms_p50", "step_ms_p99"} <= got["dense"].keys() and got["structured"].keys() == got["dense"].keys()
    [row] = [r for r in rows({"torch_dense_products": got}) if "structured" in r.figure]
    assert row.baseline == "same step, dense products" and row.baseline_value == got["dense"]["step_ms_p50"]


def _merged4(folder):
    """A merge of four random members (fusion weights 25 % non-zero) and 2 sequences x 3 windows."""
    merged = merge_networks([_random_net(k) for k in range(1, 5)])
    art = load_artifact(save_artifact(folder / "m4", merged, list(CLASSES), {}, extra={"readout_abs_max": 50.0}))
    data = make_synthetic(art.config, 2, 3, np.random.default_rng(3))
    s = art.config.steps_per_window
    return art, [[{m: a[i, w * s:(w + 1) * s] for m, a in data.inputs.items()} for w in range(3)] for i in range(2)]


def _stream_probs(be, art, seqs) -> tuple[np.ndarray, dict]:
    """``be``'s probabilities over ``seqs`` (bench's :func:`run_backend`: reset per sequence) and its health."""
    from snn_fusion_ros.bench.backends import run_backend

    try:
        be.load(art)
        return run_backend(be, seqs)[0], be.health()
    finally:
        if hasattr(be, "close"):
            be.close()


def test_lava_runs_a_merges_zero_blocks_as_sparse_projections_with_dense_results(tmp_path):
    """Lava's Sparse holds only a merge's non-zero synapses and does Dense's integer arithmetic: the
    same readout, bit for bit, as the all-Dense graph on the same windows."""
    from snn_fusion_ros.backends import backend_availability

    ok, reason = backend_availability("lava")
    if not ok:
        pytest.skip(reason)
    art, seqs = _merged4(tmp_path)
    out, health = {}, {}
    for sparse in (True, False):
        out[sparse], health[sparse] = _stream_probs(create_backend("lava", target="sim", sparse=sparse), art, seqs)
    assert health[True]["sparse_projections"] == ["rec", "fuse"]  # input and readout weights are dense
    assert health[False]["sparse_projections"] == []
    np.testing.assert_array_equal(out[True], out[False])
    assert len(np.unique(out[True].argmax(1))) > 1, "windows that all take one decision test little"


def test_akida_runs_a_merges_fusion_blocks_as_one_model_each_with_the_same_currents(tmp_path):
    """Per-row 8-bit scales make the block split exact: the same probabilities as one dense model."""
    pytest.importorskip("akida")
    art, seqs = _merged4(tmp_path)
    split, h_split = _stream_probs(create_backend("akida", target="software"), art, seqs)
    whole, h_whole = _stream_probs(create_backend("akida", target="software", split_blocks=False), art, seqs)
    assert h_split["block_projections"] == {"fuse": 4} and h_whole["block_projections"] == {}
    np.testing.assert_array_equal(split, whole)
    assert len(np.unique(split.argmax(1))) > 1, "windows that all take one decision test little"
