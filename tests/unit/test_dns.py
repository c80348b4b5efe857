"""dns.py: the messages it parses and builds (RFC 1035 section 4), and real responders on loopback
sockets (UDP and TCP) answering pod names and forwarding the rest to a real upstream responder."""
import socket
import struct

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import dns

PODS = {"server": ["10.233.0.2", "fd33::2"], "v4only": ["10.233.0.3"]}


def query(name, qtype=dns.A, ident=0x1234, flags=0x0100, qdcount=1):
    """A standard query (RD set) as a stub resolver sends it."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".") if part) + b"\0"
    return struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, 0) + labels + struct.pack("!HH", qtype, dns.CLASS_IN)


def decode(answer):
    """(id, rcode, flags, [rdata as text]) of an answer to a query() (names compressed to 0xC00C)."""
    ident, flags, _qdcount, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", answer)
    offset = dns.parse_question(answer)[5]
    found = []
    for _record in range(ancount):
        pointer, rtype, rclass, ttl, length = struct.unpack_from("!HHHIH", answer, offset)
        assert (pointer, rclass, ttl) == (0xC00C, dns.CLASS_IN, dns.TTL)
        data = answer[offset + 12:offset + 12 + length]
        found.append(socket.inet_ntop(socket.AF_INET if rtype == dns.A else socket.AF_INET6, data))
        offset += 12 + length
    return ident, flags & 0xF, flags, found


def lookup(name):
    return PODS.get(name)


def test_a_pod_name_gets_its_addresses_of_the_asked_type():
    ident, rcode, _flags, found = decode(dns.local_answer(query("server"), lookup))
    assert (ident, rcode, found) == (0x1234, dns.NOERROR, ["10.233.0.2"])
    assert decode(dns.local_answer(query("Server.", dns.AAAA), lookup))[3] == ["fd33::2"]  # names ignore case
    ident, rcode, flags, found = decode(dns.local_answer(query("v4only", dns.AAAA), lookup))
    assert (rcode, found) == (dns.NOERROR, [])          # NODATA: the name exists, no address of that type
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x0100  # a response, authoritative, RD echoed


def test_other_names_and_types_are_not_ours():
    assert dns.local_answer(query("example.org"), lookup) is None
    mx = dns.local_answer(query("server", 15), lookup)
    assert decode(mx)[1:4:2] == (dns.NOERROR, [])


@pytest.mark.parametrize("message, rcode", [
    (query("server", qdcount=2), dns.FORMERR),
    (query("server")[:-3], dns.FORMERR),
    (query("server", flags=0x2100), dns.NOTIMP),       # opcode 4 (NOTIFY)
])
def test_malformed_or_unsupported_queries_are_answered_not_forwarded(message, rcode):
    answer = dns.local_answer(message, lookup)
    assert answer is not None and struct.unpack_from("!H", answer, 2)[0] & 0xF == rcode


def test_a_response_is_never_answered():
    assert dns.local_answer(query("server", flags=0x8100), lookup) == b""
    assert dns.local_answer(b"\x01", lookup) == b""     # not even an id: silence


def test_host_resolvers_keeps_loopback_ones_the_host_can_reach(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# systemd-resolved\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n"
                    "search example.com\noptions edns0\n")
    assert dns.host_resolvers(str(path)) == ["127.0.0.53", "fe80::1"]
    assert dns.host_resolvers(str(tmp_path / "missing")) == []


@pytest.fixture
def responders():
    """An upstream responder (knows "upstream.example") and ours forwarding to it, on 127.0.0.1."""
    upstream = dns.Responder("127.0.0.1", lambda name: ["192.0.2.7"] if name == "upstream.example" else None,
                             lambda: [], port=0)
    upstream.start()
    ours = dns.Responder("127.0.0.1", lookup, lambda: [("127.0.0.1", upstream.port)], port=0)
    ours.start()
    yield ours, upstream
    ours.stop()
    upstream.stop()


def ask_udp(port, message):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(message, ("127.0.0.1", port))
        return s.recv(4096)


def ask_tcp(port, *messages):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        answers = []
        for message in messages:               # several queries on one connection
            s.sendall(struct.pack("!H", len(message)) + message)
            answers.append(dns._read_tcp_message(s))
        return answers


def test_udp_and_tcp_answer_pods_and_forward_the_rest(responders):
    ours, _upstream = responders
    assert decode(ask_udp(ours.port, query("server")))[3] == ["10.233.0.2"]
    assert decode(ask_udp(ours.port, query("upstream.example", ident=7)))[::3] == (7, ["192.0.2.7"])
    answers = ask_tcp(ours.port, query("server", dns.AAAA), query("upstream.example"))
    assert [decode(a)[3] for a in answers] == [["fd33::2"], ["192.0.2.7"]]


def test_no_upstream_answering_is_servfail(responders):
    ours, upstream = responders
    upstream.stop()
    for answer in (ask_udp(ours.port, query("nowhere.example")), ask_tcp(ours.port, query("nowhere.example"))[0]):
        assert decode(answer)[1] == dns.SERVFAIL


def test_the_zone_of_each_network_comes_from_the_pod_records():
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network
    records = [{"name": "web", "networks": [{"name": "a", "address": "10.0.0.2", "address6": "fd00::2"},
                                            {"name": "b", "address": "10.1.0.2"}]},
               {"name": "db", "networks": [{"name": "a", "address": "10.0.0.3"}]},
               {"name": "hostnet", "networks": [{"name": "host"}]}]
    assert network.pod_names(records) == {"a": {"web": ["10.0.0.2", "fd00::2"], "db": ["10.0.0.3"]},
                                          "b": {"web": ["10.1.0.2"]}}


def test_a_networked_pods_resolv_conf_names_its_gateway_unless_the_task_says_otherwise(tmp_path):
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\n")
    assert network.resolv_conf(None, str(host), gateway="10.0.0.1") == "nameserver 10.0.0.1\n"
    assert network.resolv_conf({"search": ["example.com"]}, str(host), gateway="10.0.0.1") == \
        "nameserver 10.0.0.1\nsearch example.com\n"
    assert network.resolv_conf({"nameservers": ["9.9.9.9"]}, str(host), gateway="10.0.0.1") == "nameserver 9.9.9.9\n"
    assert network.resolv_conf(None, str(host)) == "nameserver 127.0.0.53\n"     # the host's network: its own
