"""appc isolators and jetpack's `limits` (isolators.py): parsing, scope, merging, planning.

Value formats and rules are those of appc ace.md "Isolators" (appc-spec.md section 4): quantities
with metric (K, M, G...) and binary (Ki, Mi, Gi...) suffixes or milli-units, request defaulting to
limit, pod isolators bounding app ones, and the executor telling which isolators it cannot enforce.
"""
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import isolators as I
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput


def iso(name, value):
    return {"name": name, "value": value}


# --- quantities ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("512M", 512 * 10 ** 6), ("1Gi", 1 << 30), ("64k", 64000), ("64K", 64000), ("1.5Gi", 3 << 29),
    # ace.md: "128974848", "125952Ki" and "123Mi" are the same value.
    ("128974848", 128974848), ("125952Ki", 128974848), ("123Mi", 128974848), (4096, 4096),
])
def test_memory_quantities_are_exact_bytes(text, expected):
    assert I.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["500m", "0", "-1", "1.5", "12 MB", "1e9", True, None, "0.001Ki"])
def test_memory_quantities_that_are_no_whole_positive_bytes_are_refused(text):
    with pytest.raises(InvalidInput):
        I.parse_bytes(text)


@pytest.mark.parametrize("text, expected", [("500m", 500), ("2", 2000), (0.25, 250), ("0.3", 300), (1, 1000),
                                            ("1.5", 1500)])
def test_cpu_quantities_are_millicores(text, expected):
    assert I.parse_cores(text) == expected


@pytest.mark.parametrize("text", ["0", "0.0001", "1.0005", "0.5m", "two"])
def test_cpu_quantities_below_a_millicore_or_fractional_are_refused(text):
    with pytest.raises(InvalidInput, match="cpu"):
        I.parse_cores(text)


# --- parse -------------------------------------------------------------------------------------
def test_app_isolators_normalized():
    parsed = I.parse([
        iso("resource/memory", {"limit": "1Gi"}),
        iso("resource/cpu", {"request": "250m", "limit": "500m"}),
        iso("os/linux/capabilities-remove-set", {"set": ["CAP_NET_RAW", "CAP_MKNOD", "CAP_NET_RAW"]}),
        iso("os/linux/no-new-privileges", True),
        iso("os/linux/seccomp-remove-set", {"set": ["reboot"]}),
    ], "app")
    assert parsed == {
        "memory": {"request": 1 << 30, "limit": 1 << 30},  # request defaults to limit
        "cpu": {"request": 250, "limit": 500},
        "capabilities": {"remove": ["CAP_MKNOD", "CAP_NET_RAW"]},
        "no_new_privileges": True,
        "other": {"os/linux/seccomp-remove-set": {"set": ["reboot"]}},
    }


def test_pod_isolators_normalized():
    parsed = I.parse([iso("resource/memory", {"request": "256Mi", "limit": "512Mi"}),
                      iso("os/unix/sysctl", {"net.ipv4.tcp_keepalive_time": "300"})], "pod")
    assert parsed == {"memory": {"request": 256 << 20, "limit": 512 << 20},
                      "sysctl": {"net.ipv4.tcp_keepalive_time": "300"}}


def test_none_is_no_isolators_and_false_no_new_privileges_asks_nothing():
    assert I.parse(None, "pod") == {} and I.parse([], "app") == {}
    assert I.parse([iso("os/linux/no-new-privileges", False)], "app") == {}


@pytest.mark.parametrize("isolators, scope, message", [
    ([iso("os/linux/capabilities-retain-set", {"set": ["CAP_KILL"]})], "pod", "applies to one app"),
    ([iso("os/linux/no-new-privileges", True)], "pod", "applies to one app"),
    ([iso("os/unix/sysctl", {"net.core.somaxconn": "1024"})], "app", "applies to the whole pod"),
    ([iso("resource/memory", {"request": "2G", "limit": "1G"})], "app", "above its limit"),
    ([iso("resource/memory", {"request": "1G"})], "app", "no limit"),
    ([iso("resource/memory", {"limit": "1G"}), iso("resource/memory", {"limit": "2G"})], "app", "duplicate"),
    ([iso("resource/gpu", {"limit": 1})], "app", "unknown isolator"),
    ([iso("os/linux/capabilities-retain-set", {"set": ["CAP_KILL"]}),
      iso("os/linux/capabilities-remove-set", {"set": ["CAP_KILL"]})], "app", "conflicts"),
    ([iso("os/linux/capabilities-retain-set", {"set": ["CAP_FLY"]})], "app", "not a Linux capability"),
    ([iso("os/linux/capabilities-retain-set", {"set": []})], "app", "empty set"),
    ([iso("os/linux/no-new-privileges", "yes")], "app", "isolators\\[0\\].value"),
    ([iso("os/unix/sysctl", {"../../etc/passwd": "x"})], "pod", "not a sysctl name"),
])
def test_bad_isolators_are_refused_naming_the_entry(isolators, scope, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        I.parse(isolators, scope)
    assert caught.value.field.startswith("isolators")


# --- friendly limits ------------------------------------------------------------------------------
def test_limits_map_onto_the_same_structure():
    assert I.parse_limits({"memory": "512M", "cpu": 0.5, "processes": 100, "open_files": "4096"}) == {
        "memory": {"request": 512 * 10 ** 6, "limit": 512 * 10 ** 6}, "cpu": {"request": 500, "limit": 500},
        "processes": 100, "open_files": 4096}
    assert I.parse_limits({"memory": "1Gi"}) == I.parse([iso("resource/memory", {"limit": "1Gi"})], "pod")
    assert I.parse_limits(None) == {} and I.parse_limits({"cpu": None}) == {}


@pytest.mark.parametrize("limits, message", [
    ({"memroy": "1G"}, "unknown memroy"), ({"processes": 0}, "above 0"), ({"open_files": -5}, "above 0"),
    ({"processes": True}, "above 0"), ("1G", "mapping"),
])
def test_bad_limits_are_refused(limits, message):
    with pytest.raises(InvalidInput, match=message):
        I.parse_limits(limits)


def test_the_same_resource_in_limits_and_isolators_is_refused():
    with pytest.raises(InvalidInput, match="resource/memory given both"):
        I.combine(I.parse_limits({"memory": "1G"}), I.parse([iso("resource/memory", {"limit": "2G"})], "pod"))
    assert I.combine({"processes": 5}, {"cpu": {"request": 1, "limit": 1}}) == {
        "processes": 5, "cpu": {"request": 1, "limit": 1}}


# --- merge: pod isolators bound app ones ---------------------------------------------------------
def test_pod_limits_bound_app_limits():
    pod = {"memory": {"request": 1 << 30, "limit": 1 << 30}, "cpu": {"request": 500, "limit": 1000},
           "processes": 50, "sysctl": {"net.core.somaxconn": "1024"}}
    app = {"memory": {"request": 2 << 30, "limit": 2 << 30}, "cpu": {"request": 250, "limit": 250},
           "open_files": 64, "no_new_privileges": True}
    assert I.merge(pod, app) == {
        "memory": {"request": 1 << 30, "limit": 1 << 30},   # the pod's lower limit wins
        "cpu": {"request": 250, "limit": 250},              # the app's own lower limit stays
        "processes": 50, "open_files": 64, "no_new_privileges": True}


def test_an_app_without_isolators_inherits_the_pod_bounds():
    pod = {"memory": {"request": 64, "limit": 128}}
    assert I.merge(pod, {}) == pod and I.merge({}, {}) == {}


# --- plan: what an engine enforces and what it cannot ---------------------------------------------
def test_plan_splits_enforced_and_unenforceable_with_user_facing_names():
    parsed = dict(I.parse([iso("resource/memory", {"limit": "1G"}),
                           iso("os/linux/capabilities-retain-set", {"set": ["CAP_KILL"]}),
                           iso("os/linux/apparmor-profile", {"profile": "x"})], "app"), processes=5)
    assert I.plan(parsed, I.ENGINE_ENFORCES["linux"]) == (
        ["os/linux/capabilities-retain-set", "resource/memory", "limits.processes"],
        ["os/linux/apparmor-profile"])
    assert I.plan(parsed, I.ENGINE_ENFORCES["freebsd"]) == (
        ["resource/memory", "limits.processes"],
        ["os/linux/capabilities-retain-set", "os/linux/apparmor-profile"])


def test_strict_refuses_listing_everything_unenforceable():
    parsed = I.parse([iso("os/linux/no-new-privileges", True),
                      iso("os/linux/capabilities-remove-set", {"set": ["CAP_KILL"]})], "app")
    with pytest.raises(InvalidInput, match="cannot enforce os/linux/capabilities-remove-set, "
                                           "os/linux/no-new-privileges; remove them or turn strict off"):
        I.plan(parsed, I.ENGINE_ENFORCES["freebsd"], strict=True)
    assert I.plan(parsed, I.ENGINE_ENFORCES["linux"], strict=True)[1] == []


def test_sysctl_is_reported_unenforceable_until_an_engine_honours_it():
    parsed = I.parse([iso("os/unix/sysctl", {"net.core.somaxconn": "1024"})], "pod")
    assert I.plan(parsed, I.ENGINE_ENFORCES["linux"]) == ([], ["os/unix/sysctl"])
