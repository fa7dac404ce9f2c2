"""Lava backend: the fusion network as Lava ``Dense`` + ``LIF`` processes with Loihi 2 fixed-point
arithmetic, run by ``Loihi2SimCfg(select_tag="fixed_pt")`` on the CPU (bit-accurate Loihi models),
or ``Loihi2HwCfg`` when the proprietary lava-loihi extension is importable (it is not here).

Process graph (the three modality populations run as ONE LIF process of 3H neurons with
block-diagonal input and recurrent weights: fewer Lava processes, each a separate OS process
synchronised every step, made a window ~2x faster than one process per modality)::

    RingBuffer (sum N_m x steps) -> Dense w_in -> LIF hidden (3H) <-> Dense w_rec (recurrent)
    LIF hidden -> Dense w_fuse -> LIF fusion -> Dense w_out -> LIF readout (never fires)

A Lava LIF process has one ``du`` / ``dv``, so a network whose populations have their own time constants
(``population_tau_*_ms``) runs one hidden LIF process per population instead (``hidden.<m>``, with
``in.<m>``, ``rec.<m>``, ``fuse.<m>`` the slices of the quantised projections: same integer weights, same
arithmetic; :func:`population_projections`).

A projection whose weights are mostly zero (a merged network's w_rec and w_fuse) runs as a Lava
``Sparse`` instead of a ``Dense``: same arithmetic, only its non-zero synapses held (``sparse`` option).

Fixed-point mapping (Loihi 2, per target population with LSB value ``U`` of the synaptic input):

* weights: 8-bit mixed-sign Dense weights (even integers in [-256, 254], Lava truncates the LSB),
  ``W_int = 2 round(W / (2 U 2^e))``, ``weight_exp = e <= 0`` per Dense chosen so that the largest
  weight uses the full range; ``U = max |W| / 254`` over the population's incoming weights;
* state: 24-bit ``u``, ``v`` (Lava's LIF wraps/clips them); the synaptic input is left-shifted by 6,
  so ``v_float = v_int U / 64``; threshold ``vth = ceil(threshold / U0)`` with ``U0 = max |W| / 254``
  and then ``U = threshold / vth`` so the threshold is exact (Lava compares ``v > vth << 6``);
* decays: 12-bit ``du = round(4096 (1 - alpha))``, ``dv = round(4096 (1 - beta))``.
* readout range: the readout never fires, so its membrane is bounded only by the 24-bit ``v``, and
  Lava **wraps around** on overflow (a large score becomes a large score of the opposite sign: a
  confident wrong decision). Its LSB is therefore
  ``U_r = max(max |W_out| / 254, READOUT_HEADROOM * readout_abs_max * 64 / (2^23 - 1))``, with
  ``readout_abs_max`` the largest ``|v|`` the trained model reached on its validation data
  (``extra.readout_abs_max`` of the artifact, written by ``snn-fusion train``): twice that range fits,
  at the cost of coarser readout weights. Artifacts without it keep ``U_r = max |W_out| / 254`` and
  :meth:`LavaBackend.load` warns (``RuntimeWarning``). Either way, every window whose readout reaches
  three quarters of the 24-bit range is counted in :attr:`LavaBackend.readout_near_limit` (warned once).

Timing difference (documented, not hidden): every Lava ``Dense`` delivers its output one step later
(its ``a_buff``). The recurrent path therefore matches the reference exactly (``W_rec s[t-1]``), but
the feed-forward chain input -> hidden -> fusion -> readout lags the reference by 3 steps: the scores
read at the end of a window reflect the input up to 3 steps (15 ms by default) before its end.

One :meth:`LavaBackend.step` sets the window into the ring buffer (one ``Var.set``),
runs ``steps_per_window`` steps in one ``run`` call and reads the readout membrane once.
Call :meth:`close` to stop Lava's runtime processes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from snn_fusion_ros.backends.base import Backend, BackendNotAvailable, Capabilities
from snn_fusion_ros.snn.artifact import ModelArtifact
from snn_fusion_ros.snn.blocks import CSR_MAX_DENSITY
from snn_fusion_ros.snn.network import softmax_np

TARGETS = ("auto", "sim", "loihi2")
W_MAX = 254  # largest even 8-bit mixed-sign weight
VTH_MAX = 2**17 - 1  # Lava LIF vth precision
V_MAX = 2**23 - 1  # largest 24-bit membrane value
#: a projection with at most this fraction of non-zero quantised weights runs as a Lava ``Sparse``
SPARSE_MAX_DENSITY = CSR_MAX_DENSITY
READOUT_HEADROOM = 2.0  # readout range kept free above the largest |v| seen in training


@dataclass(frozen=True)
class QuantizedDense:
    """One Dense in Loihi 2 format: ``weights`` int32 (out, in) even in [-256, 254], ``weight_exp``."""

    weights: np.ndarray
    weight_exp: int


def quantize_dense(w: np.ndarray, unit: float, fine: bool = False) -> QuantizedDense:
    """Quantise float weights ``w`` (out, in) for a target population whose input LSB is ``unit``.

    ``weight_exp`` is 0 unless ``fine``: a negative exponent gives small weights more resolution, but
    Loihi applies it as an arithmetic right shift of the accumulated input, which floors: a bias of
    about -0.5 LSB per step and neuron that shifted the effective thresholds by several percent in our
    measurements, so it is used only where asked.
    """
    wmax = float(np.abs(w).max()) if w.size else 0.0
    if wmax == 0.0:
        return QuantizedDense(np.zeros(w.shape, dtype=np.int32), 0)
    # finest exponent keeping |W| / (U 2^e) within the 8-bit range
    e = -min(8, max(0, math.floor(math.log2(W_MAX * unit / wmax)))) if fine else 0
    q = 2 * np.round(w / (2.0 * unit * 2.0**e))
    return QuantizedDense(np.clip(q, -256, W_MAX).astype(np.int32), int(e))


def dequantize(d: QuantizedDense, unit: float) -> np.ndarray:
    """Float weights represented by ``d`` for a target whose input LSB is ``unit``."""
    return d.weights.astype(np.float64) * unit * 2.0**d.weight_exp


def split_dense(w: np.ndarray, unit: float) -> tuple[QuantizedDense, QuantizedDense]:
    """Two 8-bit Dense for one projection: ``hi`` as :func:`quantize_dense`, ``lo`` its residual with a
    finer exponent (about 7 more bits); their outputs add in the target's dendrite."""
    hi = quantize_dense(w, unit)
    return hi, quantize_dense(w - dequantize(hi, unit), unit, fine=True)


def decay_12bit(factor: float) -> int:
    """Loihi decay constant for a per-step decay ``factor`` in [0, 1]: ``round(4096 (1 - factor))``."""
    return int(min(4095, max(0, round(4096.0 * (1.0 - factor)))))


def quantize_network(weights: dict[str, np.ndarray], config, split_input: bool = False,
                     readout_abs_max: float | None = None) -> dict[str, Any]:
    """Fixed-point parameters of the whole network (pure numpy; see the module docstring).

    ``weights`` as returned by :meth:`FusionNet.weights_numpy` (block-diagonal ``w_in``/``w_rec`` of
    the three modality populations, which run as one Lava LIF process of 3H neurons). Returns
    per-population units, thresholds, decays and a :class:`QuantizedDense` per projection; with
    ``split_input`` the input projection is two Dense (``in`` + residual ``in_lo``, see :func:`split_dense`).
    ``readout_abs_max`` (float readout membrane units) sizes the readout's LSB so that
    ``READOUT_HEADROOM`` times that range fits the 24-bit membrane (module docstring).
    """
    out: dict[str, Any] = {"dense": {}, "unit": {}, "vth": {}}
    unit_h = max(float(np.abs(weights["w_in"]).max()), float(np.abs(weights["w_rec"]).max()), 1e-12) / W_MAX
    unit_f = max(float(np.abs(weights["w_fuse"]).max()), 1e-12) / W_MAX
    unit_r = max(float(np.abs(weights["w_out"]).max()), 1e-12) / W_MAX
    if readout_abs_max is not None:
        if not (math.isfinite(readout_abs_max) and readout_abs_max >= 0):
            raise ValueError(f"readout_abs_max={readout_abs_max!r}; expected a finite value >= 0")
        unit_r = max(unit_r, READOUT_HEADROOM * float(readout_abs_max) * 64.0 / V_MAX)
    for pop, unit0 in (("hidden", unit_h), ("fusion", unit_f)):
        # shrink the unit so that the threshold is an exact integer number of units (no threshold error)
        vth = int(min(VTH_MAX, math.ceil(config.threshold / unit0)))
        out["unit"][pop] = config.threshold / vth
        out["vth"][pop] = vth
    out["unit"]["readout"] = unit_r
    out["vth"]["readout"] = VTH_MAX
    if split_input:
        out["dense"]["in"], out["dense"]["in_lo"] = split_dense(weights["w_in"], out["unit"]["hidden"])
    else:
        out["dense"]["in"] = quantize_dense(weights["w_in"], out["unit"]["hidden"])
    out["dense"]["rec"] = quantize_dense(weights["w_rec"], out["unit"]["hidden"])
    out["dense"]["fuse"] = quantize_dense(weights["w_fuse"], out["unit"]["fusion"])
    out["dense"]["out"] = quantize_dense(weights["w_out"], unit_r)
    out["du"] = decay_12bit(config.alpha)
    out["dv"] = decay_12bit(config.beta)
    out["dv_readout"] = decay_12bit(config.readout_beta)
    #: (du, dv) of each modality population (equal to (du, dv) unless population_tau_*_ms differ)
    out["population_decays"] = {m: (decay_12bit(a), decay_12bit(b)) for m, (a, b) in config.population_decays().items()}
    return out


def population_projections(q: dict[str, Any], config) -> dict[str, QuantizedDense]:
    """The hidden layer's projections cut per modality population, for one LIF process per population
    (Lava's LIF has one ``du`` / ``dv`` per process): ``in.<m>`` (and ``in_lo.<m>``) the population's rows
    of the input projection over every input (zeros outside its own), ``rec.<m>`` its recurrent block and
    ``fuse.<m>`` its columns of the fusion projection, plus ``out``. Slices of the quantised weights with
    the same ``weight_exp``: every synapse keeps its integer weight, so the arithmetic is that of the
    single-process network."""
    h = config.hidden_neurons
    dense = q["dense"]
    out: dict[str, QuantizedDense] = {}
    for i, m in enumerate(config.input_sizes):
        rows = slice(i * h, (i + 1) * h)
        for kind in ("in", "in_lo"):
            if kind in dense:
                out[f"{kind}.{m}"] = QuantizedDense(np.ascontiguousarray(dense[kind].weights[rows]),
                                                    dense[kind].weight_exp)
        out[f"rec.{m}"] = QuantizedDense(np.ascontiguousarray(dense["rec"].weights[rows, rows]),
                                         dense["rec"].weight_exp)
        out[f"fuse.{m}"] = QuantizedDense(np.ascontiguousarray(dense["fuse"].weights[:, rows]),
                                          dense["fuse"].weight_exp)
    out["out"] = dense["out"]
    return out


def readout_range(artifact: ModelArtifact) -> float | None:
    """``extra.readout_abs_max`` of a trained artifact (None when absent or not a number)."""
    value = artifact.metadata.get("extra", {}).get("readout_abs_max")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _import_lava():
    from snn_fusion_ros.backends import _lava_compat

    _lava_compat.install()
    import lava.magma.core.run_conditions as rc
    import lava.magma.core.run_configs as cfgs
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse

    return rc, cfgs, Dense, Sparse, RingBuffer, LIF


def loihi2_hardware_present() -> tuple[bool, str]:
    """Whether lava-loihi (the proprietary Loihi 2 extension) is importable."""
    try:
        _import_lava()
        from lava.utils import loihi
    except Exception as exc:  # lava itself missing/broken
        return False, f"lava not importable: {exc}"
    if loihi.is_installed():
        return True, ""
    return False, "lava-loihi (proprietary Loihi 2 extension) is not installed; no Loihi 2 system reachable"


class LavaBackend(Backend):
    """Lava (Loihi 2) backend.

    Options
    -------
    target: "auto" (Loihi 2 hardware when lava-loihi is importable, else simulation), "sim"
        (``Loihi2SimCfg`` fixed point on CPU) or "loihi2" (error when absent).
    split_input: run the input projection as two 8-bit Dense (weights + residual, ~15-bit effective
        weights at twice the synapse memory); it is the projection whose 8-bit rounding changed most
        decisions in our measurements (doc/backends.md).
    sparse: run every projection whose quantised weights are at most :data:`SPARSE_MAX_DENSITY`
        non-zero as a Lava ``Sparse`` (CSR weights: only the non-zero synapses are stored and summed)
        instead of a ``Dense`` (default True). Lava's bit-accurate ``Sparse`` model does Dense's integer
        arithmetic on the same weights, so the results are identical; it matters for a merged network,
        whose recurrent and fusion weights are mostly the zeros between members.
    """

    name = "lava"

    def __init__(self, target: str = "auto", split_input: bool = False, sparse: bool = True) -> None:
        super().__init__()
        self.split_input = bool(split_input)
        self.sparse = bool(sparse)
        #: the projections (``q["dense"]`` keys) that run as Lava ``Sparse``, set by :meth:`load`
        self.sparse_projections: tuple[str, ...] = ()
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; expected one of {list(TARGETS)}")
        ok, reason = self.availability()
        if not ok:
            raise BackendNotAvailable(f"lava backend unavailable: {reason}")
        hw, hw_reason = loihi2_hardware_present()
        if target == "loihi2" and not hw:
            raise BackendNotAvailable(f"target 'loihi2' requested but {hw_reason}")
        self.hardware = hw and target != "sim"
        self.hardware_reason = hw_reason
        self.q: dict[str, Any] = {}
        #: windows whose readout membrane reached 3/4 of the 24-bit range (risk of wrap-around)
        self.readout_near_limit = 0
        self._procs: dict[str, Any] = {}
        self._running = False

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            _import_lava()
        except Exception as exc:
            return False, f"lava-nc not importable: {type(exc).__name__}: {exc}"
        return True, ""

    # ------------------------------------------------------------------ build
    def load(self, artifact: ModelArtifact) -> None:
        self.close()
        rc, cfgs, Dense, Sparse, RingBuffer, LIF = _import_lava()
        cfg = artifact.config
        model = artifact.build_model()
        span = readout_range(artifact)
        if span is None:
            warnings.warn(f"lava backend: model {artifact.version} has no extra.readout_abs_max (written by "
                          "`snn-fusion train`); the readout's 24-bit membrane may wrap around on large scores",
                          RuntimeWarning, stacklevel=2)
        self.q = q = quantize_network(model.weights_numpy(), cfg, split_input=self.split_input,
                                      readout_abs_max=span)
        steps = cfg.steps_per_window
        n_in = sum(cfg.input_sizes.values())
        n_hid = len(cfg.input_sizes) * cfg.hidden_neurons
        p: dict[str, Any] = {}
        p["src"] = RingBuffer(data=np.zeros((n_in, steps), dtype=np.int32))
        # one hidden LIF process for all populations when they share du/dv; else one per population
        if cfg.uniform_populations:
            pops, projections = {"": (q["du"], q["dv"])}, q["dense"]
        else:
            pops = {f".{m}": q["population_decays"][m] for m in cfg.input_sizes}
            projections = population_projections(q, cfg)
        for pop, (du, dv) in pops.items():
            p[f"hidden{pop}"] = LIF(shape=(n_hid // len(pops),), du=du, dv=dv, vth=q["vth"]["hidden"], bias_mant=0,
                                    bias_exp=0, name=f"hidden{pop}")
        p["fusion"] = LIF(shape=(cfg.fusion_neurons,), du=q["du"], dv=q["dv"], vth=q["vth"]["fusion"],
                          bias_mant=0, bias_exp=0, name="fusion")
        p["readout"] = LIF(shape=(cfg.num_classes,), du=q["du"], dv=q["dv_readout"], vth=q["vth"]["readout"],
                           bias_mant=0, bias_exp=0, name="readout")
        sparse = []
        for kind, d in projections.items():
            if self.sparse and np.count_nonzero(d.weights) <= SPARSE_MAX_DENSITY * d.weights.size:
                p[kind] = Sparse(weights=csr_matrix(d.weights), weight_exp=d.weight_exp, num_message_bits=0,
                                 name=kind)
                sparse.append(kind)
            else:
                p[kind] = Dense(weights=d.weights, weight_exp=d.weight_exp, num_message_bits=0, name=kind)
        self.sparse_projections = tuple(sparse)
        for pop in pops:
            hidden = p[f"hidden{pop}"]
            for kind in ("in", "in_lo"):
                if f"{kind}{pop}" in p:
                    p["src"].s_out.connect(p[f"{kind}{pop}"].s_in)
                    p[f"{kind}{pop}"].a_out.connect(hidden.a_in)
            hidden.s_out.connect(p[f"rec{pop}"].s_in)
            p[f"rec{pop}"].a_out.connect(hidden.a_in)
            hidden.s_out.connect(p[f"fuse{pop}"].s_in)
            p[f"fuse{pop}"].a_out.connect(p["fusion"].a_in)
        p["fusion"].s_out.connect(p["out"].s_in)
        p["out"].a_out.connect(p["readout"].a_in)
        self._procs = p
        self._rc = rc
        if self.hardware:
            self._run_cfg = cfgs.Loihi2HwCfg()
        else:
            self._run_cfg = cfgs.Loihi2SimCfg(select_tag="fixed_pt")
        self.artifact = artifact
        self._in_buf = np.zeros((n_in, steps), dtype=np.int32)

    def _run(self, steps: int) -> None:
        self._procs["readout"].run(condition=self._rc.RunSteps(num_steps=steps), run_cfg=self._run_cfg)
        self._running = True

    def reset(self) -> None:
        """Zero all neuron state and the Dense output buffers (the runtime keeps running)."""
        if not self._running:
            return
        for k, proc in self._procs.items():
            if k == "src":
                continue
            if hasattr(proc, "u"):
                proc.u.set(np.zeros(proc.u.shape, dtype=np.int32))
                proc.v.set(np.zeros(proc.v.shape, dtype=np.int32))
            elif hasattr(proc, "a_buff"):
                proc.a_buff.set(np.zeros(proc.a_buff.shape, dtype=np.int32))

    def _step(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        art = self.artifact
        if art is None:
            raise RuntimeError("lava backend: load() an artifact first")
        buf = self._in_buf
        off = 0
        for m, n in art.config.input_sizes.items():
            a = inputs.get(m)
            buf[off:off + n] = 0 if a is None else a.T
            off += n
        if self._running:
            self._procs["src"].data.set(buf)
        else:
            self._procs["src"].data.init = buf.copy()
        self._run(art.config.steps_per_window)
        v = np.asarray(self._procs["readout"].v.get(), dtype=np.float64)
        if v.size and float(np.abs(v).max()) >= 0.75 * V_MAX:
            self.readout_near_limit += 1
            if self.readout_near_limit == 1:
                warnings.warn("lava backend: the readout membrane reached 3/4 of its 24-bit range; larger "
                              "scores wrap around (see doc/backends.md, readout range)", RuntimeWarning, stacklevel=2)
        return softmax_np((v * self.q["unit"]["readout"] / 64.0).astype(np.float32))

    def close(self) -> None:
        """Stop Lava's runtime (its worker processes); the backend must be loaded again after this."""
        if self._running and self._procs:
            self._procs["readout"].stop()
        self._running = False
        self._procs = {}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing sensible left to do
            pass

    def capabilities(self) -> Capabilities:
        device = "lava:Loihi2HwCfg" if self.hardware else "lava:Loihi2SimCfg"
        return Capabilities(hardware_present=self.hardware, device=device, online_learning=False)

    def health(self) -> dict[str, Any]:
        out = super().health()
        out["loihi2_absent_reason"] = "" if self.hardware else self.hardware_reason
        out["sparse_projections"] = list(self.sparse_projections)
        out["hidden_processes"] = sorted(k for k in self._procs if k.startswith("hidden"))
        return out
