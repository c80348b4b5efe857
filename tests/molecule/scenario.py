"""Helpers for the testinfra tests of the molecule scenarios (extensions/molecule/*/tests/)."""
from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import subprocess
import time


def jetpack(variables, *args, check=True):
    """Run the scenario's jetpack command on its scratch store; the CompletedProcess."""
    argv = [os.path.join(variables["scratch"], "lib", "bin", "jetpack"),
            "--store-root", variables["scratch_store_root"],
            "--store-mountpoint", variables["scratch_store_mountpoint"], *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)


def pods(variables) -> dict:
    """{pod name: state} of the scratch store, as `jetpack list` shows them."""
    lines = jetpack(variables, "list").stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[1] for line in lines if line.strip()}


def pod_dirs(variables) -> list:
    root = os.path.join(variables["scratch_store_mountpoint"], "pods")
    return [os.path.join(root, key) for key in sorted(os.listdir(root))] if os.path.isdir(root) else []


def kill_everything(variables) -> list:
    """What a reboot does to pods: SIGKILL every supervisor, holder and the store's zygote."""
    pids = []
    for pod_dir in pod_dirs(variables):
        for name in ("supervisor.pid",):
            pids += _read_pid(os.path.join(pod_dir, "run", name))
        try:
            with open(os.path.join(pod_dir, "run", "context.json")) as f:
                pids.append(json.load(f)["holder_pid"])
        except (OSError, ValueError, KeyError):
            pass
    pids += _zygote_pid(variables["scratch_store_root"])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        _wait_gone(pid)
    return pids


def _read_pid(path) -> list:
    try:
        with open(path) as f:
            return [int(f.read().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


def _zygote_pid(store_root) -> list:
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import zygote
    answer = zygote.ping(zygote.socket_path_for(store_root))
    return [answer["pid"]] if answer else []


def _wait_gone(pid, attempts=200) -> None:
    """Until pid is dead: gone, a zombie, or exiting (PF_EXITING). On this project's VMs init never
    reaps: killed processes stay zombies, and a killed pod holder (PID 1 of its namespace) stays
    exiting for good, waiting for its namespace's zombies to be reaped."""
    for _attempt in range(attempts):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _dead(pid):
            return
        try:  # our own child (not here, but harmless): reap it
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise AssertionError("process %d survived SIGKILL" % pid)


def unit_exec_start(unit_path) -> list:
    """The ExecStart argv of a systemd unit file."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(unit_path)
    return shlex.split(parser["Service"]["ExecStart"])


def run_playbook(playbook, extra_vars, check=False) -> subprocess.CompletedProcess:
    """ansible-playbook on the scenario's inventory, as molecule runs it (its environment is ours)."""
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook, "-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc


PF_EXITING = 0x4  # include/linux/sched.h: the process is being killed


def _dead(pid) -> bool:
    """Gone, a zombie, or exiting, from /proc/<pid>/stat (state is field 3, flags field 9)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & PF_EXITING)
