"""Start the pods marked to start at boot, each after the services it depends on.

Pods are marked by annotations (the service role sets them through jetpack_pod), so nothing but the
pods themselves records what starts at boot:

    jetpack.runtime/boot     "true": start this pod at boot
    jetpack.runtime/service  the service the pod runs (a service's pod is replaced by a new
                             generation with another name when anything changes); default: its name
    jetpack.runtime/after    services, comma-separated, whose pods are started before this one

The host's boot service (systemd unit or rc.d script, installed by the host role) runs
`jetpack boot` (cli.py) from the installed core, which calls `start_boot_pods(store, say)`.
A pod that fails to start does not stop the others; the exit status says something failed.
"""
from __future__ import annotations

import sys

from . import pods
from .errors import JetpackError
from .store import Store

BOOT = "jetpack.runtime/boot"
SERVICE = "jetpack.runtime/service"
AFTER = "jetpack.runtime/after"


def is_marked(pod) -> bool:
    return str(pod.record.get("annotations", {}).get(BOOT, "")).lower() == "true"


def service_of(pod) -> str:
    return pod.record.get("annotations", {}).get(SERVICE) or pod.name


def dependencies_of(pod) -> list:
    value = pod.record.get("annotations", {}).get(AFTER) or ""
    return [name.strip() for name in value.split(",") if name.strip()]


def boot_order(marked: list) -> tuple:
    """(pods in start order, services in a dependency cycle).

    Services are ordered so that each comes after those it names in `after` (dependencies on
    services that start no pod at boot are ignored); ties go by service name, then pod name. Pods
    of services caught in a cycle come last, so that a bad annotation never keeps a pod down.
    """
    by_service = {}
    for pod in marked:
        by_service.setdefault(service_of(pod), []).append(pod)
    waiting = {service: {d for pod in group for d in dependencies_of(pod) if d in by_service and d != service}
               for service, group in by_service.items()}
    ordered = []
    while True:
        ready = sorted(service for service, deps in waiting.items() if not deps)
        if not ready:
            break
        for service in ready:
            del waiting[service]
            ordered.append(service)
        for deps in waiting.values():
            deps.difference_update(ready)
    cycle = sorted(waiting)
    start = [pod for service in ordered + cycle for pod in sorted(by_service[service], key=lambda p: p.name)]
    return start, cycle


def start_boot_pods(store: Store, say) -> bool:
    """Start every marked pod of the store that is not running, in boot order; True when all run."""
    return start_marked(pods.list_pods(store), lambda pod: pods.start_supervised(store, pod), say)


def start_marked(candidates: list, start, say) -> bool:
    """start(pod) -> False when it was running, for each marked pod in boot order; True when all run.
    say(text, stream=None) reports each pod (stream sys.stderr for problems)."""
    ordered, cycle = boot_order([pod for pod in candidates if is_marked(pod)])
    ok = True
    if cycle:
        say("jetpack boot: services %s depend on each other (annotation %s); starting them last, in name order"
            % (", ".join(cycle), AFTER), sys.stderr)
        ok = False
    for pod in ordered:
        try:
            say("started %s" % pod.name if start(pod) else "%s was running" % pod.name)
        except JetpackError as error:
            say("jetpack boot: pod %s did not start: %s" % (pod.name, error), sys.stderr)
            ok = False
    return ok
