"""Import-time fix that lets lava-nc 0.10 import on Python >= 3.11, without editing site-packages.

Python 3.11 refuses dataclass fields whose default is an unhashable instance. lava-nc 0.10's
``lava/magma/compiler/var_model.py`` declares ``x: ByteEncoder = ByteEncoder()`` (and ``y``, ``z``,
``p``, ``hi``, ``lo``) in dataclasses, so ``import lava.magma...`` raises
``ValueError: mutable default <class '...ByteEncoder'> for field x is not allowed``.

:func:`install` puts a meta-path finder first on :data:`sys.meta_path` that, for that one module
only, reads the installed source, rewrites ``= ByteEncoder()`` to
``= field(default_factory=ByteEncoder)`` (the same default, a fresh instance per object), compiles
and executes it as the module. Byte-code caches are bypassed for that module. The hook is installed
only by the lava backend, is idempotent, and does nothing when the pattern is absent (a fixed lava).

A second rewrite, in ``lava/magma/runtime/message_infrastructure/multiprocessing.py``: lava calls
``multiprocessing.set_start_method('fork')`` at import, which raises "context has already been set"
in any process that already used multiprocessing (a benchmark run before it, a data loader). The
call gets ``force=True``: Lava's runtime needs fork, which is Linux's default anyway.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

TARGET = "lava.magma.compiler.var_model"
MP_TARGET = "lava.magma.runtime.message_infrastructure.multiprocessing"
_PATTERN = "= ByteEncoder()"
_REPLACEMENT = "= _snn_fusion_dc_field(default_factory=ByteEncoder)"
_IMPORT = "from dataclasses import field as _snn_fusion_dc_field\n"
_MP_PATTERN = "mp.set_start_method('fork')"
_MP_REPLACEMENT = "mp.set_start_method('fork', force=True)"


def patch_mp_source(src: str) -> str:
    """Return ``src`` with lava's start-method call made idempotent (unchanged if absent)."""
    return src.replace(_MP_PATTERN, _MP_REPLACEMENT)


def patch_source(src: str) -> str:
    """Return ``src`` with the mutable dataclass defaults replaced (unchanged if none)."""
    if _PATTERN not in src:
        return src
    lines = src.splitlines(keepends=True)
    # after any "from __future__" import (they must stay first), before the first dataclasses import
    insert_at = next((i for i, line in enumerate(lines) if line.startswith("from dataclasses import")), 0)
    lines.insert(insert_at, _IMPORT)
    return "".join(lines).replace(_PATTERN, _REPLACEMENT)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, origin: str, patch) -> None:
        self.origin = origin
        self.patch = patch

    def create_module(self, spec):  # default module creation
        return None

    def exec_module(self, module) -> None:
        src = Path(self.origin).read_text(encoding="utf-8")
        code = compile(self.patch(src), self.origin, "exec")
        exec(code, module.__dict__)


_PATCHES = {TARGET: patch_source, MP_TARGET: patch_mp_source}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return spec
        return importlib.util.spec_from_file_location(fullname, spec.origin,
                                                      loader=_PatchingLoader(spec.origin, patch))


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)


def install() -> None:
    """Install the finder (idempotent). Must run before the first ``import lava.magma``."""
    if installed():
        return
    sys.meta_path.insert(0, _Finder())
