"""Runs each molecule scenario of extensions/molecule/ in full: `molecule test -s <scenario>`.

Each scenario runs on this machine (molecule's default driver, connection local) against a
scratch file-backed pool of its own: destroy, syntax, create, (prepare), check mode on the bare
host, converge, idempotence, check mode again, verify with pytest-testinfra, destroy.
"""
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ansible, pytest.mark.integration]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = sorted(name for name in os.listdir(os.path.join(ROOT, "extensions", "molecule"))
                   if os.path.isfile(os.path.join(ROOT, "extensions", "molecule", name, "molecule.yml")))


COVERED_BY = {"postgresql": "webapp", "redis": "webapp", "nginx": "webapp"}  # roles the webapp stack runs


def test_every_role_has_a_scenario():
    roles = sorted(os.listdir(os.path.join(ROOT, "roles")))
    uncovered = [role for role in roles if role not in SCENARIOS and COVERED_BY.get(role) not in SCENARIOS]
    assert roles and not uncovered, "roles without a molecule scenario: %s" % uncovered


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    if os.geteuid() != 0 or not shutil.which("zpool"):
        if os.environ.get("CI"):
            pytest.fail("CI must run the molecule scenarios: they need root and zpool(8)")
        pytest.skip("molecule scenarios need root and zpool(8)")
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PY_COLORS="0")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # molecule.yml names this checkout's
    proc = subprocess.run([os.path.join(bin_dir, "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=1800)
    assert proc.returncode == 0, "molecule test -s %s failed:\n%s\n%s" % (
        scenario, proc.stdout[-12000:], proc.stderr[-6000:])
