"""Engines: how a pod's isolation context is made on each platform (see docs/pods-design.md).

Pod supervisors import this package and their engine, nothing of the store: what they need of a
PodRecord (the mount plan) is here, so that the zygote preloads little and forks stay cheap.
"""
from __future__ import annotations

import os
from collections import namedtuple

# One volume mount of a pod's mount plan: absolute host paths; the target is inside an app's
# rootfs. Both engines mount exactly this list, in order.
Mount = namedtuple("Mount", "source target read_only")


def mount_plan(record: dict) -> list:
    """Every volume mount of every app as host paths, in order: what both engines mount."""
    sources = {v["name"]: v["source"] for v in record["volumes"]}
    read_only = {v["name"]: v["read_only"] for v in record["volumes"]}
    plan = []
    for app in record["apps"]:
        for m in app["mounts"]:
            target = os.path.join(app["rootfs"], m["path"].lstrip("/"))
            plan.append(Mount(sources[m["volume"]], target, m["read_only"] or read_only[m["volume"]]))
    return plan


def for_host():
    """The engine of this host's platform."""
    import platform
    system = platform.system()
    if system == "Linux":
        from .linux import LinuxEngine
        return LinuxEngine()
    if system == "FreeBSD":
        from .freebsd import FreeBSDEngine
        return FreeBSDEngine()
    from ..errors import JetpackError
    raise JetpackError("jetpack runs pods on FreeBSD and Linux, not on %s" % system)
