"""BackendChain: a backend that fails to load, raises, hangs or returns garbage is replaced within the window."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from snn_fusion_ros.backends.registry import create_backend
from snn_fusion_ros.backends.torch_backend import TorchBackend
from snn_fusion_ros.fusion.fallback import BackendChain, BackendsExhausted
from snn_fusion_ros.snn.artifact import load_artifact, save_artifact
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    cfg = FusionNetConfig(audio_neurons=8, dvs_neurons=16, imu_neurons=6, hidden_neurons=16, fusion_neurons=16,
                          num_classes=4, seed=3)
    path = save_artifact(tmp_path_factory.mktemp("model") / "tiny", FusionNet(cfg), ["a", "b", "c", "d"], {})
    return load_artifact(path)


def window(art, seed=0):
    rng = np.random.default_rng(seed)
    steps = art.config.steps_per_window
    return {m: rng.random((steps, n)) < 0.3 for m, n in art.config.input_sizes.items()}


class RaisingAfter(TorchBackend):
    """Fault injection: a torch backend whose step raises from the n-th window on."""

    def __init__(self, fail_from: int = 3) -> None:
        super().__init__()
        self.fail_from = fail_from

    def _step(self, inputs):
        if self.steps >= self.fail_from:
            raise RuntimeError("injected fault")
        return super()._step(inputs)


class Hanging(TorchBackend):
    """Fault injection: step blocks until released."""

    release = threading.Event()

    def _step(self, inputs):
        self.release.wait(10)
        return super()._step(inputs)


class Garbage(TorchBackend):
    """Fault injection: NaN or wrongly shaped scores."""

    def __init__(self, kind: str = "nan") -> None:
        super().__init__()
        self.kind = kind

    def _step(self, inputs):
        return np.full(4, np.nan, np.float32) if self.kind == "nan" else np.ones(7, np.float32) / 7


def factory(**special):
    def make(name, **options):
        if name in special:
            return special[name]()
        return create_backend(name, **options)
    return make


def test_primary_torch_runs_and_reports_itself(artifact):
    chain = BackendChain(["torch"], artifact)
    res = chain.step(window(artifact))
    assert res.backend == "torch" and res.device == "torch:cpu" and not res.fallback_active
    assert res.probs.shape == (4,) and abs(res.probs.sum() - 1) < 1e-5


def test_raising_backend_falls_back_within_the_same_window(artifact):
    chain = BackendChain(["flaky", "torch"], artifact, factory=factory(flaky=lambda: RaisingAfter(3)))
    reference = TorchBackend()
    reference.load(artifact)
    results = [chain.step(window(artifact, i)) for i in range(6)]
    assert [r.backend for r in results] == ["flaky"] * 3 + ["torch"] * 3
    assert [r.fallback_active for r in results] == [False] * 3 + [True] * 3
    assert "injected fault" in chain.failures()["flaky"]
    assert chain.switches == 1


def test_load_failure_skips_to_next_backend(artifact):
    def broken():
        raise RuntimeError("no such chip")

    chain = BackendChain(["akd", "torch"], artifact, factory=factory(akd=broken))
    assert chain.active_name == "torch" and chain.fallback_active
    assert "no such chip" in chain.failures()["akd"]


def test_hanging_backend_is_abandoned_after_deadline(artifact):
    Hanging.release.clear()
    chain = BackendChain(["hang", "torch"], artifact, step_timeout_ms=200, factory=factory(hang=Hanging))
    res = chain.step(window(artifact))
    Hanging.release.set()
    assert res.backend == "torch" and "deadline" in chain.failures()["hang"]
    chain.close()


@pytest.mark.parametrize("kind", ["nan", "shape"])
def test_garbage_scores_are_detected(artifact, kind):
    chain = BackendChain(["bad", "torch"], artifact, factory=factory(bad=lambda: Garbage(kind)))
    res = chain.step(window(artifact))
    assert res.backend == "torch"
    assert ("non-finite" if kind == "nan" else "shape") in chain.failures()["bad"]


def test_all_backends_failing_raises_with_every_reason(artifact):
    with pytest.raises(BackendsExhausted, match=r"bad: step failed.*non-finite"):
        BackendChain(["bad"], artifact, factory=factory(bad=Garbage)).step(window(artifact))


def test_input_errors_do_not_retire_the_backend(artifact):
    chain = BackendChain(["torch"], artifact)
    with pytest.raises(ValueError, match="sonar"):
        chain.step({"sonar": np.zeros((10, 3), bool)})
    assert chain.failures() == {}


def test_bad_lists_are_refused(artifact):
    with pytest.raises(ValueError, match="empty"):
        BackendChain([], artifact)
    with pytest.raises(ValueError, match="twice"):
        BackendChain(["torch", "torch"], artifact)
    with pytest.raises(BackendsExhausted, match="unknown backend 'tpu'"):
        BackendChain(["tpu"], artifact)


def test_last_backend_is_waited_for_not_retired_when_slow(artifact):
    class Slow(TorchBackend):
        """Fault injection: a step slower than the deadline."""

        def _step(self, inputs):
            import time

            time.sleep(0.3)
            return super()._step(inputs)

    chain = BackendChain(["slow"], artifact, step_timeout_ms=100, factory=factory(slow=Slow))
    res = chain.step(window(artifact))
    assert res.backend == "slow" and chain.failures() == {} and chain.overruns == 1
    assert "no fallback left" in chain.events[-1].message
    chain.close()
