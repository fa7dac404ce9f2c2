"""Backends: registry, interface contract, agreement with the torch reference, absent hardware."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from snn_fusion_ros.backends import BACKENDS, Backend, BackendNotAvailable, backend_availability, create_backend
from snn_fusion_ros.backends.cli import collect
from snn_fusion_ros.bench.backends import run_backend
from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.snn.artifact import load_artifact
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.synthetic import make_synthetic, train_synthetic_artifact

pytestmark = pytest.mark.unit

CFG = FusionNetConfig(audio_neurons=32, dvs_neurons=128, imu_neurons=24, hidden_neurons=32, fusion_neurons=32,
                      num_classes=4)
N_SEQ, N_WIN = 20, 5
GOALS = {"nir": 0.99, "akida": 0.98, "lava": 0.99}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    torch.set_num_threads(1)
    path = train_synthetic_artifact(tmp_path_factory.mktemp("model") / "syn", CFG, seed=0, epochs=8, sequences=64)
    return load_artifact(path)


@pytest.fixture(scope="module")
def windows():
    data = make_synthetic(CFG, N_SEQ, N_WIN, np.random.default_rng(2024))
    s = CFG.steps_per_window
    return [[{m: a[i, w * s:(w + 1) * s] for m, a in data.inputs.items()} for w in range(N_WIN)]
            for i in range(N_SEQ)], data.labels


def run_all(backend: Backend, seqs) -> np.ndarray:
    """Probabilities over ``seqs``, state reset per sequence (the bench's :func:`run_backend`)."""
    return run_backend(backend, seqs)[0]


@pytest.fixture(scope="module")
def torch_probs(artifact, windows):
    be = create_backend("torch")
    be.load(artifact)
    return run_all(be, windows[0])


def test_registry_names_and_errors():
    assert set(BACKENDS) == {"torch", "lava", "akida", "nir"}
    with pytest.raises(ValueError, match=r"valid backends: \['akida', 'lava', 'nir', 'torch'\]"):
        create_backend("loihi")
    with pytest.raises(ValueError, match="valid backends"):
        backend_availability("spinnaker")
    ok, reason = backend_availability("torch")
    assert ok and reason == ""
    with pytest.raises(ValueError, match="device"):
        create_backend("torch", device="tpu")


def test_making_a_backend_caps_blas_at_one_thread():
    """Batch-1 matrix-vector products stall behind BLAS worker threads on a busy machine."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        for name in ("torch", "nir"):
            threadpool_limits(limits=2, user_api="blas")
            create_backend(name)
            pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
            assert pools and all(p["num_threads"] == 1 for p in pools), (name, pools)


def test_importing_one_backend_does_not_import_the_others():
    code = ("import sys; import snn_fusion_ros.backends.registry, snn_fusion_ros.backends.torch_backend; "
            "print([m for m in ('lava', 'akida', 'nir') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_backend_contract(artifact, windows, torch_probs):
    assert torch_probs.shape == (N_SEQ * N_WIN, 4) and torch_probs.dtype == np.float32
    np.testing.assert_allclose(torch_probs.sum(1), 1.0, atol=1e-5)
    acc = float((torch_probs.argmax(1).reshape(N_SEQ, N_WIN) == windows[1][:, None]).mean())
    assert acc >= 0.95, f"reference accuracy {acc}"
    be = create_backend("torch")
    with pytest.raises(RuntimeError, match="load"):
        be.step(windows[0][0][0])
    be.load(artifact)
    with pytest.raises(ValueError, match="known modalities") as ei:
        be.step({"lidar": np.zeros((10, 4), bool)})
    assert isinstance(ei.value, InputRejected)
    with pytest.raises(InputRejected, match="bad_shape"):
        be.step({"audio": np.zeros((10, 31), bool)})
    caps = be.capabilities()
    assert caps.device == "torch:cpu" and caps.online_learning and not caps.hardware_present
    be.step(windows[0][0][0])
    h = be.health()
    assert h["windows"] == 1 and h["model_version"] == artifact.version and h["last_step_ms"] > 0
    # reset really restarts the stream
    be.reset()
    np.testing.assert_array_equal(be.step(windows[0][0][0]), torch_probs[0])


def _available_or_skip(name: str) -> Backend:
    """A backend whose package is optional here (akida on a machine without its wheel: the GPU machine)."""
    ok, reason = backend_availability(name)
    if not ok:
        pytest.skip(f"{name} not available: {reason}")
    return create_backend(name)


@pytest.mark.parametrize("name", ["torch", "nir", "akida"])
def test_missing_modality_equals_zero_input_for_every_backend(name, artifact, windows):
    win = windows[0][3][0]
    be = _available_or_skip(name)
    be.load(artifact)
    a = be.step({"audio": win["audio"], "imu": win["imu"]})
    be.reset()
    b = be.step({**win, "dvs": np.zeros_like(win["dvs"])})
    np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("name", ["nir", "akida"])
def test_backend_agreement_with_torch(name, artifact, windows, torch_probs):
    be = _available_or_skip(name)
    be.load(artifact)
    probs = run_all(be, windows[0])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    agree = float((probs.argmax(1) == torch_probs.argmax(1)).mean())
    assert agree >= GOALS[name], f"{name} agrees on {agree:.3f} of decisions, goal {GOALS[name]}"
    with pytest.raises(ValueError, match="known modalities"):
        be.step({"sonar": np.zeros((10, 2), bool)})


def test_nir_backend_is_nearly_exact(artifact, windows, torch_probs):
    be = create_backend("nir")
    be.load(artifact)
    np.testing.assert_allclose(run_all(be, windows[0]), torch_probs, atol=1e-4)


def test_akida_reports_software_and_refuses_absent_hardware(artifact):
    pytest.importorskip("akida")
    from snn_fusion_ros.backends.akida_backend import akida_devices

    be = create_backend("akida")
    be.load(artifact)
    if not akida_devices():
        assert be.capabilities().device == "akida:software"
        assert not be.capabilities().hardware_present
        with pytest.raises(BackendNotAvailable, match="no AKD1000"):
            create_backend("akida", target="hardware")
    assert "w_rec" in be.health()["on_akida"]


@pytest.mark.hardware
def test_akida_on_chip(artifact, windows, torch_probs):
    pytest.importorskip("akida")
    from snn_fusion_ros.backends.akida_backend import akida_devices

    if not akida_devices():
        pytest.skip("no Akida chip: akida.devices() is empty")
    be = create_backend("akida", target="hardware")
    be.load(artifact)
    assert be.capabilities().hardware_present
    agree = float((run_all(be, windows[0]).argmax(1) == torch_probs.argmax(1)).mean())
    assert agree >= GOALS["akida"]


def _lava_or_skip():
    ok, reason = backend_availability("lava")
    if not ok:
        pytest.skip(reason)


def test_lava_agreement_with_torch(artifact, windows, torch_probs):
    _lava_or_skip()
    be = create_backend("lava", target="sim")
    try:
        be.load(artifact)
        probs = run_all(be, windows[0][:10])
        caps = be.capabilities()
        health = be.health()
    finally:
        be.close()
    assert caps.device == "lava:Loihi2SimCfg" and not caps.hardware_present
    assert health["hidden_processes"] == ["hidden"]  # shared time constants: one LIF process for 3H neurons
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    agree = float((probs.argmax(1) == torch_probs[: len(probs)].argmax(1)).mean())
    assert agree >= GOALS["lava"], f"lava agrees on {agree:.3f} of decisions"


def _large_readout_artifacts(artifact, folder):
    """The synthetic network with a slow readout whose class-0 weights are all positive, so its membrane
    grows past the 24-bit range of Lava's default readout format; saved without and with
    ``extra.readout_abs_max``. Returns (plain, calibrated, torch readout trace of the inputs, inputs)."""
    import dataclasses

    from snn_fusion_ros.snn.artifact import save_artifact
    from snn_fusion_ros.snn.network import FusionNet
    from snn_fusion_ros.snn.training import readout_abs_max

    cfg = dataclasses.replace(artifact.config, readout_tau_mem_ms=1e5)
    net = FusionNet(cfg)
    net.load_artifact_tensors(artifact.tensors)
    with torch.no_grad():
        net.w_out.mul_(0.1)
        net.w_out[0] = net.w_out.abs().max()
    data = make_synthetic(cfg, 4, N_WIN, np.random.default_rng(7))
    with torch.no_grad():
        trace = net({m: torch.from_numpy(a.astype(np.float32)) for m, a in data.inputs.items()}).numpy()
    net.reset()
    peak = readout_abs_max(net, data.inputs)
    plain = save_artifact(folder / "plain", net, ["a", "b", "c", "d"], {}, created_by="test")
    calibrated = save_artifact(folder / "cal", net, ["a", "b", "c", "d"], {}, extra={"readout_abs_max": peak},
                               created_by="test")
    return load_artifact(plain), load_artifact(calibrated), trace, data.inputs


def test_lava_readout_range_from_the_artifact_keeps_large_scores_from_wrapping(artifact, tmp_path):
    """Lava's 24-bit membrane wraps around on overflow; the recorded readout range prevents it."""
    _lava_or_skip()
    from snn_fusion_ros.backends.lava_backend import READOUT_HEADROOM, V_MAX, quantize_network

    plain, calibrated, trace, inputs = _large_readout_artifacts(artifact, tmp_path)
    peak = float(np.abs(trace).max())
    q_plain = quantize_network(plain.build_model().weights_numpy(), plain.config)
    q_cal = quantize_network(calibrated.build_model().weights_numpy(), calibrated.config,
                             readout_abs_max=calibrated.metadata["extra"]["readout_abs_max"])
    assert peak * 64 / q_plain["unit"]["readout"] > V_MAX, "the test network must overflow the default format"
    assert q_cal["unit"]["readout"] * V_MAX / 64 >= READOUT_HEADROOM * peak * (1 - 1e-6)
    with pytest.raises(ValueError, match="readout_abs_max"):
        quantize_network(plain.build_model().weights_numpy(), plain.config, readout_abs_max=float("nan"))
    s = CFG.steps_per_window
    scores = {}
    near_limit = {}
    for name, art in (("plain", plain), ("calibrated", calibrated)):
        be = create_backend("lava", target="sim")
        try:
            if name == "plain":
                with pytest.warns(RuntimeWarning, match="readout_abs_max"):
                    be.load(art)
            else:
                be.load(art)
            out = []
            with (pytest.warns(RuntimeWarning, match="3/4 of its 24-bit range") if name == "plain"
                  else contextlib.nullcontext()):
                for i in range(len(trace)):
                    be.reset()
                    for w in range(N_WIN):
                        be.step({m: a[i, w * s:(w + 1) * s] for m, a in inputs.items()})
                    out.append(np.asarray(be._procs["readout"].v.get(), np.float64) * be.q["unit"]["readout"] / 64)
            scores[name] = np.asarray(out)
            near_limit[name] = be.readout_near_limit
        finally:
            be.close()
    assert near_limit["calibrated"] == 0 and near_limit["plain"] > 0, near_limit
    ref = trace[:, -1]  # torch readout membrane at the end of each sequence
    # Lava's dense output arrives one step later, so compare with a tolerance of a few percent of the range
    tol = 0.05 * peak
    assert np.abs(scores["calibrated"] - ref).max() < tol, (scores["calibrated"], ref)
    assert np.abs(scores["plain"] - ref).max() > 0.5 * peak, "without the range the membrane should have wrapped"


def test_lava_refuses_absent_loihi2():
    _lava_or_skip()
    from snn_fusion_ros.backends.lava_backend import loihi2_hardware_present

    present, reason = loihi2_hardware_present()
    if present:
        pytest.skip("lava-loihi is installed here")
    assert "lava-loihi" in reason
    with pytest.raises(BackendNotAvailable, match="lava-loihi"):
        create_backend("lava", target="loihi2")
    assert create_backend("lava").capabilities().device == "lava:Loihi2SimCfg"


@pytest.mark.hardware
def test_lava_on_loihi2(artifact, windows):
    _lava_or_skip()
    from snn_fusion_ros.backends.lava_backend import loihi2_hardware_present

    present, reason = loihi2_hardware_present()
    if not present:
        pytest.skip(reason)
    be = create_backend("lava", target="loihi2")
    try:
        be.load(artifact)
        assert be.capabilities().hardware_present
        assert be.step(windows[0][0][0]).shape == (4,)
    finally:
        be.close()


def test_lava_quantisation_is_loihi2_format(artifact):
    from snn_fusion_ros.backends.lava_backend import decay_12bit, quantize_network

    q = quantize_network(artifact.build_model().weights_numpy(), artifact.config)
    for name, d in q["dense"].items():
        assert d.weights.min() >= -256 and d.weights.max() <= 254, name
        assert np.all(d.weights % 2 == 0), f"{name}: mixed-sign 8-bit weights are even"
        assert -8 <= d.weight_exp <= 0
    assert q["dense"]["in"].weights.max() == 254 or q["dense"]["in"].weights.min() <= -254
    assert decay_12bit(artifact.config.alpha) == round(4096 * (1 - artifact.config.alpha))
    # threshold exactly representable: vth * unit == threshold
    assert q["vth"]["hidden"] * q["unit"]["hidden"] == pytest.approx(artifact.config.threshold, rel=1e-12)


def test_lava_compat_patch_rewrites_only_the_bad_defaults():
    from snn_fusion_ros.backends._lava_compat import patch_source

    src = "from dataclasses import dataclass, InitVar\n@dataclass\nclass A:\n    x: ByteEncoder = ByteEncoder()\n"
    out = patch_source(src)
    assert "= _snn_fusion_dc_field(default_factory=ByteEncoder)" in out
    assert out.index("from dataclasses import field as _snn_fusion_dc_field") < out.index("class A")
    assert patch_source("x = 1\n") == "x = 1\n"


def test_info_cli_lists_every_backend(capsys):
    from snn_fusion_ros.backends import cli

    info = collect()
    assert set(info) == set(BACKENDS)
    for name, e in info.items():
        assert isinstance(e["available"], bool)
        assert e["available"] or e["reason"], f"{name} unavailable without a reason"
    assert info["torch"]["available"]
    assert cli.run(type("A", (), {"json": True})()) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed.keys() == info.keys()


def test_akida_matches_torch_without_delays(tmp_path, windows):
    pytest.importorskip("akida")
    import dataclasses

    cfg0 = dataclasses.replace(CFG, synaptic_delay_steps=0)
    art = load_artifact(train_synthetic_artifact(tmp_path / "d0", cfg0, seed=1, epochs=6, sequences=48))
    ref, akd = create_backend("torch"), create_backend("akida")
    ref.load(art)
    akd.load(art)
    a, b = run_all(ref, windows[0]), run_all(akd, windows[0])
    assert float((a.argmax(1) == b.argmax(1)).mean()) >= GOALS["akida"]


CUDA = torch.cuda.is_available()


@pytest.mark.skipif(CUDA, reason="this machine has CUDA; test_torch_cuda_matches_cpu covers it")
def test_torch_cuda_refused_without_a_gpu():
    with pytest.raises(RuntimeError, match="cuda"):
        create_backend("torch", device="cuda")
    assert create_backend("torch", device="auto").device == "cpu"


@pytest.mark.skipif(not CUDA, reason="no CUDA device (CI has none; runs on a GPU machine)")
def test_torch_cuda_matches_cpu(artifact, windows, torch_probs):
    """The reference network on a GPU: same probabilities as the CPU to float32 rounding, same decisions,
    the missing-modality contract, reset, and no online STDP (it updates CPU weights)."""
    from snn_fusion_ros.snn.stdp import STDPConfig

    assert create_backend("torch", device="auto").device == "cuda"
    be = create_backend("torch", device="cuda")
    be.load(artifact)
    caps = be.capabilities()
    assert caps.device == "torch:cuda:0" and caps.hardware_present
    assert be.model.w_out.device.type == "cuda"
    probs = run_all(be, windows[0])
    assert probs.dtype == np.float32 and probs.shape == torch_probs.shape
    np.testing.assert_allclose(probs, torch_probs, atol=1e-4)
    assert float((probs.argmax(1) == torch_probs.argmax(1)).mean()) == 1.0
    win = windows[0][3][0]
    be.reset()
    a = be.step({"audio": win["audio"], "imu": win["imu"]})
    be.reset()
    b = be.step({**win, "dvs": np.zeros_like(win["dvs"])})
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputRejected, match="bad_shape"):
        be.step({"audio": np.zeros((10, 31), bool)})
    with pytest.raises(ValueError, match="STDP"):
        create_backend("torch", device="cuda", stdp=STDPConfig(enabled=True)).load(artifact)


def test_torch_backend_online_stdp_changes_weights_and_checkpoints(artifact, windows):
    from snn_fusion_ros.snn.stdp import STDPConfig

    plain = create_backend("torch")
    plain.load(artifact)
    assert plain.stdp is None
    be = create_backend("torch", stdp=STDPConfig(enabled=True, learning_rate=0.01))
    be.load(artifact)
    w0 = be.model.w_fuse.detach().clone()
    for win in windows[0][0]:
        be.step(win)
    assert be.stdp.updates == N_WIN
    assert not torch.equal(be.model.w_fuse.detach(), w0)
    state = be.stdp.state_dict()
    np.testing.assert_array_equal(state["w_fuse"], be.model.w_fuse.detach().numpy())


@pytest.mark.unit
def test_lava_imports_after_the_process_fixed_its_multiprocessing_context():
    """lava sets the start method at import; a process that used multiprocessing before must still load it."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp; mp.get_start_method(); "
            "from snn_fusion_ros.backends.registry import backend_availability; "
            "ok, why = backend_availability('lava'); print(ok, why)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if "not importable: ImportError" in out.stdout or "No module named 'lava'" in out.stdout:
        pytest.skip(f"lava-nc not installed: {out.stdout.strip()}")
    assert out.stdout.startswith("True"), out.stdout + out.stderr


# ---------------------------------------------------------------- per-population time constants
POP_CFG = dataclasses.replace(CFG, population_tau_mem_ms=(20.0, 40.0, 200.0), population_tau_syn_ms=(10.0, 5.0, 20.0))


@pytest.fixture(scope="module")
def pop_artifact(tmp_path_factory):
    torch.set_num_threads(1)
    path = train_synthetic_artifact(tmp_path_factory.mktemp("model") / "pop", POP_CFG, seed=3, epochs=6,
                                    sequences=48)
    return load_artifact(path)


@pytest.fixture(scope="module")
def pop_torch_probs(pop_artifact, windows):
    be = create_backend("torch")
    be.load(pop_artifact)
    return run_all(be, windows[0])


def test_per_population_time_constants_survive_the_artifact(pop_artifact):
    assert pop_artifact.config.population_tau_mem_ms == (20.0, 40.0, 200.0)
    assert pop_artifact.config.population_tau_syn_ms == (10.0, 5.0, 20.0)
    alpha = pop_artifact.build_model().hidden.alpha
    h = CFG.hidden_neurons
    assert isinstance(alpha, torch.Tensor) and alpha.shape == (3 * h,)
    assert float(alpha[0]) == pytest.approx(np.exp(-0.5)) and float(alpha[-1]) == pytest.approx(np.exp(-0.25))


def test_nir_exports_each_populations_time_constants(pop_artifact, windows, pop_torch_probs):
    from snn_fusion_ros.backends.nir_backend import export_nir

    graph = export_nir(pop_artifact.build_model())
    dt = CFG.step_ms * 1e-3
    taus = {m: float(np.unique(graph.nodes[f"{m}.lif"].tau_mem)[0]) for m in ("audio", "dvs", "imu")}
    for m, tau_ms in zip(("audio", "dvs", "imu"), POP_CFG.population_tau_mem_ms, strict=True):  # Euler: dt / (1 - beta)
        assert taus[m] == pytest.approx(dt / (1.0 - np.exp(-CFG.step_ms / tau_ms)))
    be = create_backend("nir")
    be.load(pop_artifact)
    np.testing.assert_allclose(run_all(be, windows[0]), pop_torch_probs, atol=1e-4)


def test_akida_per_population_time_constants_agree_with_torch(pop_artifact, windows, pop_torch_probs):
    be = _available_or_skip("akida")
    be.load(pop_artifact)
    agree = float((run_all(be, windows[0]).argmax(1) == pop_torch_probs.argmax(1)).mean())
    assert agree >= GOALS["akida"], f"akida agrees on {agree:.3f} of decisions"


def test_lava_runs_one_lif_process_per_population_with_its_own_decays(pop_artifact, windows, pop_torch_probs):
    _lava_or_skip()
    be = create_backend("lava", target="sim")
    try:
        be.load(pop_artifact)
        health = be.health()
        probs = run_all(be, windows[0][:10])
    finally:
        be.close()
    assert health["hidden_processes"] == ["hidden.audio", "hidden.dvs", "hidden.imu"]
    q = be.q["population_decays"]
    assert q["imu"] != q["audio"] and q["audio"] != q["dvs"]
    agree = float((probs.argmax(1) == pop_torch_probs[: len(probs)].argmax(1)).mean())
    assert agree >= GOALS["lava"], f"lava agrees on {agree:.3f} of decisions"
