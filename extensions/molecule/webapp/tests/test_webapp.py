"""Verify the webapp stack (testinfra, run by `molecule verify -s webapp` on this machine).

The tests run in file order: each replacement starts from the state the one before left.
"""
import json
import os
import socket
import threading
import urllib.parse
import urllib.request

from tests.molecule.scenario import pod_dirs, pods, run_playbook

CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converge.yml")
SERVICES = ["app-1", "app-2", "nginx", "postgresql", "redis"]


def scenario_vars(host):
    return host.ansible.get_variables()


def records(v) -> dict:
    """{service: pod record} of the running pods (pod.json of each pod directory)."""
    running = {name for name, state in pods(v).items() if state == "running"}
    found = {}
    for pod_dir in pod_dirs(v):
        path = os.path.join(pod_dir, "pod.json")
        if os.path.isfile(path):
            with open(path) as f:
                record = json.load(f)
            if record["name"] in running:
                found.setdefault(record["annotations"]["jetpack.runtime/service"], []).append(record)
    return found


def one_pod_per_service(v) -> dict:
    found = records(v)
    assert sorted(found) == SERVICES, found
    assert all(len(generations) == 1 for generations in found.values()), found
    return {service: generations[0] for service, generations in found.items()}


def address(record) -> str:
    return record["networks"][0]["address"]


def get(url, data=None) -> bytes:
    body = urllib.parse.urlencode(data).encode() if data else None
    with urllib.request.urlopen(url, data=body, timeout=10) as answer:
        assert answer.status == 200
        return answer.read()


def api(v) -> dict:
    return json.loads(get("http://127.0.0.1:%d/api" % v["scratch_port"]))


def converge(extra_vars):
    run_playbook(CONVERGE, extra_vars, check=True)


def test_every_service_listens_on_its_pod_address(host):
    v = scenario_vars(host)
    stack = one_pod_per_service(v)
    for service, port in (("postgresql", 5432), ("redis", 6379), ("app-1", 8000), ("app-2", 8000), ("nginx", 80)):
        assert address(stack[service]).startswith("10.213.7.")
        with socket.create_connection((address(stack[service]), port), timeout=10):
            pass
    redis = socket.create_connection((address(stack["redis"]), 6379), timeout=10)
    with redis:
        redis.sendall(b"PING\r\n")
        assert redis.recv(64) == b"+PONG\r\n"


def test_the_page_answers_through_nginx_on_the_host_port(host):
    v = scenario_vars(host)
    page = get("http://127.0.0.1:%d/" % v["scratch_port"]).decode()
    assert "<h1>Notes</h1>" in page and "version 1" in page
    assert get("http://127.0.0.1:%d/nginx-health" % v["scratch_port"]) == b"ok\n"


def test_a_second_replica_serves_requests(host):
    v = scenario_vars(host)
    stack = one_pod_per_service(v)
    direct = json.loads(get("http://%s:8000/api" % address(stack["app-2"])))
    assert direct["replica"] == "app-2"
    served = {api(v)["replica"] for _request in range(40)}
    assert served == {"app-1", "app-2"}


def test_notes_and_visits_survive_replacing_every_pod(host):
    v = scenario_vars(host)
    before = one_pod_per_service(v)
    get("http://127.0.0.1:%d/" % v["scratch_port"], {"note": "written before the replacement <b>"})
    visits = api(v)["visits"]
    converge({"webapp_annotations": {"molecule.jetpack.dev/round": "2"}})
    after = one_pod_per_service(v)
    assert all(after[s]["name"] != before[s]["name"] for s in SERVICES), (before, after)
    answer = api(v)
    assert "written before the replacement <b>" in answer["notes"]
    assert answer["visits"] > visits
    assert "written before the replacement &lt;b&gt;" in get("http://127.0.0.1:%d/" % v["scratch_port"]).decode()


def test_a_new_version_replaces_the_replicas_with_no_failed_request(host):
    v = scenario_vars(host)
    before = one_pod_per_service(v)
    stop, answers, failures = threading.Event(), [], []

    def keep_asking():
        while not stop.is_set():
            try:
                answers.append(api(v))
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                failures.append(repr(e))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        converge({"webapp_app_version": "2", "webapp_annotations": {"molecule.jetpack.dev/round": "2"}})
        seen = len(answers)
        while len(answers) < seen + 40 and not failures:
            stop.wait(0.05)
    finally:
        stop.set()
        asker.join()
    after = one_pod_per_service(v)
    assert failures == []
    assert {a["version"] for a in answers[:5]} == {"1"}
    assert {a["replica"] for a in answers[-40:] if a["version"] == "2"} == {"app-1", "app-2"}
    assert [s for s in SERVICES if after[s]["name"] != before[s]["name"]] == ["app-1", "app-2"]
