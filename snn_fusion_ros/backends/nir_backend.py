"""NIR export of the fusion network (the SpiNNaker 2 path) and a backend running the re-read graph.

Export (:func:`export_nir`): the network becomes a ``nir.NIRGraph``

.. code-block:: text

    input_<m> -> <m>.w_in (Linear) [-> <m>.w_in.delay] -> <m>.lif (CubaLIF)
    <m>.lif -> <m>.w_fuse (Linear) [-> <m>.w_fuse.delay] -> fusion.lif (CubaLIF)
    <m>.lif -> <m>.w_rec (Linear) -> <m>.lif                (recurrent edge)
    fusion.lif -> readout.w_out (Linear) [-> readout.w_out.delay] -> readout.li (CubaLIF, v_threshold=+inf)
    readout.li -> output

The bracketed ``nir.Delay`` nodes (delay = one step ``dt``) are present when the network was built
with ``synaptic_delay_steps=1`` (the default, Loihi timing).

NIR is continuous-time; with the simulation step ``dt = step_ms`` the exported parameters are
``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``, ``r = tau_mem / dt``,
``w_in = tau_syn / dt``, ``v_leak = v_reset = 0``, so that the forward-Euler discretisation at ``dt``
(current first, then membrane with the new current, threshold ``v > v_threshold``, reset to
``v_reset``) reproduces :class:`FusionNet` exactly. Each ``<m>.lif`` carries its population's own time
constants (``population_tau_*_ms``; by default the shared ones). ``graph.metadata`` records ``dt_s``, the input
order, ``steps_per_window`` and which node's membrane is the score.

Consumers: :class:`NIRGraphRunner` executes any graph of Input/Output/Linear/Affine/CubaLIF/LIF/LI
nodes, with recurrent (back) edges delayed by one step, either with its own numpy neurons
(``neurons="numpy"``) or with snnTorch neurons built by snnTorch's own NIR node converter
(``neurons="snntorch"``, an independent implementation of the neuron equations; snnTorch's
``import_from_nir`` graph wrapper itself fails on recurrent multi-input graphs with nirtorch 2.6,
see doc/backends.md).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.backends.base import Backend, Capabilities
from snn_fusion_ros.snn.artifact import ModelArtifact
from snn_fusion_ros.snn.blocks import CSR_MAX_DENSITY
from snn_fusion_ros.snn.network import FusionNet, softmax_np
from snn_fusion_ros.spikes import MODALITIES

NEURON_IMPLEMENTATIONS = ("numpy", "snntorch")
#: snnTorch's NIR converter assumes this step (s) regardless of the graph; time constants are rescaled.
SNNTORCH_DT_S = 1e-4


def _cuba(n: int, alpha: float, beta: float, threshold: float, dt: float):
    import nir

    tau_syn = dt / (1.0 - alpha)
    tau_mem = dt / (1.0 - beta)
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.full(n, tau_mem / dt),
                       v_leak=np.zeros(n), v_threshold=np.full(n, threshold), v_reset=np.zeros(n),
                       w_in=np.full(n, tau_syn / dt))


def export_nir(model: FusionNet):
    """Export ``model`` to a ``nir.NIRGraph`` (see the module docstring for the mapping).

    Raises ValueError for ``reset_mechanism="subtract"`` (NIR's CubaLIF resets to ``v_reset``).
    """
    import nir

    cfg = model.config
    if cfg.reset_mechanism != "zero":
        raise ValueError(f"NIR CubaLIF resets to v_reset; reset_mechanism {cfg.reset_mechanism!r} cannot be "
                         "exported (expected 'zero')")
    dt = cfg.step_ms * 1e-3
    h = cfg.hidden_neurons
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    delayed = cfg.synaptic_delay_steps == 1

    def link(src: str, dst: str, n: int) -> None:
        """Edge src -> dst, through a one-step nir.Delay node when the projections are delayed."""
        if delayed:
            nodes[f"{src}.delay"] = nir.Delay(delay=np.full(n, dt))
            edges.extend([(src, f"{src}.delay"), (f"{src}.delay", dst)])
        else:
            edges.append((src, dst))

    wf = model.w_fuse.detach().numpy().astype(np.float32)
    decays = cfg.population_decays()  # (alpha, beta) of each modality population
    for i, (m, n) in enumerate(cfg.input_sizes.items()):
        nodes[f"input_{m}"] = nir.Input(input_type=np.array([n]))
        nodes[f"{m}.w_in"] = nir.Linear(weight=model.w_in[m].detach().numpy().astype(np.float32))
        nodes[f"{m}.lif"] = _cuba(h, *decays[m], cfg.threshold, dt)
        w_rec = (model.w_rec[m] * model.rec_mask(m)).detach().numpy().astype(np.float32)
        nodes[f"{m}.w_rec"] = nir.Linear(weight=w_rec)
        nodes[f"{m}.w_fuse"] = nir.Linear(weight=np.ascontiguousarray(wf[:, i * h:(i + 1) * h]))
        edges += [(f"input_{m}", f"{m}.w_in"), (f"{m}.lif", f"{m}.w_rec"), (f"{m}.w_rec", f"{m}.lif"),
                  (f"{m}.lif", f"{m}.w_fuse")]
        link(f"{m}.w_in", f"{m}.lif", h)
        link(f"{m}.w_fuse", "fusion.lif", cfg.fusion_neurons)
    nodes["fusion.lif"] = _cuba(cfg.fusion_neurons, cfg.alpha, cfg.beta, cfg.threshold, dt)
    nodes["readout.w_out"] = nir.Linear(weight=model.w_out.detach().numpy().astype(np.float32))
    nodes["readout.li"] = _cuba(cfg.num_classes, cfg.alpha, cfg.readout_beta, np.inf, dt)
    nodes["output"] = nir.Output(output_type=np.array([cfg.num_classes]))
    edges += [("fusion.lif", "readout.w_out"), ("readout.li", "output")]
    link("readout.w_out", "readout.li", cfg.num_classes)
    meta = {"dt_s": dt, "steps_per_window": cfg.steps_per_window, "inputs": [f"input_{m}" for m in MODALITIES],
            "score_node": "readout.li", "producer": "snn_fusion_ros"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(path: str | Path, graph) -> Path:
    """Write ``graph`` to the HDF5 ``.nir`` file ``path``."""
    import nir

    nir.write(str(path), graph)
    return Path(path)


def read_nir(path: str | Path):
    """Read a ``.nir`` file."""
    import nir

    return nir.read(str(path))


def roundtrip_bytes(graph):
    """Write ``graph`` to an in-memory HDF5 file and read it back (export proof without touching disk)."""
    import nir

    fd, name = tempfile.mkstemp(suffix=".nir")
    os.close(fd)
    try:
        nir.write(name, graph)
        data = Path(name).read_bytes()
    finally:
        os.unlink(name)
    return nir.read(io.BytesIO(data)) if _h5_reads_filelike() else _read_via_tmp(data)


def _h5_reads_filelike() -> bool:
    return True


def _read_via_tmp(data: bytes):
    fd, name = tempfile.mkstemp(suffix=".nir")
    os.close(fd)
    try:
        Path(name).write_bytes(data)
        return read_nir(name)
    finally:
        os.unlink(name)


class _NumpyCuba:
    """Forward-Euler CubaLIF / LIF / LI of one NIR node (float64 state)."""

    def __init__(self, node, dt: float) -> None:
        import nir

        self.kind = type(node).__name__
        n = int(np.asarray(node.v_threshold if hasattr(node, "v_threshold") else node.tau).size)
        if isinstance(node, nir.CubaLIF):
            self.ks = dt / np.asarray(node.tau_syn, dtype=np.float64)
            self.w_in = np.asarray(node.w_in, dtype=np.float64)
            tau_mem = node.tau_mem
        else:
            self.ks = None
            self.w_in = 1.0
            tau_mem = node.tau
        self.km = dt / np.asarray(tau_mem, dtype=np.float64)
        self.r = np.asarray(node.r, dtype=np.float64)
        self.v_leak = np.asarray(node.v_leak, dtype=np.float64)
        spiking = isinstance(node, (nir.CubaLIF, nir.LIF))
        self.thr = np.asarray(node.v_threshold, dtype=np.float64) if spiking else None
        v_reset = getattr(node, "v_reset", None)
        self.v_reset = np.zeros(n) if v_reset is None else np.asarray(v_reset, dtype=np.float64)
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.i = np.zeros(self.n)
        self.v = np.zeros(self.n)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.ks is not None:
            self.i = self.i + self.ks * (-self.i + self.w_in * x)
            drive = self.i
        else:
            drive = x
        self.v = self.v + self.km * (self.v_leak - self.v + self.r * drive)
        if self.thr is None:
            return self.v.copy()
        s = self.v > self.thr
        self.v = np.where(s, self.v_reset, self.v)
        return s.astype(np.float64)

    @property
    def membrane(self) -> np.ndarray:
        return self.v


class _SnntorchCuba:
    """A NIR CubaLIF run by snnTorch's own converter (``snn.Synaptic``, immediate reset to zero)."""

    def __init__(self, node, dt: float) -> None:
        import nir
        import torch

        try:
            from snntorch.import_nir import _nir_to_snntorch_module
        except ImportError as exc:  # snntorch.import_nir imports nirtorch at module level
            raise ImportError(f"neurons='snntorch' needs snntorch and nirtorch (nirtorch==2.6): {exc}") from exc

        if not isinstance(node, nir.CubaLIF):
            raise ValueError(f"snntorch neurons support CubaLIF only, got {type(node).__name__}")
        scale = SNNTORCH_DT_S / dt  # change of time unit: snnTorch assumes dt = 0.1 ms
        scaled = nir.CubaLIF(tau_syn=np.asarray(node.tau_syn) * scale, tau_mem=np.asarray(node.tau_mem) * scale,
                             r=np.asarray(node.r), v_leak=np.asarray(node.v_leak),
                             v_threshold=np.asarray(node.v_threshold), v_reset=node.v_reset,
                             w_in=np.asarray(node.w_in))
        self.mod = _nir_to_snntorch_module(scaled, hack_w_scale=False, init_hidden=False)
        self.torch = torch
        self.n = int(np.asarray(node.v_threshold).size)
        self.reset()

    def reset(self) -> None:
        self.syn = self.torch.zeros(1, self.n)
        self.mem = self.torch.zeros(1, self.n)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            spk, self.syn, self.mem = self.mod(self.torch.as_tensor(x, dtype=self.torch.float32)[None],
                                               self.syn, self.mem)
        return spk[0].numpy().astype(np.float64)

    @property
    def membrane(self) -> np.ndarray:
        return self.mem[0].numpy().astype(np.float64)


#: a Linear/Affine weight with at least this many entries and at most this fraction non-zero is applied
#: as a scipy CSR matrix (block-diagonal populations, masked recurrence, merged networks' member blocks)
SPARSE_MIN_SIZE = 65536
SPARSE_MAX_DENSITY = CSR_MAX_DENSITY


def _matvec_operator(w: np.ndarray):
    """``w`` itself, or ``w`` as a CSR matrix when large and sparse enough; ``op @ x`` equals ``w @ x``
    up to float64 rounding order, and ``op.shape`` is ``w.shape``."""
    if w.ndim == 2 and w.size >= SPARSE_MIN_SIZE and np.count_nonzero(w) <= SPARSE_MAX_DENSITY * w.size:
        from scipy.sparse import csr_matrix

        return csr_matrix(w)
    return w


class NIRGraphRunner:
    """Step-by-step executor of a NIR graph (batch 1).

    Nodes run in a topological order of the graph without its back edges (found by depth-first
    search from the inputs); a back edge delivers its source's output of the previous step. Several
    edges into one node are summed.

    Parameters
    ----------
    graph: the NIRGraph (Input, Output, Linear, Affine, CubaLIF, LIF, LI nodes).
    dt_s: simulation step in seconds (default ``graph.metadata["dt_s"]``).
    neurons: "numpy" or "snntorch" (neuron implementation).
    """

    def __init__(self, graph, dt_s: float | None = None, neurons: str = "numpy") -> None:
        import nir

        if neurons not in NEURON_IMPLEMENTATIONS:
            raise ValueError(f"unknown neurons {neurons!r}; expected one of {list(NEURON_IMPLEMENTATIONS)}")
        meta = dict(graph.metadata or {}) if isinstance(graph.metadata, dict) else {}
        if dt_s is None:
            if "dt_s" not in meta:
                raise ValueError("graph.metadata has no 'dt_s'; pass dt_s explicitly")
            dt_s = float(np.asarray(meta["dt_s"]))
        self.dt_s = float(dt_s)
        self.graph = graph
        self.inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
        self.outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
        if not self.inputs or not self.outputs:
            raise ValueError(f"graph needs Input and Output nodes, has inputs {self.inputs}, outputs {self.outputs}")
        self.preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
        succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
        for a, b in graph.edges:
            if a not in graph.nodes or b not in graph.nodes:
                raise ValueError(f"edge {(a, b)} names a node not in the graph")
            self.preds[b].append(a)
            succ[a].append(b)
        self.back: set[tuple[str, str]] = set()
        order: list[str] = []
        state: dict[str, int] = {}

        def dfs(u: str) -> None:  # iterative would be longer; graphs here are shallow
            state[u] = 1
            for v in succ[u]:
                if state.get(v) == 1:
                    self.back.add((u, v))
                elif v not in state:
                    dfs(v)
            state[u] = 2
            order.append(u)

        for k in sorted(self.inputs):
            if k not in state:
                dfs(k)
        unreached = sorted(set(graph.nodes) - set(state))
        if unreached:
            raise ValueError(f"nodes not reachable from the inputs: {unreached}")
        self.order = order[::-1]
        self.ops: dict[str, Any] = {}
        for k, node in graph.nodes.items():
            if isinstance(node, (nir.Input, nir.Output)):
                continue
            if isinstance(node, (nir.Linear, nir.Affine)):
                w = np.asarray(node.weight, dtype=np.float64)
                b = np.asarray(node.bias, dtype=np.float64) if isinstance(node, nir.Affine) else None
                self.ops[k] = ("linear", _matvec_operator(w), b)
            elif isinstance(node, nir.Delay):
                d = np.asarray(node.delay, dtype=np.float64)
                if not np.allclose(d, self.dt_s, rtol=1e-6):
                    raise ValueError(f"Delay node {k!r}: only a delay of one step dt={self.dt_s} s is supported, "
                                     f"got {np.unique(d)}")
                self.ops[k] = ("delay", None, None)
            elif isinstance(node, (nir.CubaLIF, nir.LIF, nir.LI)):
                impl = _SnntorchCuba(node, self.dt_s) if neurons == "snntorch" else _NumpyCuba(node, self.dt_s)
                self.ops[k] = ("neuron", impl, None)
            else:
                raise ValueError(f"node {k!r} of type {type(node).__name__} is not supported; supported: Input, "
                                 "Output, Linear, Affine, Delay (one step), CubaLIF, LIF, LI")
        self.score_node = str(meta.get("score_node", self.preds[self.outputs[0]][0]))
        self.reset()

    def reset(self) -> None:
        self.prev: dict[str, np.ndarray] = {}
        self.delay_buf: dict[str, np.ndarray | None] = {}
        for kind, impl, _ in self.ops.values():
            if kind == "neuron":
                impl.reset()

    def step(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Advance one step; ``inputs`` maps Input node names to vectors; returns Output node values."""
        cur: dict[str, np.ndarray] = {}
        for k in self.order:
            if k in self.inputs:
                cur[k] = np.asarray(inputs[k], dtype=np.float64)
                continue
            x = None
            for p in self.preds[k]:
                src = self.prev.get(p) if (p, k) in self.back else cur[p]
                if src is None:
                    continue
                x = src if x is None else x + src
            if k in self.outputs:
                cur[k] = x
                continue
            kind, a, b = self.ops[k]
            if kind == "delay":
                out = self.delay_buf.get(k)
                cur[k] = np.zeros_like(x) if out is None else out
                self.delay_buf[k] = x
                continue
            if x is None:
                x = np.zeros(a.shape[1] if kind == "linear" else a.n)
            if kind == "linear":
                cur[k] = a @ x if b is None else a @ x + b
            else:
                cur[k] = a(x)
        self.prev = cur
        return {k: cur[k] for k in self.outputs}

    def membrane(self, node: str | None = None) -> np.ndarray:
        """Membrane of ``node`` (default: the score node) after the last step."""
        kind, impl, _ = self.ops[node or self.score_node]
        if kind != "neuron":
            raise ValueError(f"node {node!r} is not a neuron")
        return impl.membrane


class NIRBackend(Backend):
    """Runs the network as exported to NIR and read back (what SpiNNaker 2 would be given).

    Options
    -------
    nir_path: write the exported graph to this file and read it from there (default: a temporary
        file that is deleted after reading).
    neurons: "numpy" (default) or "snntorch" (see :class:`NIRGraphRunner`).

    The scores of a window are ``softmax`` of the score node's membrane after the window's last step.
    """

    name = "nir"

    def __init__(self, nir_path: str | Path | None = None, neurons: str = "numpy") -> None:
        super().__init__()
        if neurons not in NEURON_IMPLEMENTATIONS:
            raise ValueError(f"unknown neurons {neurons!r}; expected one of {list(NEURON_IMPLEMENTATIONS)}")
        self.nir_path = Path(nir_path) if nir_path is not None else None
        self.neurons = neurons
        self.runner: NIRGraphRunner | None = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import nir  # noqa: F401
        except ImportError as exc:
            return False, f"nir not importable: {exc}"
        return True, ""

    def load(self, artifact: ModelArtifact) -> None:
        graph = export_nir(artifact.build_model())
        if self.nir_path is not None:
            write_nir(self.nir_path, graph)
            back = read_nir(self.nir_path)
        else:
            back = roundtrip_bytes(graph)
        self.runner = NIRGraphRunner(back, neurons=self.neurons)
        self.artifact = artifact
        self.reset()

    def reset(self) -> None:
        if self.runner is not None:
            self.runner.reset()

    def _step(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        runner = self.runner
        art = self.artifact
        if runner is None or art is None:
            raise RuntimeError("nir backend: load() an artifact first")
        sizes = art.config.input_sizes
        zeros = {m: np.zeros(n) for m, n in sizes.items()}
        for t in range(art.config.steps_per_window):
            runner.step({f"input_{m}": (inputs[m][t] if m in inputs else zeros[m]) for m in sizes})
        return softmax_np(runner.membrane().astype(np.float32))

    def capabilities(self) -> Capabilities:
        return Capabilities(hardware_present=False, device=f"nir:{self.neurons}", online_learning=False)
