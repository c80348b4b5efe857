"""Start a host daemon of the runtime (the zygote, hostd) detached from the caller."""
from __future__ import annotations

import os

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def spawn_detached(argv: list, core_dir: str, stdout: int, stderr: int) -> int:
    """Run argv in a session of its own, not as our child (an intermediate child starts it and
    exits), with an environment of PATH, PYTHONPATH=core_dir and LC_ALL only; stdin is /dev/null.
    Returns the intermediate child's wait status: 0 when the daemon was started."""
    env = {"PATH": CLEAN_PATH, "PYTHONPATH": core_dir, "LC_ALL": "C.UTF-8"}
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import subprocess
            subprocess.Popen(argv, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                             close_fds=True, start_new_session=True)
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]
