"""The appc metadata service (metadata.py): a real server on loopback, real HTTP clients.

Linux routes all of 127.0.0.0/8 to lo, so a client socket bound to 127.0.0.2 or 127.0.0.3 is a
distinct source address: two "pods" on one host. Bodies and Content-Type headers are checked
against ace.md's table (appc-spec.md section 4, "Metadata service").
"""
import base64
import http.client
import json
import os
import stat
import uuid
from urllib.parse import urlencode, urlsplit

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import metadata
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput, JetpackError

JSON = "application/json"
TEXT = "text/plain; charset=us-ascii"
POD_A, POD_B = "127.0.0.2", "127.0.0.3"
UUID_A = "6d0f2a4e-5b1c-4c3d-9e8f-0a1b2c3d4e5f"
UUID_B = "11111111-2222-4333-8444-555555555555"
IMAGE_ID = "sha512-" + "ab" * 64

# The image manifest as the store keeps it: original bytes, with fields in their own order and no "app".
IMAGE_MANIFEST = ('{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/web",'
                  '"annotations":[{"name":"authors","value":"image"},{"name":"homepage","value":"http://x.example"}]}')
BARE_IMAGE_MANIFEST = '{"acVersion":"0.8.11","acKind":"ImageManifest","name":"example.com/bare"}'


def pod_manifest(annotations=None, app_annotations=None):
    manifest = {"acKind": "PodManifest", "acVersion": "0.8.11",
                "apps": [{"name": "web", "image": {"id": IMAGE_ID, "name": "example.com/web"},
                          "annotations": app_annotations or []},
                         {"name": "bare", "image": {"id": IMAGE_ID, "name": "example.com/bare"}}],
                "volumes": []}
    if annotations is not None:
        manifest["annotations"] = annotations
    return json.dumps(manifest)


IMAGES = {"web": {"id": IMAGE_ID, "manifest": IMAGE_MANIFEST}, "bare": {"id": IMAGE_ID, "manifest": BARE_IMAGE_MANIFEST}}


@pytest.fixture
def registry(tmp_path):
    return metadata.Registry(str(tmp_path / "pods"))


@pytest.fixture
def key(tmp_path):
    return metadata.load_or_create_key(str(tmp_path / "hmac.key"))


@pytest.fixture
def service(registry, key):
    server = metadata.MetadataService(registry, key, ["127.0.0.1"], port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tokens(registry):
    return {
        "a": registry.register(UUID_A, [POD_A], pod_manifest(
            annotations=[{"name": "ip-address", "value": "10.1.2.3"}],
            app_annotations=[{"name": "authors", "value": "pod"}, {"name": "team", "value": "ops"}]), IMAGES),
        "b": registry.register(UUID_B, [POD_B], pod_manifest(), IMAGES),
    }


def request(service, token, path, source=POD_A, form=None):
    """(status, content type, body) of one request from the given source address."""
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10, source_address=(source, 0))
    try:
        target = "/%s/acMetadata/v1/%s" % (token, path)
        if form is None:
            connection.request("GET", target, headers={"Metadata-Flavor": "AppContainer"})
        else:
            connection.request("POST", target, body=urlencode(form),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


# --- every endpoint -----------------------------------------------------------------------------
def test_pod_annotations(service, tokens):
    assert request(service, tokens["a"], "pod/annotations") == \
        (200, JSON, b'[{"name": "ip-address", "value": "10.1.2.3"}]')


def test_pod_annotations_absent_are_an_empty_array(service, tokens):
    status, content_type, body = request(service, tokens["b"], "pod/annotations", source=POD_B)
    assert (status, content_type, json.loads(body)) == (200, JSON, [])


def test_pod_manifest_is_the_registered_reified_manifest_byte_for_byte(service, tokens):
    status, content_type, body = request(service, tokens["b"], "pod/manifest", source=POD_B)
    assert (status, content_type, body.decode()) == (200, JSON, pod_manifest())
    assert "annotations" not in json.loads(body)  # absent stays absent, not invented


def test_pod_uuid(service, tokens):
    assert request(service, tokens["a"], "pod/uuid") == (200, TEXT, UUID_A.encode())


def test_app_annotations_merge_image_and_pod_app_with_the_pod_winning(service, tokens):
    status, content_type, body = request(service, tokens["a"], "apps/web/annotations")
    assert (status, content_type) == (200, JSON)
    assert json.loads(body) == [{"name": "authors", "value": "pod"}, {"name": "homepage", "value": "http://x.example"},
                                {"name": "team", "value": "ops"}]


def test_app_annotations_absent_everywhere_are_an_empty_array(service, tokens):
    assert request(service, tokens["a"], "apps/bare/annotations") == (200, JSON, b"[]")


def test_app_image_manifest_is_the_original(service, tokens):
    assert request(service, tokens["a"], "apps/web/image/manifest") == (200, JSON, IMAGE_MANIFEST.encode())
    status, _type, body = request(service, tokens["a"], "apps/bare/image/manifest")
    assert body == BARE_IMAGE_MANIFEST.encode() and "app" not in json.loads(body)


def test_app_image_id(service, tokens):
    assert request(service, tokens["a"], "apps/web/image/id") == (200, TEXT, IMAGE_ID.encode())


def test_unknown_app_and_path_are_404_and_wrong_method_405(service, tokens):
    assert request(service, tokens["a"], "apps/nope/image/id")[0] == 404
    assert request(service, tokens["a"], "pod/nothing")[0] == 404
    assert request(service, tokens["a"], "pod/uuid", form={})[0] == 405


# --- who may ask -----------------------------------------------------------------------------
def test_a_wrong_token_is_refused(service, tokens):
    wrong = ("y" if tokens["a"][0] == "x" else "x") + tokens["a"][1:]  # one character off, never the same
    status, _type, body = request(service, wrong, "pod/uuid")
    assert status == 401 and UUID_A.encode() not in body
    assert request(service, "", "pod/uuid")[0] in (401, 404)


def test_a_token_used_from_another_pods_address_is_refused(service, tokens):
    status, _type, body = request(service, tokens["a"], "pod/uuid", source=POD_B)
    assert status == 403 and UUID_A.encode() not in body
    assert request(service, tokens["a"], "pod/hmac/sign", source=POD_B, form={"content": "x"})[0] == 403


def test_tokens_are_random_256_bit_and_not_derived_from_the_uuid(registry, tokens):
    raw = base64.urlsafe_b64decode(tokens["a"] + "=" * (-len(tokens["a"]) % 4))
    assert len(raw) * 8 >= 128
    assert uuid.UUID(UUID_A).hex not in tokens["a"] and uuid.UUID(UUID_A).bytes not in raw
    assert tokens["a"] != tokens["b"]
    assert registry.register(UUID_A, [POD_A], pod_manifest(), IMAGES) == tokens["a"]  # re-registering keeps it


def test_registry_file_holds_the_token_readable_by_root_only(registry, tokens):
    info = os.stat(registry.path(UUID_A))
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(registry.directory).st_mode) == 0o700


# --- identity endpoint -------------------------------------------------------------------------
def test_hmac_sign_then_verify_from_another_pod(service, tokens):
    status, content_type, signature = request(service, tokens["a"], "pod/hmac/sign", form={"content": "hello"})
    assert (status, content_type) == (200, TEXT)
    assert len(base64.b64decode(signature, validate=True)) == 64  # SHA-512
    form = {"content": "hello", "uuid": UUID_A, "signature": signature.decode()}
    assert request(service, tokens["b"], "pod/hmac/verify", source=POD_B, form=form)[0] == 200


def test_forged_signatures_are_refused(service, tokens, key):
    _status, _type, signature = request(service, tokens["a"], "pod/hmac/sign", form={"content": "hello"})
    forged = bytearray(base64.b64decode(signature))
    forged[0] ^= 1
    for form in ({"content": "hellO", "uuid": UUID_A, "signature": signature.decode()},      # other content
                 {"content": "hello", "uuid": UUID_B, "signature": signature.decode()},      # other pod
                 {"content": "hello", "uuid": UUID_A, "signature": base64.b64encode(bytes(forged)).decode()},
                 {"content": "hello", "uuid": UUID_A, "signature": "not base64!"},
                 {"content": "hello", "uuid": UUID_A,                                       # another host's key
                  "signature": metadata.sign(b"k" * 64, UUID_A, b"hello")}):
        assert request(service, tokens["b"], "pod/hmac/verify", source=POD_B, form=form)[0] == 403, form
    assert request(service, tokens["b"], "pod/hmac/verify", source=POD_B,
                   form={"content": "hello", "uuid": "nope", "signature": signature.decode()})[0] == 400


def test_host_key_is_created_once_0600_and_loose_permissions_are_refused(tmp_path, key):
    path = str(tmp_path / "hmac.key")
    assert len(key) == 64 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert metadata.load_or_create_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(JetpackError, match="chmod 600"):
        metadata.load_or_create_key(path)


# --- registry lifecycle -------------------------------------------------------------------------
def test_a_restarted_service_reloads_registered_pods_and_unregistered_pods_are_refused(registry, key, tokens):
    first = metadata.MetadataService(registry, key, ["127.0.0.1"], port=0)
    first.start()
    first.stop()
    again = metadata.MetadataService(metadata.Registry(registry.directory), key, ["127.0.0.1"], port=0)
    again.start()
    try:
        assert request(again, tokens["a"], "pod/uuid") == (200, TEXT, UUID_A.encode())
        assert metadata.Registry(registry.directory).unregister(UUID_A) is True
        assert request(again, tokens["a"], "pod/uuid")[0] == 401
        assert request(again, tokens["b"], "pod/uuid", source=POD_B)[0] == 200
    finally:
        again.stop()


def test_a_pod_registered_while_the_service_runs_is_served_at_once(service, registry, tokens):
    assert request(service, tokens["a"], "pod/uuid")[0] == 200
    uuid_c = str(uuid.uuid4())
    token = registry.register(uuid_c, ["127.0.0.5"], pod_manifest(), IMAGES)
    assert request(service, token, "pod/uuid", source="127.0.0.5") == (200, TEXT, uuid_c.encode())


def test_service_listens_on_every_given_address_on_one_port(registry, key, tokens):
    server = metadata.MetadataService(registry, key, ["127.0.0.1", "127.0.0.4"], port=0)
    server.start()
    try:
        for address in ("127.0.0.1", "127.0.0.4"):
            connection = http.client.HTTPConnection(address, server.port, timeout=10, source_address=(POD_A, 0))
            connection.request("GET", "/%s/acMetadata/v1/pod/uuid" % tokens["a"])
            assert connection.getresponse().read() == UUID_A.encode()
            connection.close()
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error(registry, key, service):
    with pytest.raises(JetpackError, match="cannot listen on 127.0.0.1 port %d" % service.port):
        metadata.MetadataService(registry, key, ["127.0.0.1"], port=service.port).start()


def test_url_embeds_the_token_and_brackets_ipv6():
    assert metadata.url("172.23.0.1", "tok") == "http://172.23.0.1:18112/tok"
    assert urlsplit(metadata.url("fd00::1", "tok", 8080)).hostname == "fd00::1"


def test_register_refuses_what_cannot_be_served(registry):
    with pytest.raises(InvalidInput, match="not a pod UUID"):
        registry.register("nope", [POD_A], pod_manifest(), IMAGES)
    with pytest.raises(InvalidInput, match="no address"):
        registry.register(UUID_A, [], pod_manifest(), IMAGES)
    with pytest.raises(InvalidInput, match="not JSON"):
        registry.register(UUID_A, [POD_A], "{broken", IMAGES)
    assert not os.path.exists(registry.path(UUID_A))
