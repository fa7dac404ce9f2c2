"""Akida backend: every feed-forward synaptic projection on Akida, neuron state on the host.

Akida's layers (``InputData`` -> ``FullyConnected``) are stateless, quantised feed-forward layers;
the network's LIF membranes, synaptic currents, resets and the recurrence in time cannot live on them.
What runs WHERE, per window of ``S`` steps:

=================================================  =========================================
computation                                         where
=================================================  =========================================
input projections ``W_in x[t]`` (block-diagonal,    Akida ``FullyConnected`` (1-bit inputs,
3 modalities, all ``S`` steps as one batch)          8-bit weights, no activation)
recurrent projection ``W_rec s[t-1]`` (each step)   Akida ``FullyConnected`` (1-bit, 8-bit)
fusion projection ``W_fuse s[t]`` (``S`` steps)     Akida ``FullyConnected`` (1-bit, 8-bit)
readout projection ``W_out f[t]`` (``S`` steps)     Akida ``FullyConnected`` (1-bit, 8-bit)
CUBA LIF dynamics of hidden and fusion layers,      host, numpy float32
readout leaky integrator, softmax
=================================================  =========================================

A window-batched projection made of independent blocks that cover at most a quarter of its matrix (a
merged network's fusion weights) runs as one Akida model per block (``split_blocks``), with the same
currents. All four projections take binary spike vectors, so Akida's integer potentials are exact integer
products ``W_int s``; quantisation error comes only from the 8-bit weights:
``W_int = round(W / q_j)`` with one scale ``q_j = max_i |W_ji| / 127`` per output neuron ``j``,
and the host multiplies the potentials by ``q_j``.

Hardware: ``akida.devices()`` lists AKD1000/AKD1500 chips; with one present (and ``target`` not
"software") each model is ``map``-ped onto it. None is present here: the Akida software backend
(CPU) runs the same integer layers and :meth:`AkidaBackend.capabilities` says "akida:software".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snn_fusion_ros.backends.base import Backend, BackendNotAvailable, Capabilities
from snn_fusion_ros.snn.artifact import ModelArtifact
from snn_fusion_ros.snn.blocks import CSR_MAX_DENSITY, independent_blocks
from snn_fusion_ros.snn.network import softmax_np

TARGETS = ("auto", "software", "hardware")
PROJECTIONS = ("in", "rec", "fuse", "out")


def quantize_rows(w: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-row symmetric quantisation: returns ``(w_int int8 (out, in), scale float32 (out,))``."""
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    w_int = np.clip(np.round(w / scale[:, None]), -qmax, qmax).astype(np.int8)
    return w_int, scale


def akida_devices() -> list:
    """``akida.devices()`` (empty list when akida is absent)."""
    try:
        import akida
    except ImportError:
        return []
    return list(akida.devices())


class _Projection:
    """One Akida model ``InputData(1, 1, n_in; 1 bit) -> FullyConnected(n_out; 8-bit weights)``."""

    def __init__(self, w: np.ndarray, device: Any | None) -> None:
        import akida

        self.n_out, self.n_in = w.shape
        self.w_int, self.scale = quantize_rows(w)
        model = akida.Model()
        model.add(akida.InputData(input_shape=(1, 1, self.n_in), input_bits=1))
        model.add(akida.FullyConnected(units=self.n_out, weights_bits=8, activation=False))
        model.layers[1].set_variable("weights", np.ascontiguousarray(self.w_int.T).reshape(1, 1, self.n_in, self.n_out))
        if device is not None:
            model.map(device)
        self.model = model

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        """``spikes`` (B, n_in) 0/1 -> currents (B, n_out) float32 = scale * (W_int @ s)."""
        x = np.ascontiguousarray(spikes, dtype=np.uint8).reshape(-1, 1, 1, self.n_in)
        pot = self.model.forward(x).reshape(-1, self.n_out)
        return pot.astype(np.float32) * self.scale


class _BlockProjection:
    """A projection whose weights are independent blocks (a merge's fusion weights), as one
    :class:`_Projection` per block: each Akida model holds only its block's synapses, and the zeros
    between blocks are neither stored nor summed. Per-row quantisation makes it exact: a row's scale is
    set by its largest weight, which lies inside the row's block, so the integer potentials and the
    currents equal the dense projection's."""

    def __init__(self, w: np.ndarray, blocks: list[tuple[np.ndarray, np.ndarray]], device: Any | None) -> None:
        self.n_out, self.n_in = w.shape
        self.blocks = [(rows, cols, _Projection(w[np.ix_(rows, cols)], device)) for rows, cols in blocks]

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        x = np.asarray(spikes).reshape(-1, self.n_in)
        out = np.zeros((x.shape[0], self.n_out), np.float32)
        for rows, cols, proj in self.blocks:
            out[:, rows] = proj(x[:, cols])
        return out


def _projection(w: np.ndarray, device: Any | None, split_blocks: bool) -> _Projection | _BlockProjection:
    """The Akida form of one window-batched projection: one model, or (``split_blocks``, and the matrix's
    :func:`~snn_fusion_ros.snn.blocks.independent_blocks` cover at most ``CSR_MAX_DENSITY`` of it) one per
    block."""
    if split_blocks and np.count_nonzero(w) <= CSR_MAX_DENSITY * w.size:
        blocks = independent_blocks(w)
        if len(blocks) > 1 and sum(len(r) * len(c) for r, c in blocks) <= CSR_MAX_DENSITY * w.size:
            return _BlockProjection(w, blocks, device)
    return _Projection(w, device)


class AkidaBackend(Backend):
    """Akida backend (see the module docstring for the split between Akida and host).

    Options
    -------
    target: "auto" (first AKD device from ``akida.devices()``, else software), "software", or
        "hardware" (error when no device is present).
    split_blocks: run a window-batched projection (input, fusion, readout) whose independent blocks
        cover at most a quarter of its matrix as one Akida model per block (default True): a merged
        network's fusion weights then hold each member's block alone (exactly the same currents). The
        recurrent projection, one Akida call per step, always stays one model.
    """

    name = "akida"

    def __init__(self, target: str = "auto", split_blocks: bool = True) -> None:
        super().__init__()
        self.split_blocks = bool(split_blocks)
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; expected one of {list(TARGETS)}")
        ok, reason = self.availability()
        if not ok:
            raise BackendNotAvailable(f"akida backend unavailable: {reason}")
        devices = akida_devices() if target != "software" else []
        if target == "hardware" and not devices:
            raise BackendNotAvailable("target 'hardware' requested but akida.devices() lists no AKD1000/AKD1500")
        self.device = devices[0] if devices else None
        self.proj: dict[str, _Projection | _BlockProjection] = {}

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import akida  # noqa: F401
        except ImportError as exc:
            return False, f"akida not importable: {exc}"
        return True, ""

    def load(self, artifact: ModelArtifact) -> None:
        w = artifact.build_model().weights_numpy()
        self.proj = {k: _Projection(w[f"w_{k}"], self.device) if k == "rec"
                     else _projection(w[f"w_{k}"], self.device, self.split_blocks) for k in PROJECTIONS}
        cfg = artifact.config
        self.alpha, self.beta, self.beta_r = np.float32(cfg.alpha), np.float32(cfg.beta), np.float32(cfg.readout_beta)
        # hidden layer: one decay per neuron (per-population time constants), float32 like the reference
        self.h_alpha, self.h_beta = (d.astype(np.float32) for d in cfg.hidden_decays())
        self.thr = np.float32(cfg.threshold)
        self.zero_reset = cfg.reset_mechanism == "zero"
        self.delayed = cfg.synaptic_delay_steps == 1
        self.artifact = artifact
        self._x = np.zeros((cfg.steps_per_window, sum(cfg.input_sizes.values())), dtype=np.uint8)
        self.reset()

    def reset(self) -> None:
        art = self.artifact
        if art is None:
            return
        c = art.config
        nh = len(c.input_sizes) * c.hidden_neurons
        self.h_syn = np.zeros(nh, np.float32)
        self.h_mem = np.zeros(nh, np.float32)
        self.s = np.zeros(nh, np.float32)
        self.f_syn = np.zeros(c.fusion_neurons, np.float32)
        self.f_mem = np.zeros(c.fusion_neurons, np.float32)
        self.r_syn = np.zeros(c.num_classes, np.float32)
        self.r_mem = np.zeros(c.num_classes, np.float32)
        # last step's spikes of the previous window, fed first when projections are delayed by one step
        self.x_last = np.zeros(sum(c.input_sizes.values()), np.uint8)
        self.f_last = np.zeros(c.fusion_neurons, np.float32)

    def _lif(self, syn: np.ndarray, mem: np.ndarray, cur: np.ndarray, alpha: np.ndarray | np.float32,
             beta: np.ndarray | np.float32):
        syn = alpha * syn + cur
        mem = beta * mem + syn
        s = (mem > self.thr).astype(np.float32)
        mem = mem * (1.0 - s) if self.zero_reset else mem - s * self.thr
        return syn, mem, s

    def _step(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        art = self.artifact
        if art is None:
            raise RuntimeError("akida backend: load() an artifact first")
        x = self._x
        off = 0
        for m, n in art.config.input_sizes.items():
            a = inputs.get(m)
            x[:, off:off + n] = 0 if a is None else a
            off += n
        t_len = x.shape[0]
        s = self.s
        if self.delayed:  # projections see the previous step's spikes (Loihi timing)
            x_in = np.concatenate([self.x_last[None], x[:-1]])
            self.x_last = x[-1].copy()
        else:
            x_in = x
        cur_in = self.proj["in"](x_in)  # (S, 3H): one Akida call for the window
        hid = np.empty((t_len, self.s.shape[0]), np.float32)
        hid_prev_last = s
        for t in range(t_len):
            rec = self.proj["rec"](s[None])[0] if s.any() else 0.0
            self.h_syn, self.h_mem, s = self._lif(self.h_syn, self.h_mem, cur_in[t] + rec, self.h_alpha,
                                                    self.h_beta)
            hid[t] = s
        self.s = s
        cur_f = self.proj["fuse"](np.concatenate([hid_prev_last[None], hid[:-1]]) if self.delayed else hid)
        fus = np.empty((t_len, cur_f.shape[1]), np.float32)
        for t in range(t_len):
            self.f_syn, self.f_mem, fus[t] = self._lif(self.f_syn, self.f_mem, cur_f[t], self.alpha, self.beta)
        if self.delayed:
            fus_in = np.concatenate([self.f_last[None], fus[:-1]])
            self.f_last = fus[-1].copy()
        else:
            fus_in = fus
        cur_o = self.proj["out"](fus_in)  # (S, C)
        for t in range(t_len):
            self.r_syn = self.alpha * self.r_syn + cur_o[t]
            self.r_mem = self.beta_r * self.r_mem + self.r_syn
        return softmax_np(self.r_mem)

    def capabilities(self) -> Capabilities:
        if self.device is not None:
            name = getattr(self.device, "version", self.device)
            return Capabilities(hardware_present=True, device=f"akida:{name}", online_learning=False)
        return Capabilities(hardware_present=False, device="akida:software", online_learning=False)

    def health(self) -> dict[str, Any]:
        out = super().health()
        out["on_akida"] = "synaptic projections w_in, w_rec, w_fuse, w_out"
        out["block_projections"] = {k: len(p.blocks) for k, p in self.proj.items() if isinstance(p, _BlockProjection)}
        out["on_host"] = "LIF/readout state, thresholds, resets, softmax"
        return out
