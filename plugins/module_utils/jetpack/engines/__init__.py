"""Engines: how a pod's isolation context is made on each platform (see docs/pods-design.md)."""
from __future__ import annotations

from collections import namedtuple

# One volume mount of a pod's mount plan (pods.mount_plan): absolute host paths; the target is
# inside an app's rootfs. Both engines mount exactly this list, in order.
Mount = namedtuple("Mount", "source target read_only")


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
