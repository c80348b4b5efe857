"""A small DNS responder for a pod network: pod names answered here, every other question forwarded.

It listens on a network's host side (its gateway), UDP and TCP port 53, and answers A and AAAA
questions for the names of the pods on that network (a name with no address of that type gets an
empty NOERROR answer, as RFC 2308 calls NODATA). Any other question, including every name that is
not a pod's, is relayed unchanged to the host's resolvers, and their answer relayed back: the host
reaches resolvers a pod cannot (a loopback resolver such as systemd-resolved's 127.0.0.53).

Only what RFC 1035 needs for that is parsed: the header and the one question. A message that is
not a standard query with exactly one question is answered FORMERR or NOTIMP, never forwarded.
"""
from __future__ import annotations

import ipaddress
import socket
import socketserver
import struct

from .serving import ServerThreads

PORT = 53
TTL = 5                    # seconds: pods come and go, resolvers must ask again soon
UPSTREAM_TIMEOUT = 2.0
TCP_IDLE_TIMEOUT = 10.0
MAX_UDP = 4096             # what we read; RFC 1035 replies over UDP without EDNS stop at 512
A, AAAA = 1, 28
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NOTIMP = 0, 1, 2, 4
_HEADER = struct.Struct("!HHHHHH")


class Malformed(ValueError):
    pass


# --- messages (pure) -------------------------------------------------------------------------
def parse_question(message: bytes):
    """(id, flags, name in lower case without the final dot, qtype, qclass, end of the question)."""
    if len(message) < _HEADER.size:
        raise Malformed("shorter than a DNS header")
    ident, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(message)
    if qdcount != 1:
        raise Malformed("not exactly one question")
    labels, offset = [], _HEADER.size
    while True:
        if offset >= len(message):
            raise Malformed("question name runs past the message")
        length = message[offset]
        offset += 1
        if length == 0:
            break
        if length > 63:  # a compression pointer has no place in the only question
            raise Malformed("bad label length")
        labels.append(message[offset:offset + length])
        offset += length
    if offset + 4 > len(message):
        raise Malformed("question type and class missing")
    qtype, qclass = struct.unpack_from("!HH", message, offset)
    name = b".".join(labels).decode("ascii", "replace").lower()
    return ident, flags, name, qtype, qclass, offset + 4


def reply(query: bytes, rcode: int, addresses=()) -> bytes:
    """The answer to a parsed-valid query: its question echoed, one record per address."""
    ident, flags, _name, qtype, _qclass, end = parse_question(query)
    flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode   # QR, opcode+RD kept, AA, RA
    records = b""
    for address in addresses:
        data = ipaddress.ip_address(address).packed
        records += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, TTL, len(data)) + data
    return _HEADER.pack(ident, flags, 1, len(addresses), 0, 0) + query[_HEADER.size:end] + records


def error_reply(query: bytes, rcode: int) -> bytes:
    """A header-only answer for a query that could not be parsed (b"" when not even the id can)."""
    if len(query) < 2:
        return b""
    ident = struct.unpack_from("!H", query)[0]
    flags = struct.unpack_from("!H", query, 2)[0] if len(query) >= 4 else 0
    return _HEADER.pack(ident, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def local_answer(query: bytes, lookup):
    """Our answer to query, or None when it is not ours to answer (forward it).

    lookup(name) -> [address, ...] for a pod name, None for any other name.
    """
    try:
        _ident, flags, name, qtype, qclass, _end = parse_question(query)
    except Malformed:
        return error_reply(query, FORMERR)
    if flags & 0x8000:
        return b""  # a response sent to us: never answered (no reflection loops)
    if (flags >> 11) & 0xF != 0:
        return error_reply(query, NOTIMP)
    addresses = lookup(name) if qclass == CLASS_IN else None
    if addresses is None:
        return None
    version = {A: 4, AAAA: 6}.get(qtype)
    return reply(query, NOERROR, [a for a in addresses if ipaddress.ip_address(a).version == version])


def host_resolvers(path: str = "/etc/resolv.conf") -> list:
    """The nameserver addresses of a resolv.conf, in order (loopback ones included: we ask from the host)."""
    found = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(words[1].split("%", 1)[0])))
            except ValueError:
                continue
    return found


# --- forwarding ------------------------------------------------------------------------------
def forward_udp(query: bytes, upstreams) -> bytes:
    """The first answer an upstream (address, port) gives to query over UDP; SERVFAIL when none does."""
    ident = query[:2]
    for address, port in upstreams:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(UPSTREAM_TIMEOUT)
            try:
                s.connect((address, port))
                s.send(query)
                while True:
                    answer = s.recv(MAX_UDP)
                    if answer[:2] == ident:
                        return answer
            except OSError:
                continue
    return reply(query, SERVFAIL)  # only parsed queries are forwarded: the question is echoed


def forward_tcp(query: bytes, upstreams) -> bytes:
    """As forward_udp, over TCP (for a client that asked over TCP, e.g. after a truncated answer)."""
    for address, port in upstreams:
        try:
            with socket.create_connection((address, port), timeout=UPSTREAM_TIMEOUT) as s:
                s.sendall(struct.pack("!H", len(query)) + query)
                return _read_tcp_message(s)
        except (OSError, Malformed):
            continue
    return reply(query, SERVFAIL)


def _read_exactly(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise Malformed("connection closed mid-message")
        data += chunk
    return data


def _read_tcp_message(sock) -> bytes:
    return _read_exactly(sock, struct.unpack("!H", _read_exactly(sock, 2))[0])


# --- servers ---------------------------------------------------------------------------------
class _Udp(socketserver.BaseRequestHandler):
    def handle(self):
        query, sock = self.request
        answer = self.server.responder.answer(query, forward_udp)
        if answer:
            sock.sendto(answer, self.client_address)


class _Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(TCP_IDLE_TIMEOUT)
        try:
            while True:
                query = _read_tcp_message(self.request)
                answer = self.server.responder.answer(query, forward_tcp)
                if not answer:
                    return
                self.request.sendall(struct.pack("!H", len(answer)) + answer)
        except (OSError, Malformed):
            return


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True
    max_packet_size = MAX_UDP


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Responder:
    """The UDP and TCP servers for one address: lookup(name) answers pod names, upstreams the rest.

    upstreams: a callable returning [(address, port)], asked per forwarded question, so a change of
    the host's resolv.conf is followed without a restart.
    """

    def __init__(self, address: str, lookup, upstreams, port: int = PORT):
        self.address, self.lookup, self.upstreams, self.port = address, lookup, upstreams, port
        self._serving = ServerThreads("dns")

    def answer(self, query: bytes, forward) -> bytes:
        try:
            mine = local_answer(query, self.lookup)
        except Exception:  # noqa: BLE001 - a broken pod record must not take the responder down
            return error_reply(query, SERVFAIL)
        if mine is not None:
            return mine
        return forward(query, self.upstreams())

    def start(self) -> int:
        """Bind UDP and TCP on the address (the same port for both; chosen by the kernel when 0)."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        try:
            for cls, handler in ((_UdpServer, _Udp), (_TcpServer, _Tcp)):
                bound = type(cls.__name__, (cls,), {"address_family": family})
                server = self._serving.add(bound((self.address, self.port), handler, bind_and_activate=False))
                server.responder = self
                server.server_bind()
                self.port = server.server_address[1]
                if cls is _TcpServer:
                    server.server_activate()
        except OSError:
            self.stop()
            raise
        self._serving.serve()
        return self.port

    def stop(self) -> None:
        self._serving.stop()
