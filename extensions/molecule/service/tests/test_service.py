"""Verify the service role (testinfra, run by `molecule verify -s service` on this machine).

The tests run in file order: each replacement starts from the state the one before left.
"""
import json
import os

from tests.molecule.scenario import jetpack, pods, run_playbook

CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converge.yml")


def revision(v, pod):
    annotations = json.loads(jetpack(v, "show", pod).stdout)["annotations"]
    return json.loads(annotations["jetpack.runtime/spec"])["apps"][0]["environment"]["REVISION"]


def scenario_vars(host):
    return host.ansible.get_variables()


def only_pod(v):
    found = pods(v)
    assert len(found) == 1, found
    (name, state), = found.items()
    assert state == "running"
    return name


def fetch(v, pod, path):
    return jetpack(v, "exec", pod, "--", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/" + path).stdout


def test_one_generation_runs_and_answers_from_its_volume(host):
    v = scenario_vars(host)
    pod = only_pod(v)
    assert pod.startswith("web-") and len(pod) == len("web-") + 10
    assert fetch(v, pod, "") == "hello from the web-content volume\n"


def test_pod_is_marked_for_the_boot_service(host):
    v = scenario_vars(host)
    annotations = json.loads(jetpack(v, "show", only_pod(v)).stdout)["annotations"]
    assert annotations["jetpack.runtime/boot"] == "true"
    assert annotations["jetpack.runtime/service"] == "web"
    assert annotations["jetpack.runtime/after"] == "db"
    spec = json.loads(annotations["jetpack.runtime/spec"])
    assert spec["apps"][0]["name"] == "httpd" and spec["apps"][0]["image"].startswith("sha512-")


def test_data_written_survives_a_rolling_replace(host):
    v = scenario_vars(host)
    old = only_pod(v)
    jetpack(v, "exec", "--root", old, "--", "sh", "-c", "echo written by generation one > /var/www/data.txt")
    next_revision = str(int(revision(v, old)) + 1)
    run_playbook(CONVERGE, {"web_revision": next_revision}, check=True)
    new = only_pod(v)
    assert new != old
    assert fetch(v, new, "data.txt") == "written by generation one\n"
    assert jetpack(v, "exec", new, "--", "sh", "-c", "echo $REVISION").stdout == next_revision + "\n"


def test_unhealthy_generation_is_removed_and_the_old_one_kept(host):
    v = scenario_vars(host)
    old = only_pod(v)
    proc = run_playbook(CONVERGE, {"web_revision": "broken", "web_health_command": ["false"]})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "did not become healthy" in output
    assert "==> httpd <==" in output
    assert "%s keep running" % old in output
    assert only_pod(v) == old
    assert fetch(v, old, "data.txt") == "written by generation one\n"
