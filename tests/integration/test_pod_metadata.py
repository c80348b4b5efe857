"""The appc metadata service seen from inside real pods on the Linux engine (ace.md "App Container
Metadata Service"): every endpoint's body and content type, the token and address checks, and
HMAC signing.

Requests are made by busybox wget inside a pod (`wget -S` prints the response headers), started in
the running pod as `jetpack exec` does (execution.spawn). Each test runs in its own network
namespace standing for the host (tests/helpers/netlab.py), where the store's host service listens
on the network's gateway. Addresses: 10.233.0.0/24 (network jpt), only inside those namespaces.
"""
import json
import os
import tempfile
from urllib.parse import quote

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, execution, hostd, images, network, pods
from tests.helpers.images import make_aci, manifest
from tests.helpers.netlab import entered_lab
from tests.integration.conftest import GROUP, PASSWD
from tests.integration.test_pods import busybox_app, run_pod, volume_path, wait_for_file

pytestmark = pytest.mark.integration

IMAGE_ANNOTATIONS = [{"name": "example.com/from", "value": "image"}, {"name": "example.com/kept", "value": "yes"}]


@pytest.fixture
def busybox(store, tmp_path):
    """Busybox with image annotations, so that the merge of annotations shows."""
    files = {"etc/passwd": PASSWD, "etc/group": GROUP, "tmp/.keep": ""}
    path = make_aci(str(tmp_path), manifest("example.com/busybox", {"version": "1", "os": "linux"},
                                            annotations=IMAGE_ANNOTATIONS), files, busybox=True)[0]
    return images.import_image(store, images.ImportRequest(source=path))[0]


@pytest.fixture
def engine():
    return engines.for_host()


@pytest.fixture
def served(store, engine):
    """The test's host namespace; its pods are destroyed and the store's host service has ended
    when the test does, whatever happened."""
    with entered_lab() as lab:
        try:
            yield lab
        finally:
            for pod in pods.list_pods(store):
                pods.destroy(pod, engine)
            hostd.stop(store.root)
    assert hostd.running(store.root) is None


@pytest.fixture
def jpt(store):
    net = network.normalize("jpt", "10.233.0.0/24")
    network.declare(store, net)
    return net


def in_pod(engine, pod, *argv):
    """(exit status, stdout, stderr) of argv run in the pod's first app, as `jetpack exec` runs it."""
    context = pods.read_json(pod.run_file("context.json"))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = execution.spawn(engine, pod.record, context, pod.record["apps"][0], list(argv),
                              stdout=out.fileno(), stderr=err.fileno())
        status = os.waitpid(pid, 0)[1]
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()


def get(engine, pod, url, *extra):
    return in_pod(engine, pod, "/bin/busybox", "wget", "-S", "-O-", *extra, url)


def content_type(headers):
    return [line.split(":", 1)[1].strip() for line in headers.splitlines() if line.strip().startswith("Content-Type:")]


def meta_pod(store, engine, name="meta"):
    return run_pod(store, engine, {
        "name": name, "networks": ["jpt"], "annotations": {"example.com/pod": name},
        "apps": [busybox_app("a", "exec sleep 600", annotations={"example.com/from": "pod"})]})


def test_every_endpoint_answers_from_inside_the_pod(store, engine, busybox, served, jpt):
    pod = meta_pod(store, engine)
    base = pod.record["metadata_url"] + "/acMetadata/v1/"
    assert base.startswith("http://10.233.0.1:18112/")
    with open(os.path.join(pod.record["pod_dir"], "manifest")) as f:
        pod_manifest = f.read()
    with open(store.path("images", busybox.key, "manifest")) as f:
        image_manifest = f.read()
    json_type, text_type = "application/json", "text/plain; charset=us-ascii"
    expected = {
        "pod/annotations": (json.dumps([{"name": "example.com/pod", "value": "meta"}]), json_type),
        "pod/manifest": (pod_manifest, json_type),
        "pod/uuid": (pod.uuid, text_type),
        "apps/a/annotations": (json.dumps([{"name": "example.com/from", "value": "pod"},
                                           {"name": "example.com/kept", "value": "yes"}]), json_type),
        "apps/a/image/manifest": (image_manifest, json_type),
        "apps/a/image/id": (busybox.id, text_type),
    }
    for path, (body, kind) in expected.items():
        status, out, headers = get(engine, pod, base + path)
        assert (path, status, out, content_type(headers)) == (path, 0, body, [kind])
    status, _out, headers = get(engine, pod, base + "apps/nosuch/image/id")
    assert status != 0 and "404" in headers


def test_apps_get_their_pods_metadata_url(store, engine, busybox, served, jpt):
    pod = run_pod(store, engine, {
        "name": "env", "networks": ["jpt"], "volumes": [{"name": "out", "kind": "empty"}],
        "apps": [busybox_app("a", 'echo "$AC_METADATA_URL" > /out/url; exec sleep 600',
                             mounts=[{"volume": "out", "path": "/out"}])]})
    url = wait_for_file(os.path.join(volume_path(pod, "out"), "url")).strip()
    assert url == pod.record["metadata_url"]
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 22 and pod.uuid.replace("-", "") not in token  # >= 128 bits, not the UUID


def test_a_wrong_token_or_another_pods_address_is_refused(store, engine, busybox, served, jpt):
    first = meta_pod(store, engine, "first")
    second = meta_pod(store, engine, "second")
    assert first.record["metadata_url"] != second.record["metadata_url"]
    wrong = first.record["metadata_url"].rsplit("/", 1)[0] + "/not-a-token/acMetadata/v1/pod/uuid"
    status, out, headers = get(engine, first, wrong)
    assert status != 0 and "401" in headers and out == ""
    stolen = first.record["metadata_url"] + "/acMetadata/v1/pod/uuid"
    status, out, headers = get(engine, second, stolen)          # first's token, from second's address
    assert status != 0 and "403" in headers and first.uuid not in out
    assert get(engine, first, stolen)[:2] == (0, first.uuid)    # first itself is served


def test_hmac_sign_and_verify_round_trip_and_a_forgery_is_refused(store, engine, busybox, served, jpt):
    signer = meta_pod(store, engine, "signer")
    checker = meta_pod(store, engine, "checker")
    hmac_url = "%s/acMetadata/v1/pod/hmac/" % signer.record["metadata_url"]
    status, signature, headers = get(engine, signer, hmac_url + "sign", "--post-data", "content=hello%20world")
    assert status == 0 and content_type(headers) == ["text/plain; charset=us-ascii"] and len(signature) == 88

    def verify(content, uuid, sig):
        url = "%s/acMetadata/v1/pod/hmac/verify" % checker.record["metadata_url"]
        form = "content=%s&uuid=%s&signature=%s" % (quote(content), uuid, quote(sig, safe=""))
        return get(engine, checker, url, "--post-data", form)

    assert verify("hello world", signer.uuid, signature)[0] == 0     # another pod checks signer's signature
    forged = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    for content, uuid, sig in (("hello world", signer.uuid, forged), ("hello moon", signer.uuid, signature),
                               ("hello world", checker.uuid, signature)):
        status, _out, headers = verify(content, uuid, sig)
        assert status != 0 and "403" in headers
