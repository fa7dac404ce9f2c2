"""A primary backend with an ordered fallback list, switching within the same window on failure.

:class:`BackendChain` loads the first backend of ``names`` that loads; each :meth:`step` runs the
active backend (in a worker thread when ``step_timeout_ms`` > 0) and checks its result. A backend
that raises, exceeds the deadline, or returns garbage (wrong shape, NaN/inf, not a distribution) is
retired, the next one in the list is loaded (if not yet) and reset, and the *same window* is
stepped on it, so no window is lost. The last usable backend is never retired for a slow step:
with nothing to fall back to, the chain waits for it and counts the overrun. The new backend
starts from a reset state (the recurrent state
of the failed one is not transferable); this is reported. A hung backend's worker thread cannot be
killed in Python: it is abandoned and keeps its thread until it returns.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from snn_fusion_ros.backends.base import Backend
from snn_fusion_ros.backends.registry import create_backend
from snn_fusion_ros.snn.artifact import ModelArtifact


class BackendsExhausted(RuntimeError):
    """Every backend of the chain failed; the message lists why each one did."""


@dataclass(frozen=True)
class StepResult:
    """One window's probabilities and which backend produced them."""

    probs: np.ndarray
    backend: str
    device: str
    fallback_active: bool
    step_ms: float


@dataclass
class ChainEvent:
    """A failure or switch, for logs and diagnostics."""

    wall_time: float
    backend: str
    message: str


@dataclass
class _Slot:
    name: str
    backend: Backend | None = None
    failed: str = ""
    pool: concurrent.futures.ThreadPoolExecutor | None = None
    options: dict[str, Any] = field(default_factory=dict)


class BackendChain:
    """Ordered backends for one model artifact; not thread-safe (one caller thread)."""

    def __init__(self, names: list[str], artifact: ModelArtifact, *, step_timeout_ms: float = 0.0,
                 options: Mapping[str, dict[str, Any]] | None = None,
                 factory: Callable[..., Backend] = create_backend) -> None:
        if not names:
            raise ValueError("the backend list is empty; give at least one of torch, lava, akida, nir")
        if len(set(names)) != len(names):
            raise ValueError(f"backend list {names} names a backend twice")
        if step_timeout_ms < 0:
            raise ValueError(f"step_timeout_ms={step_timeout_ms} must be >= 0 (0 = no deadline)")
        self.artifact = artifact
        self.step_timeout_ms = step_timeout_ms
        self._factory = factory
        self._slots = [_Slot(n, options=dict((options or {}).get(n, {}))) for n in names]
        self._active = -1
        self.events: list[ChainEvent] = []
        self.switches = 0
        self.overruns = 0  # deadline overruns of the last backend (waited for: nothing to fall back to)
        self._activate_from(0)

    # --- state ----------------------------------------------------------------------------------

    @property
    def primary(self) -> str:
        return self._slots[0].name

    @property
    def active(self) -> Backend:
        return self._slots[self._active].backend  # type: ignore[return-value]

    @property
    def active_name(self) -> str:
        return self._slots[self._active].name

    @property
    def fallback_active(self) -> bool:
        return self._active > 0

    def failures(self) -> dict[str, str]:
        """Backend name -> why it was retired (only the failed ones)."""
        return {s.name: s.failed for s in self._slots if s.failed}

    # --- switching ------------------------------------------------------------------------------

    def _record(self, name: str, message: str) -> None:
        self.events.append(ChainEvent(time.time(), name, message))
        del self.events[:-100]

    def _activate_from(self, start: int) -> None:
        for i in range(start, len(self._slots)):
            slot = self._slots[i]
            if slot.failed:
                continue
            try:
                if slot.backend is None:
                    backend = self._factory(slot.name, **slot.options)
                    backend.load(self.artifact)
                    slot.backend = backend
                else:
                    slot.backend.reset()
            except Exception as exc:  # any load failure retires the backend, with its reason
                slot.failed = f"load failed: {type(exc).__name__}: {exc}"
                self._record(slot.name, slot.failed)
                continue
            if self._active >= 0 and i != self._active:
                self.switches += 1
                self._record(slot.name, f"switched from {self._slots[self._active].name} (state reset)")
            self._active = i
            return
        raise BackendsExhausted("no backend could run: " + "; ".join(f"{s.name}: {s.failed}" for s in self._slots))

    def _retire_active(self, reason: str) -> None:
        slot = self._slots[self._active]
        slot.failed = reason
        self._record(slot.name, reason)
        if slot.pool is not None:
            slot.pool.shutdown(wait=False, cancel_futures=True)
            slot.pool = None
        self._activate_from(self._active + 1)

    # --- stepping -------------------------------------------------------------------------------

    def _run(self, slot: _Slot, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.step_timeout_ms <= 0:
            return slot.backend.step(inputs)
        if slot.pool is None:
            slot.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"backend-{slot.name}")
        future = slot.pool.submit(slot.backend.step, inputs)
        try:
            return future.result(timeout=self.step_timeout_ms / 1e3)
        except concurrent.futures.TimeoutError:
            if not self._fallback_left():
                # No backend to fall back to: retiring this one would stop classification for good.
                # Wait for the slow step instead, and report the overrun.
                self.overruns += 1
                self._record(slot.name, f"step exceeded its deadline of {self.step_timeout_ms:g} ms; no fallback "
                                        f"left, waited for it")
                return future.result()
            raise TimeoutError(f"step exceeded its deadline of {self.step_timeout_ms:g} ms") from None

    def _fallback_left(self) -> bool:
        return any(not s.failed for s in self._slots[self._active + 1:])

    def _check(self, probs: Any) -> np.ndarray:
        n = len(self.artifact.class_names)
        arr = np.asarray(probs, dtype=np.float32)
        if arr.shape != (n,):
            raise ValueError(f"returned scores of shape {arr.shape}, expected ({n},)")
        if not np.isfinite(arr).all():
            raise ValueError("returned non-finite scores")
        if (arr < -1e-6).any() or abs(float(arr.sum()) - 1.0) > 1e-3:
            raise ValueError(f"returned scores that are not probabilities (sum {float(arr.sum()):.4g})")
        return arr

    def step(self, inputs: Mapping[str, np.ndarray]) -> StepResult:
        """Step the window on the active backend, falling back (same window) until one succeeds.

        Input errors (``ValueError`` / InputRejected from the input check) are the caller's and
        propagate without retiring the backend.
        """
        from snn_fusion_ros.errors import InputRejected

        while True:
            slot = self._slots[self._active]
            t0 = time.perf_counter()
            try:
                probs = self._check(self._run(slot, inputs))
            except InputRejected:
                raise
            except Exception as exc:  # a failing backend: retire it and retry this window on the next
                self._retire_active(f"step failed: {type(exc).__name__}: {exc}")
                continue
            caps = slot.backend.capabilities()
            return StepResult(probs, slot.name, caps.device, self.fallback_active, (time.perf_counter() - t0) * 1e3)

    def reset(self) -> None:
        self.active.reset()

    def close(self) -> None:
        for slot in self._slots:
            if slot.pool is not None:
                slot.pool.shutdown(wait=False, cancel_futures=True)
