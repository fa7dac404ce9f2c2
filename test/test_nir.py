"""NIR export: graph structure, round trip in memory and through a file, independent consumers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snn_fusion_ros.backends.nir_backend import (
    NIRGraphRunner,
    export_nir,
    read_nir,
    roundtrip_bytes,
    write_nir,
)
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.snn.synthetic import make_synthetic
from snn_fusion_ros.snn.training import train

nir = pytest.importorskip("nir")
pytestmark = pytest.mark.unit

CFG = FusionNetConfig(audio_neurons=16, dvs_neurons=32, imu_neurons=8, hidden_neurons=16, fusion_neurons=16,
                      num_classes=3)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    m = FusionNet(CFG)
    data = make_synthetic(CFG, 48, 4, np.random.default_rng(0))
    train(m, lambda: data.batches(16), epochs=6, lr=0.01, seed=0, progress=False)
    return m


@pytest.fixture(scope="module")
def test_windows():
    data = make_synthetic(CFG, 12, 4, np.random.default_rng(5))
    return data


def _torch_ends(model, data) -> np.ndarray:
    with torch.no_grad():
        v = model({m: torch.from_numpy(a.astype(np.float32)) for m, a in data.inputs.items()})
    model.reset()
    return model.window_end_values(v).numpy()


def _runner_ends(runner: NIRGraphRunner, data) -> np.ndarray:
    s = CFG.steps_per_window
    n_seq, t_len = data.labels.shape[0], next(iter(data.inputs.values())).shape[1]
    out = np.zeros((n_seq, t_len // s, CFG.num_classes))
    for i in range(n_seq):
        runner.reset()
        for t in range(t_len):
            runner.step({f"input_{m}": a[i, t] for m, a in data.inputs.items()})
            if (t + 1) % s == 0:
                out[i, t // s] = runner.membrane()
    return out


def test_export_structure(model):
    g = export_nir(model)
    kinds = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert kinds["input_dvs"] == "Input" and kinds["output"] == "Output"
    assert kinds["audio.lif"] == "CubaLIF" and kinds["audio.w_rec"] == "Linear"
    assert ("audio.w_rec", "audio.lif") in g.edges and ("audio.lif", "audio.w_rec") in g.edges
    lif = g.nodes["fusion.lif"]
    dt = CFG.step_ms * 1e-3
    # Euler at dt reproduces alpha/beta exactly
    assert 1 - dt / lif.tau_syn[0] == pytest.approx(CFG.alpha)
    assert 1 - dt / lif.tau_mem[0] == pytest.approx(CFG.beta)
    np.testing.assert_array_equal(g.nodes["readout.w_out"].weight, model.w_out.detach().numpy())
    assert np.isinf(g.nodes["readout.li"].v_threshold).all()
    assert g.metadata["score_node"] == "readout.li"


def test_subtract_reset_cannot_be_exported():
    with pytest.raises(ValueError, match="reset_mechanism"):
        export_nir(FusionNet(dataclasses.replace(CFG, reset_mechanism="subtract")))


def _assert_same_graph(a, b):
    assert set(a.nodes) == set(b.nodes)
    assert sorted(map(tuple, a.edges)) == sorted(map(tuple, b.edges))
    for k, node in a.nodes.items():
        other = b.nodes[k]
        assert type(other) is type(node), k
        for f in ("weight", "tau_syn", "tau_mem", "r", "v_threshold", "w_in"):
            if hasattr(node, f):
                np.testing.assert_array_equal(np.asarray(getattr(other, f)), np.asarray(getattr(node, f)), err_msg=k)


def test_round_trip_in_memory_and_through_file(model, tmp_path):
    g = export_nir(model)
    _assert_same_graph(g, roundtrip_bytes(g))
    path = write_nir(tmp_path / "fusion.nir", g)
    assert path.stat().st_size > 0
    back = read_nir(path)
    _assert_same_graph(g, back)
    assert float(np.asarray(back.metadata["dt_s"])) == pytest.approx(CFG.step_ms * 1e-3)


def test_reimported_graph_reproduces_torch(model, test_windows, tmp_path):
    ref = _torch_ends(model, test_windows)
    back = read_nir(write_nir(tmp_path / "m.nir", export_nir(model)))
    got = _runner_ends(NIRGraphRunner(back), test_windows)
    assert float((got.argmax(-1) == ref.argmax(-1)).mean()) >= 0.99
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_snntorch_neurons_consume_the_graph(model, test_windows):
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch", reason="snntorch.import_nir needs nirtorch (nirtorch==2.6)")
    ref = _torch_ends(model, test_windows)
    got = _runner_ends(NIRGraphRunner(roundtrip_bytes(export_nir(model)), neurons="snntorch"), test_windows)
    agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
    assert agree >= 0.99, f"snnTorch neurons agree on {agree:.3f}"


def test_runner_rejects_unsupported_nodes_and_missing_dt():
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type=np.array([2])),
                            "conv": nir.Scale(scale=np.ones(2)),
                            "out": nir.Output(output_type=np.array([2]))},
                     edges=[("in", "conv"), ("conv", "out")], metadata={"dt_s": 0.001})
    with pytest.raises(ValueError, match="not supported"):
        NIRGraphRunner(g)
    g2 = nir.NIRGraph(nodes={"in": nir.Input(input_type=np.array([2])), "out": nir.Output(output_type=np.array([2]))},
                      edges=[("in", "out")], metadata={})
    with pytest.raises(ValueError, match="dt_s"):
        NIRGraphRunner(g2)
    with pytest.raises(ValueError, match="neurons"):
        NIRGraphRunner(g2, dt_s=0.001, neurons="brian")


def test_runner_applies_large_sparse_weights_as_csr_with_the_same_result():
    """A large, mostly-zero Linear (block-diagonal populations, a merged network's member blocks) runs as
    a CSR matrix; the outputs equal the dense product, and a small or dense weight stays an array."""
    from scipy.sparse import issparse

    from snn_fusion_ros.backends.nir_backend import SPARSE_MIN_SIZE

    rng = np.random.default_rng(5)
    n = int(np.ceil(np.sqrt(SPARSE_MIN_SIZE)))
    w_sparse = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.05)
    w_small = rng.normal(size=(8, n)) * (rng.random((8, n)) < 0.05)
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type=np.array([n])), "sparse": nir.Linear(weight=w_sparse),
                            "small": nir.Affine(weight=w_small, bias=np.ones(8)),
                            "out": nir.Output(output_type=np.array([n])),
                            "out2": nir.Output(output_type=np.array([8]))},
                     edges=[("in", "sparse"), ("sparse", "out"), ("in", "small"), ("small", "out2")],
                     metadata={"dt_s": 0.001})
    runner = NIRGraphRunner(g)
    assert issparse(runner.ops["sparse"][1]) and not issparse(runner.ops["small"][1])
    for _ in range(3):
        x = (rng.random(n) < 0.2).astype(np.float64)
        out = runner.step({"in": x})
        np.testing.assert_allclose(out["out"], w_sparse @ x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out["out2"], w_small @ x + 1.0, rtol=1e-12, atol=1e-12)


def test_runner_lif_closed_form():
    # a single CubaLIF under constant input through the runner equals the closed-form current/membrane
    dt, alpha, beta = 0.005, 0.5, 0.8
    tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
    lif = nir.CubaLIF(tau_syn=np.array([tau_syn]), tau_mem=np.array([tau_mem]), r=np.array([tau_mem / dt]),
                      v_leak=np.zeros(1), v_threshold=np.array([np.inf]), w_in=np.array([tau_syn / dt]))
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type=np.array([1])), "lif": lif,
                            "out": nir.Output(output_type=np.array([1]))},
                     edges=[("in", "lif"), ("lif", "out")], metadata={"dt_s": dt})
    r = NIRGraphRunner(g)
    for t in range(15):
        r.step({"in": np.array([0.4])})
        cur = [0.4 * (1 - alpha ** (k + 1)) / (1 - alpha) for k in range(t + 1)]
        assert r.membrane("lif")[0] == pytest.approx(sum(beta ** (t - k) * c for k, c in enumerate(cur)), rel=1e-12)


def test_without_delays_no_delay_nodes_and_still_exact(test_windows):
    cfg0 = dataclasses.replace(CFG, synaptic_delay_steps=0)
    m0 = FusionNet(cfg0)
    g = export_nir(m0)
    assert not any(type(n).__name__ == "Delay" for n in g.nodes.values())
    assert any(type(n).__name__ == "Delay" for n in export_nir(FusionNet(CFG)).nodes.values())
    ref = _torch_ends(m0, test_windows)
    got = _runner_ends(NIRGraphRunner(roundtrip_bytes(g)), test_windows)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.abs(ref).max() > 0.1, "network should respond (else the comparison is vacuous)"
