"""Verify the host role (testinfra, run by `molecule verify -s host` on this machine)."""
import json
import os
import subprocess

from tests.molecule.scenario import jetpack, kill_everything, pods, unit_exec_start


def scenario_vars(host):
    return host.ansible.get_variables()


def test_host_configuration_names_the_store(host):
    v = scenario_vars(host)
    config = host.file(os.path.join(v["scratch"], "etc", "jetpack.json"))
    assert config.exists and config.mode == 0o644
    assert json.loads(config.content_string) == {"root": v["scratch_store_root"],
                                                 "mountpoint": v["scratch_store_mountpoint"]}


def test_store_root_is_a_mounted_dataset_of_the_file_backed_pool(host):
    v = scenario_vars(host)
    props = host.check_output("zfs get -H -o value mountpoint,jetpack:kind %s", v["scratch_store_root"]).split()
    assert props == [v["scratch_store_mountpoint"], "store"]
    assert host.mount_point(v["scratch_store_mountpoint"]).exists
    vdev = os.path.join(v["scratch"], "pool", v["scratch_pool"] + ".img")
    assert vdev in host.check_output("zpool status %s", v["scratch_pool"]) or host.file(vdev).exists


def test_jetpack_command_is_installed_and_lists_the_pods(host):
    v = scenario_vars(host)
    command = host.file(os.path.join(v["scratch"], "lib", "bin", "jetpack"))
    assert command.is_file and command.mode & 0o111
    assert pods(v) == {"app": "running", "db": "running", "manual": "running"}


def test_boot_unit_is_installed_and_enabled(host):
    v = scenario_vars(host)
    unit_dir = os.path.join(v["scratch"], "systemd")
    unit = host.file(os.path.join(unit_dir, "jetpack-boot.service"))
    assert unit.is_file
    assert "WantedBy=multi-user.target" in unit.content_string
    link = host.file(os.path.join(unit_dir, "multi-user.target.wants", "jetpack-boot.service"))
    assert link.is_symlink and link.linked_to == unit.path
    assert unit_exec_start(unit.path) == [os.path.join(v["scratch"], "lib", "bin", "jetpack-boot")]


def test_boot_service_restarts_marked_pods_in_order_after_a_simulated_reboot(host):
    v = scenario_vars(host)
    killed = kill_everything(v)
    assert len(killed) >= 7  # 3 supervisors, 3 holders, the zygote
    assert pods(v) == {"app": "stopped", "db": "stopped", "manual": "stopped"}
    # systemd is not PID 1 on every test machine: run the unit's ExecStart as systemd would.
    argv = unit_exec_start(os.path.join(v["scratch"], "systemd", "jetpack-boot.service"))
    boot = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert boot.stdout.splitlines() == ["started db", "started app"]
    assert pods(v) == {"app": "running", "db": "running", "manual": "stopped"}
    again = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300)
    assert again.stdout.splitlines() == ["db was running", "app was running"]
    # The converge state again, for the scenario's destroy step.
    jetpack(v, "start", "manual")
