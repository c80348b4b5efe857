"""FreeBSD pod limits contract (engines/freebsd_limits.py), tested without FreeBSD.

argv expectations cite rctl(8) ("RULE SYNTAX", "RESOURCES", "ACTIONS"), rctl(4) and sysctl(8), as
summarised in shared/reference/freebsd/commands.md section 9. Parsers and error classification are
fed the recordings of shared/reference/freebsd/outputs (ids carry each recording's source). The
output of `sysctl -n kern.racct.enable` and of `rctl -u` were never recorded (outputs/MISSING.md):
tests using those texts say "source-derived" in their names.
"""
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import isolators
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd_limits as L
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import CommandError, InvalidInput
from tests.helpers.samples import sample

JAIL = "jetpack-3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b"
LIMITS = isolators.parse_limits({"memory": "512Mi", "cpu": "500m", "processes": 64, "open_files": 1024})


class FakeRun:
    """Records argv; answers from a table of {tuple(argv): (rc, stdout, stderr)}, default success."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __call__(self, argv):
        self.calls.append(list(argv))
        return self.answers.get(tuple(argv), (0, "", ""))


RACCT_ON = {tuple(L.argv_racct_probe()): (0, "1\n", "")}


# --- rules (rctl(8) RULE SYNTAX subject:subject-id:resource:action=amount) ------------------------
def test_rules_for_every_friendly_limit():
    # rctl(8) RESOURCES: memoryuse (resident set size, bytes), pcpu (% of one CPU), maxproc, openfiles.
    assert L.rules(JAIL, LIMITS) == [
        "jail:%s:memoryuse:deny=536870912" % JAIL,
        "jail:%s:pcpu:deny=50" % JAIL,
        "jail:%s:maxproc:deny=64" % JAIL,
        "jail:%s:openfiles:deny=1024" % JAIL,
    ]


@pytest.mark.parametrize("millicores, percent", [(500, 50), (2000, 200), (1, 1), (15, 2), (1000, 100)])
def test_pcpu_is_percent_of_one_core_rounded_up(millicores, percent):
    assert L.pcpu_percent(millicores) == percent


def test_no_limits_no_rules_and_no_rctl_run():
    run = FakeRun()
    assert L.FreeBSDLimits(run).apply(JAIL, {}) == [] and run.calls == []


def test_jail_names_are_checked_before_reaching_argv():
    with pytest.raises(InvalidInput):
        L.rules("web;rm", LIMITS)
    with pytest.raises(InvalidInput):
        L.argv_remove("-a")


# --- argv -------------------------------------------------------------------------------------
def test_argv():
    # rctl(8) SYNOPSIS: rctl -a rule, rctl -r filter, rctl -u filter; sysctl(8) -n prints the value only.
    assert L.argv_add("jail:%s:maxproc:deny=64" % JAIL) == ["/usr/bin/rctl", "-a", "jail:%s:maxproc:deny=64" % JAIL]
    assert L.argv_remove(JAIL) == ["/usr/bin/rctl", "-r", "jail:" + JAIL]
    assert L.argv_usage(JAIL) == ["/usr/bin/rctl", "-u", "jail:" + JAIL]
    assert L.argv_racct_probe() == ["/sbin/sysctl", "-n", "kern.racct.enable"]


def test_apply_probes_racct_clears_old_rules_then_adds_each():
    run = FakeRun(RACCT_ON)
    added = L.FreeBSDLimits(run).apply(JAIL, LIMITS)
    assert run.calls == [L.argv_racct_probe(), L.argv_remove(JAIL)] + [L.argv_add(r) for r in added]


def test_a_failed_add_source_derived_message_removes_every_rule_again():
    bad = L.rules(JAIL, LIMITS)[2]
    # Source-derived text (MISSING.md: rctl.c add_rule prints "rctl: failed to add rule '<rule>': <strerror>").
    answers = dict(RACCT_ON)
    answers[tuple(L.argv_add(bad))] = (1, "", "rctl: failed to add rule '%s': Invalid argument\n" % bad)
    run = FakeRun(answers)
    with pytest.raises(CommandError, match="failed to add rule") as caught:
        L.FreeBSDLimits(run).apply(JAIL, LIMITS)
    assert caught.value.rc == 1 and caught.value.argv == L.argv_add(bad)
    assert run.calls[-1] == L.argv_remove(JAIL)
    assert L.argv_add(L.rules(JAIL, LIMITS)[3]) not in run.calls


# --- RACCT -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stdout, enabled", [("1\n", True), ("0\n", False)])
def test_racct_probe_source_derived_value_only_output(stdout, enabled):
    assert L.parse_racct_enabled(stdout) is enabled


@pytest.mark.parametrize("stdout", ["", "yes\n", "1 0\n"])
def test_racct_probe_refuses_anything_else(stdout):
    with pytest.raises(Exception, match="RACCT"):
        L.parse_racct_enabled(stdout)


def test_racct_off_fails_clearly_before_any_rule():
    run = FakeRun({tuple(L.argv_racct_probe()): (0, "0\n", "")})
    with pytest.raises(L.RacctDisabled, match=r"kern\.racct\.enable=1 to /boot/loader\.conf and reboot"):
        L.FreeBSDLimits(run).apply(JAIL, LIMITS)
    assert run.calls == [L.argv_racct_probe()]


def test_rctl_disabled_message_is_classified():
    header, body = sample("rctl-disabled-1")  # source: github.com/bsdci/libioc/issues/361
    error = L.error_for(L.argv_add("r"), 1, "", body)
    assert isinstance(error, L.RacctDisabled) and "loader.conf" in str(error) and error.stderr == body


def test_sysctl_cannot_enable_racct_at_runtime_so_the_advice_is_loader_conf():
    _header, body = sample("sysctl-readonly-tunable-1")  # source: github.com/bsdci/libioc/issues/361
    assert "read only tunable" in body and "/boot/loader.conf" in body
    assert "/boot/loader.conf" in L.HOW_TO_ENABLE and "reboot" in L.HOW_TO_ENABLE


# --- usage -------------------------------------------------------------------------------------
def test_usage_parses_the_recorded_racct_string():
    header, body = sample("rctl-racct-1")  # source: alligatormon/alligator src/system/freebsd.c (jail_calc)
    usage = L.parse_usage(body)
    assert usage["memoryuse"] == 25550848 and usage["maxproc"] == 5 and usage["openfiles"] == 1280
    assert usage["pcpu"] == 0 and len(usage) == 25


def test_usage_source_derived_one_per_line_form():
    _header, body = sample("rctl-racct-1")
    lines = "\n".join(body.strip().split(",")) + "\n"  # what rctl -u prints (rctl.c show_usage)
    assert L.parse_usage(lines) == L.parse_usage(body)


# --- metadata service address per network mode ---------------------------------------------------
DEFAULT = {"name": "default", "subnet": "172.23.0.0/16", "gateway": "172.23.0.1", "bridge": "jp-default",
           "address": "172.23.0.2"}
BACKEND = {"name": "backend", "subnet": "10.88.0.0/24", "gateway": "10.88.0.1", "bridge": "jp-backend",
           "address": "10.88.0.7", "subnet6": "fd00:88::/64", "gateway6": "fd00:88::1", "address6": "fd00:88::7"}


def test_shared_ip_listens_on_the_gateway_of_each_network_s_cloned_loopback():
    assert L.metadata_addresses([DEFAULT, BACKEND], "shared") == [("jp-default", "172.23.0.1"),
                                                                  ("jp-backend", "10.88.0.1")]


def test_vnet_listens_on_the_bridge_address():
    assert L.metadata_addresses([BACKEND], "vnet") == [("jp-backend", "10.88.0.1")]


def test_operator_interface_is_used_when_the_network_names_one():
    assert L.metadata_addresses([dict(DEFAULT, interface="lo1")], "shared") == [("lo1", "172.23.0.1")]


def test_no_network_no_service_and_host_mode_uses_loopback():
    assert L.metadata_addresses([], "none") == []
    assert L.metadata_addresses([], "host") == [("lo0", "127.0.0.1")]


def test_a_network_without_gateway_is_a_clear_error():
    entry = {k: v for k, v in DEFAULT.items() if k != "gateway"}
    with pytest.raises(InvalidInput, match="no gateway"):
        L.metadata_addresses([entry], "shared")
    with pytest.raises(InvalidInput, match="mode"):
        L.metadata_addresses([DEFAULT], "bridge")


def test_metadata_clients_are_the_pod_s_own_addresses():
    assert L.metadata_clients([DEFAULT, BACKEND]) == ["172.23.0.2", "10.88.0.7", "fd00:88::7"]


def test_engine_enforces_the_four_friendly_limits_and_nothing_linux_specific():
    assert L.ENFORCES == isolators.ENGINE_ENFORCES["freebsd"]
