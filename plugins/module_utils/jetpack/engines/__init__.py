"""Engines: how a pod's isolation context is made on each platform (see docs/pods-design.md)."""
from __future__ import annotations

from collections import namedtuple

# One volume mount of a pod's mount plan (pods.mount_plan): absolute host paths; the target is
# inside an app's rootfs. Both engines mount exactly this list, in order.
Mount = namedtuple("Mount", "source target read_only")
