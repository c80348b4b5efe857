"""Capabilities applied for real (capabilities.apply) in a forked child, checked in /proc/self/status
of the program it execs, and by what the kernel then refuses."""
import os

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import capabilities as C

NOBODY = 65534


@pytest.fixture(autouse=True)
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root: dropping capabilities needs CAP_SETPCAP")


def run_with(plan, argv, uid=None):
    """Fork, apply plan (switching to uid when given), exec argv; (exit status, stdout text)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)

            def switch():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            C.apply(plan, switch if uid is not None else None)
            os.execv(argv[0], argv)
        except BaseException as error:  # noqa: B902 - the test reads it
            os.write(1, ("apply failed: %r" % error).encode())
        finally:
            os._exit(127)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        output = f.read()
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def status_of(plan, uid=None):
    code, output = run_with(plan, ["/bin/cat", "/proc/self/status"], uid)
    assert code == 0, output
    return C.parse_status(output)


def test_remove_set_is_gone_from_the_bounding_and_effective_sets():
    plan = C.compute({"capabilities": {"remove": ["CAP_NET_RAW", "CAP_MKNOD"]}}, uid=0)
    status = status_of(plan)
    expected = C.DEFAULT_SET - {"CAP_NET_RAW", "CAP_MKNOD"}
    assert status["CapBnd"] == expected
    assert status["CapEff"] == status["CapPrm"] == expected
    assert status["CapAmb"] == frozenset() and status["NoNewPrivs"] is False


def test_default_set_alone_without_isolators():
    status = status_of(C.compute({}, uid=0))
    assert status["CapBnd"] == C.DEFAULT_SET and "CAP_SYS_ADMIN" not in status["CapEff"]


def test_a_removed_capability_is_really_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    allowed, _output = run_with(C.compute({}, uid=0), ["/bin/chown", "1", str(target)])
    assert allowed == 0 and os.stat(target).st_uid == 1
    refused, output = run_with(C.compute({"capabilities": {"remove": ["CAP_CHOWN"]}}, uid=0),
                               ["/bin/chown", "2", str(target)])
    assert refused != 0 and "Operation not permitted" in output
    assert os.stat(target).st_uid == 1


def test_non_root_app_keeps_only_its_retained_capability_as_ambient():
    plan = C.compute({"capabilities": {"retain": ["CAP_NET_BIND_SERVICE"]}}, uid=NOBODY)
    status = status_of(plan, uid=NOBODY)
    assert status["CapBnd"] == status["CapAmb"] == status["CapEff"] == {"CAP_NET_BIND_SERVICE"}


def test_non_root_app_without_retain_set_holds_nothing():
    status = status_of(C.compute({}, uid=NOBODY), uid=NOBODY)
    assert status["CapEff"] == status["CapPrm"] == status["CapAmb"] == frozenset()
    assert status["CapBnd"] == C.DEFAULT_SET


def test_no_new_privileges_is_set_for_the_execed_program():
    status = status_of(C.compute({"no_new_privileges": True}, uid=0))
    assert status["NoNewPrivs"] is True


def test_a_retained_capability_works_for_a_non_root_user():
    # Binding port 80 needs CAP_NET_BIND_SERVICE: nobody can with the retain set, not without it.
    script = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound')"
    python = os.path.realpath("/usr/bin/python3")
    with_cap, output = run_with(C.compute({"capabilities": {"retain": ["CAP_NET_BIND_SERVICE"]}}, uid=NOBODY),
                                [python, "-c", script], uid=NOBODY)
    without, denied = run_with(C.compute({}, uid=NOBODY), [python, "-c", script], uid=NOBODY)
    assert (with_cap, output.strip()) == (0, "bound")
    assert without != 0 and "Permission denied" in denied
