"""Network namespaces standing for a host, its pods and another machine, for the network tests.

`entered_lab()` makes a fresh network namespace and moves the calling thread into it for the
duration: it stands for the host. Bridges, the nftables table and the forwarding sysctls that the
code under test makes land there (and every process started meanwhile, a zygote and so the pods'
supervisors included, inherits it), so the machine's own interfaces, ruleset and sysctls are never
touched. Leaving deletes every namespace the lab made.

- `lab.pod()`: an `unshare --net sleep` process (the pod holder's role) with its own namespace;
- `lab.other()`: a namespace linked to the host by a veth pair, standing for another machine:
  host side HOST_LINK (HOST_LINK6), other side OTHER (OTHER6);
- `lab.server(where, port, name)`: a TCP server answering "<client address> <name>";
- `lab.connect(where, address, port)`: its answer, or "error <exception>".

Addresses used, only inside those namespaces: 10.232.1.0/24 and fd31:232:1::/64 for the link to
the other machine. Connections use timeouts so that nothing hangs; no assertion is about speed.
"""
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines.linux import CLONE_NEWNET, setns

HOST_LINK, OTHER = "10.232.1.1", "10.232.1.2"          # host and other machine on their link
HOST_LINK6, OTHER6 = "fd31:232:1::1", "fd31:232:1::2"
TIMEOUT = 5.0       # a connection that must work
DROPPED = 1.5       # a connection that must not (dropped packets: it times out)
TOOLS = ("ip", "nft", "nsenter", "unshare")

SERVER = r"""
import socket, sys
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if ":" in host:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind((host, port))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    with c:
        c.sendall(("%s %s\n" % (peer[0].replace("::ffff:", ""), name)).encode())
"""

CLIENT = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        print(s.makefile().readline().strip())
except OSError as e:
    print("error " + type(e).__name__)
"""

HTTP_GET = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:
        sys.stdout.write(response.read().decode())
except OSError as e:
    sys.stdout.write("error " + type(getattr(e, "reason", e)).__name__)
"""


def need(condition, reason):
    """Skip on a developer's machine that cannot run these; in CI it is a failure, not a skip."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Linux network tests: " + reason)
        pytest.skip(reason)


def sh(*argv, input=None, check=True):
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, check=check)


def netns_names():
    return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()}


def link_names():
    return [link["ifname"] for link in json.loads(sh("ip", "-j", "link").stdout)]


def nft_tables():
    return sh("nft", "list", "tables").stdout.strip()


class Lab:
    """The namespaces, processes and servers of one test; close() removes all of them."""

    def __init__(self, host_name):
        self.host_name = host_name
        self.names = [host_name]       # `ip netns add` names, deleted at the end
        self.procs = []                # pods and servers, killed at the end

    # --- pods ----------------------------------------------------------------------------
    def pod(self):
        """A process in a new network namespace with lo up, as the pod holder is."""
        proc = subprocess.Popen(["unshare", "--net", "--", "sleep", "600"])
        self.procs.append(proc)
        ours = os.readlink("/proc/thread-self/ns/net")
        for _attempt in range(5000):
            if os.readlink("/proc/%d/ns/net" % proc.pid) != ours:
                break
            time.sleep(0.001)
        else:
            pytest.fail("unshare --net did not give the pod its own network namespace")
        sh(*self.inside(proc.pid, ["ip", "link", "set", "lo", "up"]))
        return proc.pid

    def stop(self, pid):
        proc = next(p for p in self.procs if p.pid == pid)
        proc.kill()
        proc.wait()

    # --- the other machine ---------------------------------------------------------------
    def other(self):
        """A namespace linked to the host by a veth: host side 10.232.1.1, other side 10.232.1.2."""
        name = "jpt-o" + secrets.token_hex(4)
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "link", "add", "name", "jpt-link", "type", "veth", "peer", "name", "eth0", "netns", name)
        for argv in (["addr", "add", HOST_LINK + "/24", "dev", "jpt-link"],
                     ["addr", "add", HOST_LINK6 + "/64", "dev", "jpt-link", "nodad"],
                     ["link", "set", "jpt-link", "up"]):
            sh("ip", *argv)
        path = "/run/netns/" + name
        for argv in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", OTHER + "/24", "dev", "eth0"],
                     ["ip", "addr", "add", OTHER6 + "/64", "dev", "eth0", "nodad"],
                     ["ip", "link", "set", "eth0", "up"]):
            sh(*self.inside(path, argv))
        return path

    # --- running things ------------------------------------------------------------------
    @staticmethod
    def inside(where, argv):
        """argv run in a pod (a pid), a named namespace (a path), or the host (None)."""
        if where is None:
            return list(argv)
        path = "/proc/%d/ns/net" % where if isinstance(where, int) else where
        return ["nsenter", "--net=" + path, "--"] + list(argv)

    def server(self, where, port, name, host="::"):
        """A TCP server answering "<client address> <name>"; returns once it listens."""
        proc = subprocess.Popen(self.inside(where, [sys.executable, "-c", SERVER, host, str(port), name]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline().strip()
        assert line == "ready", "server %s did not start: %s" % (name, proc.stderr.read() if not line else line)

    def connect(self, where, address, port, timeout=TIMEOUT):
        """The server's answer ("<client address> <name>") or "error <exception>", from `where`."""
        argv = self.inside(where, [sys.executable, "-c", CLIENT, address, str(port), str(timeout)])
        return sh(*argv).stdout.strip()

    def http_get(self, where, url, timeout=TIMEOUT):
        """The body at url, or "error <exception>", fetched from `where`."""
        return sh(*self.inside(where, [sys.executable, "-c", HTTP_GET, url, str(timeout)])).stdout

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@contextlib.contextmanager
def entered_lab():
    """A Lab whose host namespace this thread is in until the block ends; every namespace it made
    is deleted afterwards (and checked gone)."""
    need(os.geteuid() == 0, "needs root")
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    need(not missing, "needs %s" % ", ".join(missing))
    name = "jpt-h" + secrets.token_hex(4)
    sh("ip", "netns", "add", name)
    ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    lab = Lab(name)
    try:
        host = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(host, CLONE_NEWNET)
        finally:
            os.close(host)
        try:
            sh("ip", "link", "set", "lo", "up")
            yield lab
        finally:
            lab.close()
            setns(ours, CLONE_NEWNET)
    finally:
        os.close(ours)
        for ns in lab.names:
            sh("ip", "netns", "del", ns, check=False)
    left = netns_names() & set(lab.names)
    assert not left, "test namespaces left behind: %s" % left
