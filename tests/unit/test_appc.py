"""appc.py: AC identifiers and names, labels, image references, image manifests."""
import json

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput


def manifest(**fields):
    data = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/app"}
    data.update(fields)
    return data


def app(**fields):
    data = {"user": "0", "group": "0"}
    data.update(fields)
    return data


FULL_MANIFEST = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/reduce-worker",
    "labels": [{"name": "version", "value": "1.0.0"}, {"name": "arch", "value": "amd64"},
               {"name": "os", "value": "linux"}],
    "app": {
        "exec": ["/usr/bin/reduce-worker", "--quiet"],
        "user": "100",
        "group": "300",
        "supplementaryGIDs": [400, 500],
        "eventHandlers": [{"exec": ["/usr/bin/data-downloader"], "name": "pre-start"},
                          {"exec": ["/usr/bin/deregister-worker", "--verbose"],
                           "name": "post-stop"}],
        "workingDirectory": "/opt/work",
        "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"},
                        {"name": "a.b-c_d", "value": ""}],
        "isolators": [
            {"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
            {"name": "resource/memory", "value": {"request": "1G", "limit": "2Gi"}},
            {"name": "resource/block-bandwidth", "value": {"default": True, "limit": "1M"}},
            {"name": "os/linux/capabilities-retain-set",
             "value": {"set": ["CAP_NET_BIND_SERVICE"]}},
            {"name": "os/linux/no-new-privileges", "value": True},
            {"name": "os/linux/seccomp-remove-set",
             "value": {"set": ["@appc.io/empty"], "errno": "ENOTSUP"}},
            {"name": "os/linux/oom-score-adj", "value": -500},
            {"name": "os/unix/sysctl", "value": {"net.ipv4.ip_forward": "1"}},
        ],
        "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": False}],
        "ports": [{"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": False},
                  {"name": "range", "port": 5000, "count": 10, "protocol": "udp"}],
        "userAnnotations": {"team": "data"},
        "userLabels": {"tier": "batch"},
    },
    "dependencies": [{"imageName": "example.com/reduce-worker-base",
                      "imageID": "sha512-" + "ab" * 64,
                      "labels": [{"name": "os", "value": "linux"},
                                 {"name": "env", "value": "canary"}],
                      "size": 1024}],
    "pathWhitelist": ["/etc/ca/example.com/crt", "/usr/bin/map-reduce-worker"],
    "annotations": [{"name": "authors", "value": "Carly Container <carly@example.com>"},
                    {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
                    {"name": "homepage", "value": "https://example.com/"},
                    {"name": "appc.io/executor/supports-systemd-notify", "value": "true"}],
    "x-unknown-extension": {"kept": True},
}


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("value", ["a", "example.com/app", "a-b.c_d~e/f", "3ofcoins.net/base",
                                   "x0/y1"])
def test_valid_identifiers(value):
    assert appc.validate_identifier(value, "name") == value


@pytest.mark.parametrize("value", ["", "A", "app/", "/app", "-app", "a..b", "a//b", "a b", "a\nb",
                                   "$(rm -rf /)", "a;b", "`id`", "ünï", 7, None])
def test_invalid_identifiers_name_the_field_and_say_what_to_use(value):
    with pytest.raises(InvalidInput) as raised:
        appc.validate_identifier(value, "image.name")
    assert raised.value.field == "image.name"
    assert str(raised.value).startswith("image.name: ")
    assert "lowercase" in str(raised.value) or "quote" in str(raised.value)


@pytest.mark.parametrize("value, ok", [("web", True), ("web-1", True), ("a1-b2-c3", True),
                                       ("web.1", False), ("web_1", False), ("-web", False),
                                       ("web--1", False), ("Web", False), ("", False)])
def test_acname(value, ok):
    if ok:
        assert appc.validate_acname(value, "app") == value
    else:
        with pytest.raises(InvalidInput, match="not a valid AC name"):
            appc.validate_acname(value, "app")


def test_image_id():
    assert appc.validate_image_id("sha512-" + "0" * 128)
    assert appc.validate_image_id("sha512-abc123")   # the reference code allows short digests
    for bad in ["sha256-" + "0" * 64, "sha512-", "sha512-" + "A" * 128, "sha512-" + "0" * 129]:
        with pytest.raises(InvalidInput, match="is not an image ID"):
            appc.validate_image_id(bad)


# ---------------------------------------------------------------- labels

def test_normalize_labels_from_list_and_dict_sorted():
    as_list = [{"name": "version", "value": "1"}, {"name": "arch", "value": "amd64"},
               {"name": "os", "value": "freebsd"}]
    expected = {"arch": "amd64", "os": "freebsd", "version": "1"}
    assert appc.normalize_labels(as_list) == expected
    assert list(appc.normalize_labels({"version": "1", "os": "freebsd", "arch": "amd64"})) == \
        ["arch", "os", "version"]
    assert appc.normalize_labels(None) == {}
    assert appc.labels_to_list(expected) == [{"name": "arch", "value": "amd64"},
                                             {"name": "os", "value": "freebsd"},
                                             {"name": "version", "value": "1"}]


@pytest.mark.parametrize("labels, field, match", [
    ([{"name": "name", "value": "x"}], "labels[0].name", "'name' cannot be a label"),
    ([{"name": "a", "value": "1"}, {"name": "a", "value": "2"}], "labels[1].name",
     "duplicate label"),
    ([{"name": "Bad", "value": "1"}], "labels[0].name", "not a valid AC identifier"),
    ([{"name": "a"}], "labels[0].value", "missing"),
    ([{"name": "a", "value": 1.0}], "labels[0].value", "quote the value"),
    ([{"name": "a", "value": "x\ny"}], "labels[0].value", "control character"),
    ({"version": 1.1}, "labels.version", "quote the value"),
    ("os=linux", "labels", "expected a list"),
])
def test_bad_labels(labels, field, match):
    with pytest.raises(InvalidInput, match=match) as raised:
        appc.normalize_labels(labels)
    assert raised.value.field == field


@pytest.mark.parametrize("os_name, arch", [
    ("linux", "amd64"), ("linux", "i386"), ("linux", "aarch64"), ("linux", "aarch64_be"),
    ("linux", "armv6l"), ("linux", "armv7l"), ("linux", "armv7b"), ("linux", "ppc64"),
    ("linux", "ppc64le"), ("linux", "s390x"), ("freebsd", "amd64"), ("freebsd", "i386"),
    ("freebsd", "arm"), ("darwin", "x86_64"), ("darwin", "i386"), ("linux", None),
    (None, "anything"),
])
def test_valid_os_arch_pairs(os_name, arch):
    appc.validate_os_arch(os_name, arch)


@pytest.mark.parametrize("os_name, arch, match", [
    ("linux", "arm64", "unsupported arch 'arm64' for os 'linux'"),
    ("freebsd", "aarch64", "unsupported arch"),
    ("darwin", "amd64", "unsupported arch"),
    ("windows", "amd64", "unsupported os 'windows'"),
])
def test_invalid_os_arch_pairs(os_name, arch, match):
    with pytest.raises(InvalidInput, match=match):
        appc.normalize_labels({"os": os_name, "arch": arch})


def test_labels_match_is_a_subset_match():
    have = {"version": "1.0", "os": "linux", "arch": "amd64"}
    assert appc.labels_match({}, have)
    assert appc.labels_match({"os": "linux"}, have)
    assert not appc.labels_match({"os": "freebsd"}, have)
    assert not appc.labels_match({"env": "prod"}, have)


# ---------------------------------------------------------------- image references

@pytest.mark.parametrize("ref, name, labels", [
    ("example.com/app", "example.com/app", {}),
    ("example.com/app:1.2.3", "example.com/app", {"version": "1.2.3"}),
    ("example.com/app:latest,os=linux,arch=amd64", "example.com/app",
     {"arch": "amd64", "os": "linux", "version": "latest"}),
    ("app,channel=beta", "app", {"channel": "beta"}),
    ("app:10.3-RELEASE-p7", "app", {"version": "10.3-RELEASE-p7"}),
])
def test_parse_image_ref(ref, name, labels):
    assert appc.parse_image_ref(ref) == (name, labels)


@pytest.mark.parametrize("ref, match", [
    ("Example.com/app", "not a valid AC identifier"),
    ("app:", "empty version"),
    ("app,os", "not a label=value pair"),
    ("app,os=", "not a label=value pair"),
    ("app:1,version=2", "given twice"),
    ("app,name=x", "'name' cannot be a label"),
    ("app,os=linux,arch=arm64", "unsupported arch"),
    ("$(reboot):1", "not a valid AC identifier"),
])
def test_parse_image_ref_refuses(ref, match):
    with pytest.raises(InvalidInput, match=match):
        appc.parse_image_ref(ref)


# ---------------------------------------------------------------- manifests

def test_full_manifest_is_accepted_as_is():
    assert appc.parse_image_manifest(json.dumps(FULL_MANIFEST).encode()) == FULL_MANIFEST
    assert appc.parse_image_manifest(json.dumps(FULL_MANIFEST)) == FULL_MANIFEST
    parsed = appc.parse_image_manifest(FULL_MANIFEST)
    assert parsed == FULL_MANIFEST and parsed is not FULL_MANIFEST


def test_minimal_manifest_and_empty_optional_fields():
    assert appc.parse_image_manifest(manifest())["name"] == "example.com/app"
    appc.parse_image_manifest(manifest(labels=[], pathWhitelist=[], dependencies=[],
                                       annotations=[], app=None))
    appc.parse_image_manifest(manifest(app=app(exec=[], workingDirectory="")))
    appc.parse_image_manifest(manifest(acVersion="0.5.1+git.1"))


@pytest.mark.parametrize("fields, field, match", [
    ({"acKind": "PodManifest"}, "acKind", "not an image manifest"),
    ({"acKind": None}, "acKind", "missing"),
    ({"acVersion": "0.8"}, "acVersion", "not a semantic version"),
    ({"acVersion": "1.0.0"}, "acVersion", "incompatible"),
    ({"acVersion": "v0.8.11"}, "acVersion", "not a semantic version"),
    ({"name": "Example.com/App"}, "name", "not a valid AC identifier"),
    ({"name": "example.com/app\n"}, "name", "not a valid AC identifier"),
    ({"labels": {"version": "1"}}, "labels", "expected a list"),
    ({"labels": [{"name": "os", "value": "plan9"}]}, "labels.os", "unsupported os"),
    ({"app": []}, "app", "expected an object"),
    ({"app": {"group": "0"}}, "app.user", "missing"),
    ({"app": app(user="")}, "app.user", "empty"),
    ({"app": app(exec="/bin/sh -c id")}, "app.exec", "expected a list"),
    ({"app": app(exec=["/bin/sh", 1])}, "app.exec[1]", "expected a string"),
    ({"app": app(exec=["/bin/sh\x00"])}, "app.exec[0]", "NUL"),
    ({"app": app(exec=[""])}, "app.exec[0]", "empty program"),
    ({"app": app(supplementaryGIDs=[-1])}, "app.supplementaryGIDs[0]", "out of range"),
    ({"app": app(supplementaryGids=["1"])}, "app.supplementaryGids[0]", "expected an integer"),
    ({"app": app(eventHandlers=[{"name": "on-start", "exec": ["/x"]}])},
     "app.eventHandlers[0].name", "unknown event handler"),
    ({"app": app(eventHandlers=[{"name": "pre-start", "exec": ["/x"]},
                                {"name": "pre-start", "exec": ["/y"]}])},
     "app.eventHandlers[1].name", "a second 'pre-start' handler"),
    ({"app": app(eventHandlers=[{"name": "post-stop", "exec": []}])},
     "app.eventHandlers[0].exec", "empty command"),
    ({"app": app(workingDirectory="opt")}, "app.workingDirectory", "not an absolute path"),
    ({"app": app(environment=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"},
                              {"name": "1BAD", "value": "3"}])},
     "app.environment[2].name", "not a valid environment variable name"),
    ({"app": app(environment=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])},
     "app.environment[1].name", "duplicate variable"),
    ({"app": app(environment=[{"name": "A", "value": 1}])}, "app.environment[0].value",
     "expected a string"),
    ({"app": app(environment={"A": "1"})}, "app.environment", "expected a list"),
    ({"app": app(mountPoints=[{"name": "Data", "path": "/data"}])}, "app.mountPoints[0].name",
     "not a valid AC name"),
    ({"app": app(mountPoints=[{"name": "data", "path": "data"}])}, "app.mountPoints[0].path",
     "not an absolute path"),
    ({"app": app(mountPoints=[{"name": "data", "path": "/d", "readOnly": "yes"}])},
     "app.mountPoints[0].readOnly", "true or false"),
    ({"app": app(ports=[{"name": "http", "protocol": "tcp", "port": 0}])}, "app.ports[0].port",
     "out of range"),
    ({"app": app(ports=[{"name": "http", "protocol": "tcp", "port": 65530, "count": 10}])},
     "app.ports[0].count", "past 65535"),
    ({"app": app(ports=[{"name": "http", "protocol": "TCP", "port": 80}])},
     "app.ports[0].protocol", "not a protocol name"),
    ({"app": app(ports=[{"name": "a", "protocol": "tcp", "port": 80},
                        {"name": "a", "protocol": "udp", "port": 81}])},
     "app.ports[1].name", "duplicate port"),
    ({"app": app(ports=[{"name": "a", "protocol": "tcp", "port": True}])}, "app.ports[0].port",
     "expected an integer"),
    ({"app": app(isolators=[{"name": "resource/gpu", "value": {}}])}, "app.isolators[0].name",
     "unknown isolator"),
    ({"app": app(isolators=[{"name": "resource/memory", "value": {"limit": "1 GB"}}])},
     "app.isolators[0].value.limit", "not a resource quantity"),
    ({"app": app(isolators=[{"name": "resource/memory", "value": {}}])},
     "app.isolators[0].value", "neither request nor limit"),
    ({"app": app(isolators=[{"name": "resource/block-iops", "value": {"limit": "10"}}])},
     "app.isolators[0].value.default", "must be true"),
    ({"app": app(isolators=[{"name": "os/linux/capabilities-retain-set",
                             "value": {"set": ["CAP_CHOWN"]}},
                            {"name": "os/linux/capabilities-remove-set",
                             "value": {"set": ["CAP_KILL"]}}])},
     "app.isolators[1].name", "conflicts with"),
    ({"app": app(isolators=[{"name": "os/linux/capabilities-remove-set",
                             "value": {"set": ["chown"]}}])},
     "app.isolators[0].value.set[0]", "not a capability name"),
    ({"app": app(isolators=[{"name": "os/linux/no-new-privileges", "value": "true"}])},
     "app.isolators[0].value", "true or false"),
    ({"app": app(isolators=[{"name": "os/linux/oom-score-adj", "value": 2000}])},
     "app.isolators[0].value", "out of range"),
    ({"app": app(isolators=[{"name": "os/linux/seccomp-retain-set", "value": {"set": []}}])},
     "app.isolators[0].value.set", "empty set"),
    ({"app": app(isolators=[{"name": "os/linux/apparmor-profile", "value": {}}])},
     "app.isolators[0].value.profile", "missing"),
    ({"app": app(isolators=[{"name": "os/linux/cpu-shares"}])}, "app.isolators[0].value",
     "missing"),
    ({"app": app(userLabels={"a": 1})}, "app.userLabels.a", "expected a string"),
    ({"dependencies": [{"imageID": "sha512-00"}]}, "dependencies[0].imageName", "missing"),
    ({"dependencies": [{"imageName": "a", "imageID": "sha256-00"}]}, "dependencies[0].imageID",
     "not an image ID"),
    ({"dependencies": [{"imageName": "a", "size": -1}]}, "dependencies[0].size", "out of range"),
    ({"dependencies": [{"imageName": "a", "labels": [{"name": "os", "value": "beos"}]}]},
     "dependencies[0].labels.os", "unsupported os"),
    ({"pathWhitelist": ["etc/passwd"]}, "pathWhitelist[0]", "not an absolute path"),
    ({"pathWhitelist": "/etc"}, "pathWhitelist", "expected a list"),
    ({"annotations": [{"name": "created", "value": "yesterday"}]}, "annotations[0].value",
     "not an RFC 3339 timestamp"),
    ({"annotations": [{"name": "created", "value": "2016-02-30T10:00:00Z"}]},
     "annotations[0].value", "not an RFC 3339 timestamp"),
    ({"annotations": [{"name": "homepage", "value": "javascript:alert(1)"}]},
     "annotations[0].value", r"not an http\(s\) URL"),
    ({"annotations": [{"name": "appc.io/executor/supports-systemd-notify", "value": "yes"}]},
     "annotations[0].value", "not a boolean"),
    ({"annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]},
     "annotations[1].name", "duplicate annotation"),
    ({"annotations": [{"name": "Bad Name", "value": "1"}]}, "annotations[0].name",
     "not a valid AC identifier"),
])
def test_manifest_errors_name_the_field_path(fields, field, match):
    with pytest.raises(InvalidInput, match=match) as raised:
        appc.parse_image_manifest(manifest(**fields))
    assert raised.value.field == field
    assert str(raised.value).startswith(field + ": ")
    assert "; " in str(raised.value)   # what is wrong; what to do


@pytest.mark.parametrize("data, match", [
    (b"{", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[]", "expected a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"name": "a", "name": "b"}', "duplicate key 'name'"),
    (b'{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a", "x": NaN}',
     "not valid JSON"),
    (42, "expected JSON text"),
])
def test_manifest_json_errors(data, match):
    with pytest.raises(InvalidInput, match=match):
        appc.parse_image_manifest(data)


def test_rfc3339_timestamps():
    for value in ["2016-01-02T15:04:05Z", "2016-01-02t15:04:05.123456789+02:00",
                  "2016-12-31T23:59:60Z"]:
        appc.parse_image_manifest(manifest(annotations=[{"name": "created", "value": value}]))
    for value in ["2016-01-02 15:04:05Z", "2016-01-02T15:04:05", "2016-13-02T15:04:05Z",
                  "2016-01-02T15:04:05+24:00"]:
        with pytest.raises(InvalidInput):
            appc.parse_image_manifest(manifest(annotations=[{"name": "created", "value": value}]))


def test_serialize_manifest_is_canonical():
    data = {"name": "example.com/é", "acVersion": "0.8.11", "acKind": "ImageManifest",
            "labels": [{"value": "1", "name": "version"}]}
    raw = appc.serialize_manifest(data)
    assert raw == ('{"acKind":"ImageManifest","acVersion":"0.8.11","labels":[{"name":"version",'
                   '"value":"1"}],"name":"example.com/é"}').encode("utf-8")
    assert appc.serialize_manifest(json.loads(raw)) == raw


def test_ac_version():
    assert appc.AC_VERSION == "0.8.11"
