"""The fusion spiking network: recurrent LIF populations per modality -> fusion LIF -> leaky readout.

Data flow per time step ``t`` (batch ``B``; ``H`` = hidden_neurons, ``F`` = fusion_neurons,
``C`` = num_classes, ``N_m`` = neurons of modality ``m``):

.. math::

    x_m[t] \\in \\{0,1\\}^{N_m} \\quad (m \\in \\{audio, dvs, imu\\})

    h_m = \\mathrm{CubaLIF}(W^{in}_m x_m[t-d] + (M_m \\odot W^{rec}_m)\\, s_m[t-1])
        \\quad (H \\text{ neurons, recurrent, fixed sparse mask } M_m)

    f = \\mathrm{CubaLIF}(\\textstyle\\sum_m W^{fuse}_m s_m[t-d]) \\quad (F)

    v = \\mathrm{CubaLI}(W^{out} f[t-d]) \\quad (C)

with ``d = synaptic_delay_steps`` (0 or 1; default 1 = Loihi timing, where every Dense delivers its
output one step later, so the readout at step t sees input up to step t - 3).

A window is ``steps_per_window`` consecutive steps; state is carried from one window to the next.
**Scores of a window** = ``softmax(v[t_end])``, the readout membrane at the last step of the window;
the decision is its argmax. A missing modality is an all-zero input.

Weights (the tensors saved in a model artifact), float32:

``w_in.<m>`` (H, N_m), ``w_rec.<m>`` (H, H), ``rec_mask.<m>`` (H, H) 0/1 with zero diagonal,
``w_fuse`` (F, 3H) (columns in :data:`MODALITIES` order), ``w_out`` (C, F).

Each modality population may have its own time constants (``population_tau_mem_ms`` /
``population_tau_syn_ms`` of :class:`~snn_fusion_ros.snn.config.FusionNetConfig`); the hidden layer then has
per-neuron decays, the fusion layer keeps the shared ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.snn.blocks import BlockProduct, recurrent_operator
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.cuba_lif import CubaLIF
from snn_fusion_ros.snn.leaky_integrator import CubaLI
from snn_fusion_ros.spikes import MODALITIES


def _init_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


class FusionNet(torch.nn.Module):
    """Recurrent-LIF fusion network with a leaky-integrator readout.

    Parameters
    ----------
    config: sizes and dynamics; the initial weights are drawn from ``config.seed``.

    Offline use: :meth:`forward` on batches ``{m: (B, T, N_m)}`` returns the readout membrane
    trace (B, T, C). Streaming use (batch 1): :meth:`step` advances one window and returns the scores;
    :meth:`reset` clears the state. Both use the same equations; decisions are identical.
    """

    def __init__(self, config: FusionNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        g = _init_generator(c.seed)
        h, f = c.hidden_neurons, c.fusion_neurons
        self.w_in = torch.nn.ParameterDict()
        self.w_rec = torch.nn.ParameterDict()
        for m, n in c.input_sizes.items():
            self.w_in[m] = torch.nn.Parameter(torch.randn(h, n, generator=g) * (c.input_gain * 3.0 / np.sqrt(n)))
            rec_scale = 0.5 / np.sqrt(max(1.0, h * c.recurrent_density))
            self.w_rec[m] = torch.nn.Parameter(torch.randn(h, h, generator=g) * rec_scale)
            mask = (torch.rand(h, h, generator=g) < c.recurrent_density).float()
            mask.fill_diagonal_(0.0)
            self.register_buffer(f"rec_mask_{m}", mask)
        self.w_fuse = torch.nn.Parameter(torch.randn(f, len(MODALITIES) * h, generator=g) * (3.0 / np.sqrt(3 * h)))
        self.w_out = torch.nn.Parameter(torch.randn(c.num_classes, f, generator=g) * (1.0 / np.sqrt(f)))
        kw = {"threshold": c.threshold, "reset_mechanism": c.reset_mechanism, "surrogate": c.surrogate,
              "surrogate_slope": c.surrogate_slope}
        h_alpha, h_beta = c.hidden_decays()  # one value per hidden neuron (per-population time constants)
        self.hidden = CubaLIF(h_alpha, h_beta, **kw)
        self.fusion = CubaLIF(c.alpha, c.beta, **kw)
        self.readout = CubaLI(c.alpha, c.readout_beta)
        self._s_prev: torch.Tensor | None = None  # hidden spikes of the previous step (B, 3H)
        self._in_prev: torch.Tensor | None = None  # input current of the previous step (B, 3H), delay 1
        self._out_prev: torch.Tensor | None = None  # readout input current of the previous step (B, C)
        self._cache_keys: dict[str, tuple] = {}
        self._cache: dict[str, Any] = {}
        self._in_buf = np.zeros((c.steps_per_window, sum(c.input_sizes.values())), dtype=np.float32)
        #: when True, :meth:`step` keeps the last window's spikes in :attr:`last_spikes` (for online STDP)
        self.record_spikes = False
        #: when False, :meth:`step` uses plain dense products (the baseline of ``snn-fusion bench backends``)
        self.structured_step = True
        self.last_spikes: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ weights
    def rec_mask(self, m: str) -> torch.Tensor:
        return getattr(self, f"rec_mask_{m}")

    def block_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated input weights (3H, sum N_m) and block-diagonal masked recurrent weights (3H, 3H)."""
        w_in = torch.block_diag(*[self.w_in[m] for m in MODALITIES])
        w_rec = torch.block_diag(*[self.w_rec[m] * self.rec_mask(m) for m in MODALITIES])
        return w_in, w_rec

    def weights_numpy(self) -> dict[str, np.ndarray]:
        """Effective float32 weights: ``w_in`` (3H, sum N), ``w_rec`` (3H, 3H) masked, ``w_fuse``, ``w_out``."""
        with torch.no_grad():
            w_in, w_rec = self.block_weights()
            return {"w_in": w_in.numpy().astype(np.float32), "w_rec": w_rec.numpy().astype(np.float32),
                    "w_fuse": self.w_fuse.detach().numpy().astype(np.float32),
                    "w_out": self.w_out.detach().numpy().astype(np.float32)}

    def artifact_tensors(self) -> dict[str, torch.Tensor]:
        """Named float32 tensors that fully define the trained network (saved in the artifact)."""
        out: dict[str, torch.Tensor] = {}
        for m in MODALITIES:
            out[f"w_in.{m}"] = self.w_in[m].detach().float().contiguous().clone()
            out[f"w_rec.{m}"] = self.w_rec[m].detach().float().contiguous().clone()
            out[f"rec_mask.{m}"] = self.rec_mask(m).detach().float().contiguous().clone()
        out["w_fuse"] = self.w_fuse.detach().float().contiguous().clone()
        out["w_out"] = self.w_out.detach().float().contiguous().clone()
        return out

    def load_artifact_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`artifact_tensors`; shapes must match the config exactly."""
        expected = self.artifact_tensors()
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            raise ValueError(f"artifact tensors do not match the network: missing {missing}, unexpected {extra}")
        for name, ref in expected.items():
            t = tensors[name]
            if tuple(t.shape) != tuple(ref.shape):
                raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        with torch.no_grad():
            for m in MODALITIES:
                self.w_in[m].copy_(tensors[f"w_in.{m}"])
                self.w_rec[m].copy_(tensors[f"w_rec.{m}"])
                self.rec_mask(m).copy_(tensors[f"rec_mask.{m}"])
            self.w_fuse.copy_(tensors["w_fuse"])
            self.w_out.copy_(tensors["w_out"])
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Clear all neuron state (next call starts from zeros)."""
        self.hidden.reset()
        self.fusion.reset()
        self.readout.reset()
        self._s_prev = None
        self._in_prev = None
        self._out_prev = None

    # ------------------------------------------------------------------ offline
    def forward(self, inputs: Mapping[str, torch.Tensor], keep_state: bool = False,
                return_spikes: bool = False):
        """Run a batch of sequences.

        Parameters
        ----------
        inputs: ``{modality: (B, T, N_m)}`` float or bool tensors; a missing modality is zeros.
        keep_state: continue from the current state (else start from zeros).
        return_spikes: also return ``{"hidden": (B, T, 3H), "fusion": (B, T, F)}``.

        Returns
        -------
        Readout membrane ``v``, (B, T, C); the scores of window k are ``softmax(v[:, (k+1)*S - 1])``
        with ``S = steps_per_window``.
        """
        x = self._concat_inputs(inputs)
        if not keep_state:
            self.reset()
        b, t_len, _ = x.shape
        w_in, w_rec = self.block_weights()
        delayed = self.config.synaptic_delay_steps == 1
        cur_in = x @ w_in.T  # (B, T, 3H)
        if delayed:
            cur_in, self._in_prev = _delay_one(cur_in, self._in_prev)
        s_prev = self._s_prev
        if s_prev is None or s_prev.shape[0] != b:
            s_prev = torch.zeros(b, w_rec.shape[0], dtype=x.dtype, device=x.device)
        hid, fus = [], []
        for t in range(t_len):
            s = self.hidden(cur_in[:, t] + s_prev @ w_rec.T)
            sf = self.fusion((s_prev if delayed else s) @ self.w_fuse.T)
            hid.append(s)
            fus.append(sf)
            s_prev = s
        self._s_prev = s_prev.detach()
        sf_all = torch.stack(fus, dim=1)
        cur_out = sf_all @ self.w_out.T  # (B, T, C)
        if delayed:
            cur_out, self._out_prev = _delay_one(cur_out, self._out_prev)
        v = torch.stack([self.readout(cur_out[:, t]) for t in range(t_len)], dim=1)
        if return_spikes:
            return v, {"hidden": torch.stack(hid, dim=1), "fusion": sf_all}
        return v

    def window_end_values(self, v: torch.Tensor) -> torch.Tensor:
        """Readout membrane at the last step of every whole window: (B, T, C) -> (B, T // S, C)."""
        s = self.config.steps_per_window
        n = v.shape[1] // s
        return v[:, s - 1: n * s: s]

    def _concat_inputs(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        sizes = self.config.input_sizes
        unknown = sorted(set(inputs) - set(sizes))
        if unknown:
            raise ValueError(f"unknown modality {unknown}; known modalities: {list(sizes)}")
        if not inputs:
            raise ValueError(f"no input given; expected at least one of {list(sizes)}")
        ref = next(iter(inputs.values()))
        b, t_len = int(ref.shape[0]), int(ref.shape[1])
        parts = []
        for m, n in sizes.items():
            xm = inputs.get(m)
            if xm is None:
                parts.append(torch.zeros(b, t_len, n, device=self.w_out.device))
                continue
            if tuple(xm.shape) != (b, t_len, n):
                raise ValueError(f"input {m!r} has shape {tuple(xm.shape)}, expected {(b, t_len, n)}")
            parts.append(xm.to(device=self.w_out.device, dtype=torch.float32))
        return torch.cat(parts, dim=2)

    # ------------------------------------------------------------------ streaming
    def check_window(self, spikes: Mapping[str, np.ndarray]) -> int:
        """Validate one window ``{m: (steps, N_m) bool}``; returns the number of steps.

        Raises :class:`InputRejected` ("unknown_modality" or "bad_shape"), both ValueErrors.
        """
        sizes = self.config.input_sizes
        steps = self.config.steps_per_window
        for m, a in spikes.items():
            if m not in sizes:
                raise InputRejected("unknown_modality", f"modality {m!r}; known modalities: {list(sizes)}")
            if a.ndim != 2 or a.shape != (steps, sizes[m]):
                raise InputRejected("bad_shape", f"{m} window has shape {a.shape}, expected {(steps, sizes[m])}")
        return steps

    def _inference_weights(self) -> dict[str, Any]:
        """Weights of the streaming step: ``w_in_t`` (sum N, 3H), ``rec`` the recurrent operator
        (:func:`recurrent_operator`), ``fuse`` and ``out`` :class:`BlockProduct` s of ``w_fuse`` and ``w_out``.

        Each entry is rebuilt only when one of its parameters changes. While spikes are recorded for
        online STDP, which rewrites ``w_fuse`` after every window, the fusion product skips the block
        search (dense matmul), so a window costs no graph analysis. With :attr:`structured_step` False
        every product is dense (same sums up to float rounding order).
        """
        hidden = [self.w_in[m] for m in MODALITIES] + [self.w_rec[m] for m in MODALITIES]
        hidden += [self.rec_mask(m) for m in MODALITIES]
        structured = self.structured_step
        keys = {"hidden": (*_versions(hidden), structured),
                "fuse": (*_versions([self.w_fuse]), structured and not self.record_spikes),
                "out": (*_versions([self.w_out]), structured)}
        with torch.no_grad():
            if self._cache_keys.get("hidden") != keys["hidden"]:
                w_in, w_rec = self.block_weights()
                self._cache["w_in_t"] = w_in.T.contiguous()
                self._cache["rec"] = recurrent_operator(w_rec) if structured else w_rec.contiguous()
            if self._cache_keys.get("fuse") != keys["fuse"]:
                self._cache["fuse"] = BlockProduct(self.w_fuse, find_blocks=keys["fuse"][-1])
            if self._cache_keys.get("out") != keys["out"]:
                self._cache["out"] = BlockProduct(self.w_out, find_blocks=structured)
        self._cache_keys = keys
        return self._cache

    def step(self, spikes: Mapping[str, np.ndarray]) -> np.ndarray:
        """Advance one window (batch 1) with state carried; returns softmax scores (C,) float32.

        ``spikes``: ``{m: (steps_per_window, N_m) bool}``; absent modalities are all-zero input.
        Equivalent to :meth:`forward` with ``keep_state=True`` on this window.
        """
        self.check_window(spikes)
        v_end = self.step_values(spikes)
        return softmax_np(v_end)

    def step_values(self, spikes: Mapping[str, np.ndarray]) -> np.ndarray:
        """Like :meth:`step` but returns the raw readout membrane at the window end (C,) float32.

        The same equations as :meth:`forward`, ordered for one window at a time: only the recurrent
        hidden layer needs a per-step matrix product (sparse on the CPU, :mod:`~snn_fusion_ros.snn.blocks`);
        the fusion and readout currents of the whole window are one product each (block by block for a
        merged network), and their neurons are element-wise per step.
        """
        buf = self._in_buf
        off = 0
        for m, n in self.config.input_sizes.items():
            a = spikes.get(m)
            if a is None:
                buf[:, off:off + n] = 0.0
            else:
                buf[:, off:off + n] = a
            off += n
        w = self._inference_weights()
        dev = self.w_out.device
        with torch.inference_mode():
            x = torch.from_numpy(buf).to(dev)
            cur_in = x @ w["w_in_t"]  # (T, 3H)
            delayed = self.config.synaptic_delay_steps == 1
            hid, fus, ro = self.hidden, self.fusion, self.readout
            nh, nf, nc = cur_in.shape[1], w["fuse"].shape[0], w["out"].shape[0]
            if not hid.state or hid.state["mem"].shape != (1, nh):
                self.reset()
                hid.ensure_state(cur_in[:1])
                fus.ensure_state(torch.zeros(1, nf, device=dev))
                ro.ensure_state(torch.zeros(1, nc, device=dev))
                self._s_prev = torch.zeros(1, nh, device=dev)
            if delayed:
                cur_in, self._in_prev = _delay_one(cur_in[None], self._in_prev)
                cur_in = cur_in[0]
            t_len = cur_in.shape[0]
            zero_reset = hid.reset_mechanism == "zero"
            a, b, thr = hid.alpha, hid.beta, hid.threshold
            # hidden layer; sh[0] = spikes of the step before the window, sh[t + 1] = spikes of step t
            sh = torch.empty(t_len + 1, nh, device=dev)
            sh[0] = s = self._s_prev[0]
            h_syn, h_mem = hid.state["syn"][0], hid.state["mem"][0]
            rec = w["rec"]
            scalar_decay = not isinstance(a, torch.Tensor)  # False: per-population time constants
            for t in range(t_len):
                cur = (rec @ s).add_(cur_in[t])
                h_syn = cur.add_(h_syn, alpha=a) if scalar_decay else cur.addcmul_(h_syn, a)
                h_mem = h_mem.mul(b).add_(h_syn)
                s = (h_mem > thr).float()
                h_mem = h_mem * (1.0 - s) if zero_reset else h_mem - s * thr
                sh[t + 1] = s
            hid.state["syn"], hid.state["mem"] = h_syn[None], h_mem[None]
            self._s_prev = s[None]
            # fusion layer: input of step t = hidden spikes of step t - 1 (delayed) or t
            cur_f = w["fuse"](sh[:-1] if delayed else sh[1:])  # (T, F)
            f_syn, f_mem = fus.state["syn"][0], fus.state["mem"][0]
            sf_all = torch.empty(t_len, nf, device=dev)
            fa, fb = fus.alpha, fus.beta
            for t in range(t_len):
                f_syn = cur_f[t].add(f_syn, alpha=fa)
                f_mem = f_mem.mul(fb).add_(f_syn)
                sf = (f_mem > thr).float()
                f_mem = f_mem * (1.0 - sf) if zero_reset else f_mem - sf * thr
                sf_all[t] = sf
            fus.state["syn"], fus.state["mem"] = f_syn[None], f_mem[None]
            cur_out_t = w["out"](sf_all)  # (T, C)
            if delayed:
                cur_out_t, self._out_prev = _delay_one(cur_out_t[None], self._out_prev)
                cur_out_t = cur_out_t[0]
            cur_out = cur_out_t.cpu().numpy()
            if self.record_spikes:
                self.last_spikes = {"hidden": sh[1:].cpu().numpy() > 0, "fusion": sf_all.cpu().numpy() > 0}
            r_syn = ro.state["syn"][0].cpu().numpy().copy()
            r_mem = ro.state["mem"][0].cpu().numpy().copy()
            for t in range(t_len):
                r_syn = ro.alpha * r_syn + cur_out[t]
                r_mem = ro.beta * r_mem + r_syn
            ro.state["syn"] = torch.from_numpy(r_syn.astype(np.float32))[None].to(dev)
            ro.state["mem"] = torch.from_numpy(r_mem.astype(np.float32))[None].to(dev)
        return r_mem.astype(np.float32)


def _versions(params: list[torch.Tensor]) -> tuple:
    """Identity, storage and in-place version of each tensor: changes whenever one is replaced, moved
    (``module.to(device)`` swaps a parameter's data) or written in place."""
    return tuple((id(p), p.data_ptr(), p._version) for p in params)


def _delay_one(seq: torch.Tensor, prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Delay ``seq`` (B, T, X) by one step: returns ``([prev, seq[:, :-1]], seq[:, -1])``; prev=None -> zeros."""
    if prev is None or prev.shape != seq[:, 0].shape or prev.device != seq.device:
        prev = torch.zeros_like(seq[:, 0])
    shifted = torch.cat([prev[:, None].to(seq.dtype), seq[:, :-1]], dim=1)
    return shifted, seq[:, -1].detach()


def softmax_np(v: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, float32, sums to 1."""
    z = np.asarray(v, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
