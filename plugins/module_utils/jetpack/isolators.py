"""appc isolators and jetpack's friendly `limits`, as one normalized structure (docs/executor.md).

appc (ace.md "Isolators") lists isolators in manifests as [{"name", "value"}]; this module turns
those of a pod and of its apps into one JSON-ready dict per scope:

    {"memory": {"request": bytes, "limit": bytes},         resource/memory
     "cpu": {"request": millicores, "limit": millicores},   resource/cpu (1 core = 1000)
     "processes": count,                                    limits.processes (no appc isolator)
     "open_files": count,                                   limits.open_files (no appc isolator)
     "capabilities": {"retain": [CAP_...]} | {"remove": [CAP_...]},
     "no_new_privileges": True,                             present only when asked for
     "sysctl": {key: value},                                os/unix/sysctl (pod scope)
     "other": {appc name: value}}                           valid appc isolators not handled here

Only the keys given are present. Quantities are integers in base units, as the spec requires.
merge() applies the spec's rule that pod isolators bound app ones; plan() splits what an engine
enforces from what it cannot, which the spec requires telling the user (and "strict" refuses).
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from . import appc
from .errors import InvalidInput

MEMORY = "resource/memory"
CPU = "resource/cpu"
RETAIN = "os/linux/capabilities-retain-set"
REMOVE = "os/linux/capabilities-remove-set"
NO_NEW_PRIVILEGES = "os/linux/no-new-privileges"
SYSCTL = "os/unix/sysctl"

APP_ONLY = (RETAIN, REMOVE, NO_NEW_PRIVILEGES, "os/linux/seccomp-remove-set", "os/linux/seccomp-retain-set",
            "os/linux/oom-score-adj")
POD_ONLY = (SYSCTL,)

# How each normalized key is named to a user (module results, errors).
LABELS = {"memory": MEMORY, "cpu": CPU, "processes": "limits.processes", "open_files": "limits.open_files",
          "no_new_privileges": NO_NEW_PRIVILEGES, "sysctl": SYSCTL}

# What each engine enforces once wired (docs/executor.md, "Phase 2"); "capabilities" covers both sets.
ENGINE_ENFORCES = {
    "linux": frozenset(("memory", "cpu", "processes", "open_files", "capabilities", "no_new_privileges")),
    "freebsd": frozenset(("memory", "cpu", "processes", "open_files")),
}

_SUFFIXES = {"": 1, "k": 10 ** 3, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15,
             "E": 10 ** 18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
             "Ei": 2 ** 60}
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_SYSCTL_KEY = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_-]+)+")


# --- quantities -----------------------------------------------------------------------------
def _decimal(value, field: str) -> Decimal:
    """A quantity ("512M", "1Gi", "500m", 0.5, 3) as an exact decimal of base units."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput("%s: %r is not a quantity; use a value like \"512M\", \"1Gi\" or \"500m\""
                           % (field, value), field)
    if not isinstance(value, str):
        value = repr(value)
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise InvalidInput("%s: %r is not a quantity; use a value like \"512M\", \"1Gi\" or \"500m\""
                           % (field, value), field)
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise InvalidInput("%s: %r is not a number" % (field, value), field) from None
    suffix = match.group(2) or ""
    return number / 1000 if suffix == "m" else number * _SUFFIXES[suffix]


def parse_bytes(value, field: str = "memory") -> int:
    """Bytes from "512M" (10^6), "1Gi" (2^30), "64k" or a plain number; a whole, positive count."""
    amount = _decimal(value, field)
    if amount != amount.to_integral_value() or amount < 1:
        raise InvalidInput("%s: %r is not a whole number of bytes above 0; use a value like \"512Mi\""
                           % (field, value), field)
    return int(amount)


def parse_cores(value, field: str = "cpu") -> int:
    """Millicores from cores: "500m" -> 500, "2" -> 2000, 0.25 -> 250."""
    millicores = _decimal(value, field) * 1000
    if millicores != millicores.to_integral_value() or millicores < 1:
        raise InvalidInput("%s: %r must be at least 1m and a whole number of millicores; use a value like "
                           "\"500m\" or \"1.5\"" % (field, value), field)
    return int(millicores)


def _count(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or int(value) < 1:
        raise InvalidInput("%s: %r must be a whole number above 0" % (field, value), field)
    return int(value)


# --- appc isolators ---------------------------------------------------------------------------
def parse(isolators, scope: str, field: str = "isolators") -> dict:
    """The normalized dict of an appc isolator list of scope "pod" or "app"; InvalidInput names the entry."""
    if isolators is None:
        return {}
    # The same schema checks as image manifests get (known names, value shapes, no duplicates, no conflicts).
    appc.check_isolators(isolators, field)
    result = {}
    for index, isolator in enumerate(isolators):
        name, value, where = isolator["name"], isolator["value"], "%s[%d]" % (field, index)
        _check_scope(name, scope, where)
        if name in (MEMORY, CPU):
            result[name.split("/")[1]] = _resource(name, value, where + ".value")
        elif name in (RETAIN, REMOVE):
            result["capabilities"] = {"retain" if name == RETAIN else "remove": _capability_names(value, where)}
        elif name == NO_NEW_PRIVILEGES:
            if value:  # false is the default and asks nothing of an engine
                result["no_new_privileges"] = True
        elif name == SYSCTL:
            result["sysctl"] = _sysctl(value, where + ".value")
        else:
            result.setdefault("other", {})[name] = value
    return result


def _check_scope(name: str, scope: str, where: str) -> None:
    if scope == "pod" and name in APP_ONLY:
        raise InvalidInput("%s: %s applies to one app, not to a pod; move it to the app's isolators" % (where, name),
                           where)
    if scope == "app" and name in POD_ONLY:
        raise InvalidInput("%s: %s applies to the whole pod, not to one app; move it to the pod's isolators"
                           % (where, name), where)


def _resource(name: str, value: dict, field: str) -> dict:
    parse_value = parse_bytes if name == MEMORY else parse_cores
    amounts = {key: parse_value(value[key], "%s.%s" % (field, key)) for key in ("request", "limit") if key in value}
    if "limit" not in amounts:
        raise InvalidInput("%s: %s has a request but no limit; give a limit (jetpack enforces limits)"
                           % (field, name), field)
    amounts.setdefault("request", amounts["limit"])  # ace.md: request defaults to limit
    if amounts["request"] > amounts["limit"]:
        raise InvalidInput("%s: the request of %s is above its limit; lower the request" % (field, name), field)
    return amounts


def _capability_names(value: dict, where: str) -> list:
    from .capabilities import CAPABILITIES  # capabilities.py imports ctypes; most callers never need it
    names = []
    for index, name in enumerate(value["set"]):
        if name not in CAPABILITIES:
            raise InvalidInput("%s.value.set[%d]: %s is not a Linux capability; use one of %s"
                               % (where, index, name, ", ".join(sorted(CAPABILITIES))), where)
        names.append(name)
    return sorted(set(names))


def _sysctl(value: dict, field: str) -> dict:
    for key in value:
        if not _SYSCTL_KEY.fullmatch(key):
            raise InvalidInput("%s: %r is not a sysctl name such as net.ipv4.tcp_keepalive_time" % (field, key), field)
    return dict(value)


# --- friendly limits ------------------------------------------------------------------------
LIMIT_KEYS = ("memory", "cpu", "processes", "open_files")


def parse_limits(limits, field: str = "limits") -> dict:
    """jetpack_pod's `limits` ({memory, cpu, processes, open_files}) as normalized pod isolators."""
    if not limits:
        return {}
    if not isinstance(limits, dict):
        raise InvalidInput("%s must be a mapping of %s" % (field, ", ".join(LIMIT_KEYS)), field)
    unknown = sorted(set(limits) - set(LIMIT_KEYS))
    if unknown:
        raise InvalidInput("%s: unknown %s; use %s" % (field, ", ".join(unknown), ", ".join(LIMIT_KEYS)), field)
    result = {}
    if limits.get("memory") is not None:
        amount = parse_bytes(limits["memory"], field + ".memory")
        result["memory"] = {"request": amount, "limit": amount}
    if limits.get("cpu") is not None:
        amount = parse_cores(limits["cpu"], field + ".cpu")
        result["cpu"] = {"request": amount, "limit": amount}
    for key in ("processes", "open_files"):
        if limits.get(key) is not None:
            result[key] = _count(limits[key], "%s.%s" % (field, key))
    return result


def combine(limits: dict, isolators: dict, field: str = "limits") -> dict:
    """One scope's isolators plus its friendly limits; the same resource given twice is an error."""
    both = sorted(set(limits) & set(isolators))
    if both:
        raise InvalidInput("%s: %s given both in limits and in isolators; give each once"
                           % (field, ", ".join(LABELS.get(k, k) for k in both)), field)
    return dict(isolators, **limits)


# --- pod bounds apps --------------------------------------------------------------------------
def merge(pod: dict, app: dict) -> dict:
    """An app's effective isolators: ace.md "isolators applied to the pod will bound" the app's.

    Resource limits and requests take the lower of the two; counts likewise; app-only isolators
    are the app's; pod-only ones (sysctl) stay with the pod and are not repeated here.
    """
    result = {key: value for key, value in app.items() if key != "sysctl"}
    for key in ("memory", "cpu"):
        if key in pod:
            result[key] = _bounded(pod[key], app.get(key))
    for key in ("processes", "open_files"):
        if key in pod:
            result[key] = min(pod[key], app.get(key, pod[key]))
    if "other" in pod:
        result["other"] = dict(pod["other"], **app.get("other", {}))
    return result


def _bounded(pod: dict, app) -> dict:
    if app is None:
        return dict(pod)
    limit = min(pod["limit"], app["limit"])
    return {"request": min(app["request"], limit), "limit": limit}


# --- what an engine can do ---------------------------------------------------------------------
def describe(key: str, isolators: dict) -> list:
    """User-facing names of one normalized key ("capabilities" and "other" name their appc isolators)."""
    if key == "capabilities":
        return [RETAIN if "retain" in isolators[key] else REMOVE]
    if key == "other":
        return sorted(isolators[key])
    return [LABELS.get(key, key)]


def plan(isolators: dict, engine_capabilities, strict: bool = False, where: str = "pod"):
    """(enforced, unenforceable): user-facing names of the isolators the engine applies and of those it
    cannot. With strict, anything unenforceable is an InvalidInput naming every one of them."""
    enforced, unenforceable = [], []
    for key in sorted(isolators):
        (enforced if key in engine_capabilities else unenforceable).extend(describe(key, isolators))
    if strict and unenforceable:
        raise InvalidInput("%s: this host cannot enforce %s; remove them or turn strict off to run without them"
                           % (where, ", ".join(unenforceable)), "strict")
    return enforced, unenforceable


# Per scope: a FreeBSD pod is one jail, and rctl(8) limits a jail, not one app of it.
APP_ENFORCES = {
    "linux": frozenset(("memory", "cpu", "capabilities", "no_new_privileges")),
    "freebsd": frozenset(),
}
CGROUP_KEYS = ("memory", "cpu", "processes")


def enforceable(engine_name: str, scope: str) -> frozenset:
    """What this host's engine enforces in a scope ("pod" or "app"); on Linux, what its cgroups allow."""
    wanted = (ENGINE_ENFORCES if scope == "pod" else APP_ENFORCES).get(engine_name, frozenset())
    if engine_name != "linux":
        return wanted
    from . import cgroups  # reads /proc: only where pods run on Linux
    return wanted & (cgroups.supported(cgroups.detect()) | {"capabilities", "no_new_privileges"})


def report(pod: dict, apps: dict, engine_name: str, strict: bool = False) -> dict:
    """{"pod": {"enforced", "unenforceable"}, "apps": {name: {...}}} for a pod's isolators and each
    app's own; with strict, one InvalidInput naming everything unenforceable, in every scope."""
    result = {"pod": _scope_report(pod, enforceable(engine_name, "pod"))}
    app_enforces = enforceable(engine_name, "app")
    result["apps"] = {name: _scope_report(own, app_enforces) for name, own in apps.items()}
    if strict:
        missing = ["%s (%s)" % (", ".join(entry["unenforceable"]), where)
                   for where, entry in [("pod", result["pod"])] + [("app " + n, e) for n, e in result["apps"].items()]
                   if entry["unenforceable"]]
        if missing:
            raise InvalidInput("strict: the %s engine of this host cannot enforce %s; remove them or set strict "
                               "to false to run without them" % (engine_name, "; ".join(missing)), "strict")
    return result


def _scope_report(isolators: dict, engine_enforces) -> dict:
    enforced, unenforceable = plan(isolators, engine_enforces)
    return {"enforced": enforced, "unenforceable": unenforceable}


def unenforced_names(report_: dict) -> list:
    """"<scope>: <isolator>" for everything a report says is not enforced (for a module warning)."""
    found = ["pod: %s" % name for name in report_["pod"]["unenforceable"]]
    for app, entry in sorted(report_["apps"].items()):
        found += ["app %s: %s" % (app, name) for name in entry["unenforceable"]]
    return found


def cgroup_limits(isolators: dict) -> dict:
    """The part of normalized isolators that a Linux cgroup enforces."""
    return {key: isolators[key] for key in CGROUP_KEYS if key in isolators}


# --- back to appc -------------------------------------------------------------------------------
def to_appc(isolators: dict) -> list:
    """Normalized isolators as an appc isolator list (the pod manifest's); limits.processes and
    limits.open_files have no appc isolator and are left out."""
    found = []
    if "memory" in isolators:
        found.append({"name": MEMORY, "value": {k: str(isolators["memory"][k]) for k in ("request", "limit")}})
    if "cpu" in isolators:
        found.append({"name": CPU, "value": {k: "%dm" % isolators["cpu"][k] for k in ("request", "limit")}})
    capabilities = isolators.get("capabilities") or {}
    for key, name in (("retain", RETAIN), ("remove", REMOVE)):
        if key in capabilities:
            found.append({"name": name, "value": {"set": list(capabilities[key])}})
    if isolators.get("no_new_privileges"):
        found.append({"name": NO_NEW_PRIVILEGES, "value": True})
    if "sysctl" in isolators:
        found.append({"name": SYSCTL, "value": dict(isolators["sysctl"])})
    found += [{"name": name, "value": value} for name, value in sorted((isolators.get("other") or {}).items())]
    return found
