"""Capability sets of an app (capabilities.py), computed per appc ace.md and capabilities(7)."""
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import capabilities as C

DEFAULT_14 = {"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_KILL", "CAP_MKNOD",
              "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETFCAP",
              "CAP_SYS_CHROOT"}


def test_table_numbers_match_linux_capability_h():
    # include/uapi/linux/capability.h: a few anchors across the range, and nothing skipped or doubled.
    assert C.CAPABILITIES["CAP_CHOWN"] == 0
    assert C.CAPABILITIES["CAP_NET_BIND_SERVICE"] == 10
    assert C.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert C.CAPABILITIES["CAP_AUDIT_READ"] == 37
    assert C.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(C.CAPABILITIES.values()) == list(range(41))


def test_default_set_is_the_spec_s_14():
    assert C.DEFAULT_SET == DEFAULT_14 and C.bounding_set(None) == DEFAULT_14


def test_remove_set_takes_from_the_default_and_ignores_names_outside_it():
    # ace.md: the example removes CAP_SYS_CHROOT and CAP_MKNOD and leaves 12; CAP_SYS_ADMIN "has no effect".
    assert C.bounding_set({"remove": ["CAP_SYS_CHROOT", "CAP_MKNOD"]}) == DEFAULT_14 - {"CAP_SYS_CHROOT", "CAP_MKNOD"}
    assert len(C.bounding_set({"remove": ["CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_SYS_ADMIN"]})) == 12


def test_retain_set_replaces_the_default():
    wanted = {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert C.bounding_set({"retain": sorted(wanted)}) == wanted


def test_root_app_holds_its_bounding_set_and_nothing_ambient():
    plan = C.compute({"capabilities": {"remove": ["CAP_NET_RAW"]}}, uid=0)
    assert plan.bounding == plan.permitted == plan.effective == plan.inheritable == DEFAULT_14 - {"CAP_NET_RAW"}
    assert plan.ambient == frozenset() and plan.no_new_privileges is False


def test_non_root_app_gets_only_an_explicit_retain_set_as_ambient():
    assert C.compute({}, uid=1000).permitted == frozenset()  # the default set never reaches a user
    assert C.compute({"capabilities": {"remove": ["CAP_KILL"]}}, uid=1000).ambient == frozenset()
    plan = C.compute({"capabilities": {"retain": ["CAP_NET_BIND_SERVICE"]}, "no_new_privileges": True}, uid=1000)
    assert plan.bounding == plan.ambient == plan.permitted == plan.effective == {"CAP_NET_BIND_SERVICE"}
    assert plan.no_new_privileges is True


def test_masks_round_trip_and_unknown_bits_are_named_by_number():
    assert C.mask(["CAP_CHOWN", "CAP_KILL"]) == 0b100001
    assert C.names_of(C.mask(DEFAULT_14)) == DEFAULT_14
    assert C.names_of(1 << 45) == {"CAP_45"}


@pytest.mark.parametrize("text, expected", [
    # The layout of proc(5) /proc/pid/status lines (tab after the colon, 16 hex digits).
    ("CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
     "CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n",
     {"CapInh": frozenset(), "CapPrm": DEFAULT_14, "CapEff": DEFAULT_14, "CapBnd": DEFAULT_14,
      "CapAmb": frozenset(), "NoNewPrivs": True}),
    ("Name:\tcat\nCapBnd:\t0000000000000400\nNoNewPrivs:\t0\n",
     {"CapBnd": {"CAP_NET_BIND_SERVICE"}, "NoNewPrivs": False}),
])
def test_parse_status(text, expected):
    assert C.parse_status(text) == expected


def test_docker_default_mask_is_the_appc_default_set():
    # 0xa80425fb is the well-known default bounding mask of container runtimes built on these 14 names.
    assert C.mask(C.DEFAULT_SET) == 0xa80425fb
