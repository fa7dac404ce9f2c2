"""A private ROS_DOMAIN_ID for tests, benchmarks and the demo (DDS confined to localhost).

:func:`claim_domain_id` takes an exclusive ``flock`` on ``/tmp/snn_fusion_ros_domain_<id>.lock`` for
an id in 1..100 and holds it for the life of the process, so concurrent runs never share a
domain; :func:`isolated_ros_env` returns the environment every child process should inherit.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import random
from typing import IO

_held: dict[int, IO[str]] = {}


@atexit.register
def _release_domain_ids() -> None:
    """Close the lock files at exit (the locks go with the process anyway; this keeps Python from
    reporting the still-open files as ResourceWarnings)."""
    for fh in _held.values():
        fh.close()
    _held.clear()


def claim_domain_id(seed: int | None = None) -> int:
    """Lock and return a free ROS_DOMAIN_ID in 1..100 (held until the process exits)."""
    ids = list(range(1, 101))
    random.Random(os.getpid() if seed is None else seed).shuffle(ids)
    for domain in ids:
        if domain in _held:
            continue
        fh = open(f"/tmp/snn_fusion_ros_domain_{domain}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _held[domain] = fh
        return domain
    raise RuntimeError("no free ROS_DOMAIN_ID in 1..100 (100 concurrent runs?)")


def isolated_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """os.environ plus LOCALHOST discovery and a claimed (or the given) ROS_DOMAIN_ID."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else claim_domain_id())
    return env


def isolate_this_process() -> int:
    """Apply :func:`isolated_ros_env` to this process (before rclpy.init); returns the domain id."""
    env = isolated_ros_env()
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    os.environ.pop("ROS_STATIC_PEERS", None)
    return int(env["ROS_DOMAIN_ID"])
