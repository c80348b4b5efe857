"""The host role's FreeBSD files, rendered as the role renders them; they cannot run on this machine.

rc.d script: rc.subr(8) and rcorder(8) headers (shared/reference/freebsd/commands.md, section 12),
shell syntax checked with `sh -n`. devfs rules: devfs.rules(5) section syntax (commands.md, section 7).
"""
import os
import shlex
import subprocess

import jinja2
import pytest

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "roles", "host", "templates")
VARIABLES = {
    "ansible_managed": "Ansible managed", "host_base_dir": "/var/lib/jetpack",
    "host_core_dir": "/var/lib/jetpack/core/0123abcd", "host_use_python": "/usr/local/bin/python3.11",
    "host_use_store_root": "zroot/jetpack", "host_store_mountpoint": "/var/jetpack",
    "host_use_pool_file": "", "host_use_pool": "zroot",
    "host_freebsd_devfs_ruleset_name": "devfsrules_jetpack", "host_freebsd_devfs_ruleset": 4100,
    "host_freebsd_devfs_unhide": ["bpf*"],
}


def render(name, **overrides):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(quote=shlex.quote, dirname=os.path.dirname)
    return env.get_template(name).render(dict(VARIABLES, **overrides))


def sh_syntax(text, tmp_path):
    path = tmp_path / "script"
    path.write_text(text)
    return subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)


def test_rc_d_script_is_valid_sh_with_rcorder_headers(tmp_path):
    script = render("jetpack.rc.j2")
    assert sh_syntax(script, tmp_path).returncode == 0
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "# PROVIDE: jetpack" in lines
    assert "# REQUIRE: LOGIN zfs pf devfs" in lines
    assert "# KEYWORD: nojail" in lines  # rc.subr(8): never run inside a jail
    assert ". /etc/rc.subr" in lines and 'rcvar="jetpack_enable"' in lines
    assert lines.index("load_rc_config $name") < lines.index('run_rc_command "$1"')
    assert "\t/var/lib/jetpack/bin/jetpack-boot" in lines


def test_sh_syntax_check_catches_a_broken_script(tmp_path):
    assert sh_syntax("jetpack_start()\n{\n", tmp_path).returncode != 0


@pytest.mark.parametrize("mountpoint", ["/var/jetpack", "/srv/jet pack"])
def test_boot_starter_quotes_every_value(tmp_path, mountpoint):
    script = render("jetpack-boot.sh.j2", host_store_mountpoint=mountpoint)
    assert sh_syntax(script, tmp_path).returncode == 0
    command = " ".join(line.rstrip("\\").strip() for line in script.splitlines()[3:])
    argv = shlex.split(command)
    assert argv[:5] == ["PYTHONPATH=/var/lib/jetpack/core/0123abcd", "exec", "/usr/local/bin/python3.11", "-m",
                        "jetpack.cli"]
    assert argv[5:] == ["--store-root", "zroot/jetpack", "--store-mountpoint", mountpoint, "boot", "$@"]


def test_devfs_ruleset_includes_the_jail_default_and_the_unhidden_paths():
    lines = [line for line in render("devfs.rules.j2").splitlines() if line and not line.startswith("#")]
    assert lines == ["[devfsrules_jetpack=4100]", "add include $devfsrules_jail", "add path 'bpf*' unhide"]


def test_systemd_unit_imports_a_file_backed_pool_before_starting_pods():
    unit = render("jetpack-boot.service.j2", host_use_pool_file="/var/lib/jetpack/jetpack.zpool",
                  host_use_pool="jetpack")
    assert "ExecStartPre=-zpool import -d /var/lib/jetpack jetpack" in unit.splitlines()
    assert "ExecStartPre" not in render("jetpack-boot.service.j2")
