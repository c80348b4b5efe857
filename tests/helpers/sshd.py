"""A real sshd on loopback for one test: its own host key, one client key for root, its own log."""
from __future__ import annotations

import os
import socket
import subprocess
import time

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class Sshd:
    """`with Sshd(directory) as sshd:` listens on 127.0.0.1:sshd.port until the block ends."""

    def __init__(self, directory):
        self.directory = directory
        self.port = _free_port()
        self.client_key = str(directory / "client_key")
        self.known_hosts = str(directory / "known_hosts")
        self.log = directory / "sshd.log"
        self.process = None

    def __enter__(self):
        self.directory.mkdir(mode=0o700)
        _keygen(self.directory / "host_key")
        _keygen(self.directory / "client_key")
        (self.directory / "authorized_keys").write_text((self.directory / "client_key.pub").read_text())
        host_key = (self.directory / "host_key.pub").read_text().split()
        (self.directory / "known_hosts").write_text("[127.0.0.1]:%d %s %s\n" % (self.port, host_key[0], host_key[1]))
        config = self.directory / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1", "Port %d" % self.port, "HostKey %s" % (self.directory / "host_key"),
            "AuthorizedKeysFile %s" % (self.directory / "authorized_keys"), "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PidFile %s" % (self.directory / "sshd.pid"), "LogLevel VERBOSE", ""]))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(self.log)])
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        for _attempt in range(100):
            if self.process.poll() is not None:
                raise RuntimeError("sshd exited: %s" % self.log.read_text())
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("sshd does not listen on port %d" % self.port)

    def connections(self) -> int:
        """How many logins sshd accepted with the client key."""
        return self.log.read_text().count("Accepted publickey for root")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=30)
