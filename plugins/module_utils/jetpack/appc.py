"""App Container (appc 0.8.11) names, labels and image manifests.

Everything here is pure: values in, validated values out, `InvalidInput` naming the field
(`app.environment[2].name`) and saying what to do otherwise.
"""
from __future__ import annotations

import datetime
import json
import math
import re
from urllib.parse import urlsplit

from .errors import InvalidInput

AC_VERSION = "0.8.11"
AC_MAJOR_VERSION = 0

# Pattern texts, not compiled patterns: re compiles (and caches) one on first use, so a run
# that never checks a field never pays for its pattern.
_IDENTIFIER_RE = r"[a-z0-9]+(?:[-._~/][a-z0-9]+)*"
_ACNAME_RE = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_SEMVER_RE = (
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)
_IMAGE_ID_RE = r"sha512-[0-9a-f]{1,128}"
_ENV_NAME_RE = r"[A-Za-z_][A-Za-z_0-9.-]*"
_RFC3339_RE = (
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)
_QUANTITY_RE = r"[0-9]+(?:\.[0-9]+)?(?:m|k|K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?"
_PROTOCOL_RE = r"[a-z][a-z0-9+.-]*"
_CAPABILITY_RE = r"CAP_[A-Z_]+"
_CONTROL_CHARS_RE = r"[\x00-\x1f\x7f]"

IDENTIFIER_HINT = ("use lowercase letters and digits, optionally separated by single '-', '.', "
                   "'_', '~' or '/' (for example example.com/my-app)")
ACNAME_HINT = "use lowercase letters and digits separated by single '-' (for example web-1)"

# The spec's os/arch pairs, plus the linux arches the reference code also accepts.
OS_ARCHES = {
    "linux": ("amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b",
              "ppc64", "ppc64le", "s390x"),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}

EVENT_HANDLER_NAMES = ("pre-start", "post-stop")


def _fail(field, problem, advice):
    raise InvalidInput("%s: %s; %s" % (field, problem, advice), field)


def _join(field, key):
    return "%s.%s" % (field, key) if field else key


# ---------------------------------------------------------------- scalar types

def _show(value):
    """repr() of a value for a message, shortened: values come from untrusted manifests."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_str(value, field):
    if not isinstance(value, str):
        _fail(field, "expected a string, got %s" % _json_type(value),
              "quote the value so it is a string")
    return value


def _require_bool(value, field):
    if not isinstance(value, bool):
        _fail(field, "expected true or false, got %s" % _json_type(value), "use a JSON boolean")
    return value


def _require_int(value, field, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, "expected an integer, got %s" % _json_type(value), "use a whole number")
    if high is None and value < low:
        _fail(field, "%d is out of range" % value, "use a value of at least %d" % low)
    if high is not None and not low <= value <= high:
        _fail(field, "%d is out of range" % value, "use a value from %d to %d" % (low, high))
    return value


def _require_list(value, field):
    if not isinstance(value, list):
        _fail(field, "expected a list, got %s" % _json_type(value), "use a JSON array")
    return value


def _require_object(value, field):
    if not isinstance(value, dict):
        _fail(field, "expected an object, got %s" % _json_type(value), "use a JSON object")
    return value


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _no_nul(value, field):
    if "\x00" in value:
        _fail(field, "contains a NUL character", "remove it")
    return value


def _require_absolute_path(value, field):
    _no_nul(_require_str(value, field), field)
    if not value.startswith("/"):
        _fail(field, "%s is not an absolute path" % _show(value), "start it with '/'")
    return value


# ---------------------------------------------------------------- names, IDs, labels

def validate_identifier(value, field):
    """An AC Identifier (image, label, annotation and isolator names)."""
    _require_str(value, field)
    if not re.fullmatch(_IDENTIFIER_RE, value):
        _fail(field, "%s is not a valid AC identifier" % _show(value), IDENTIFIER_HINT)
    return value


def validate_acname(value, field):
    """An AC Name (app, volume, mount point and port names)."""
    _require_str(value, field)
    if not re.fullmatch(_ACNAME_RE, value):
        _fail(field, "%s is not a valid AC name" % _show(value), ACNAME_HINT)
    return value


def validate_image_id(value, field="image_id"):
    """An image ID: "sha512-" and lowercase hex (the reference code accepts shortened digests)."""
    _require_str(value, field)
    if not re.fullmatch(_IMAGE_ID_RE, value):
        _fail(field, "%s is not an image ID" % _show(value),
              "use sha512- followed by the lowercase hex digest (up to 128 digits)")
    return value


def validate_os_arch(os_name, arch, field="labels"):
    """Check the well-known os/arch labels against the spec's pairs; either may be None.

    arch only matters when os is set, as in the spec.
    """
    if os_name is None:
        return
    arches = OS_ARCHES.get(os_name)
    if arches is None:
        _fail(_join(field, "os"), "unsupported os %s" % _show(os_name),
              "use one of: %s" % ", ".join(sorted(OS_ARCHES)))
    if arch is not None and arch not in arches:
        _fail(_join(field, "arch"), "unsupported arch %s for os %s" % (_show(arch), _show(os_name)),
              "use one of: %s" % ", ".join(arches))


def _validate_label_value(value, field):
    _require_str(value, field)
    if re.search(_CONTROL_CHARS_RE, value):
        _fail(field, "contains a control character (newline, tab, NUL...)", "remove it")
    return value


def normalize_labels(value, field="labels"):
    """Labels as a dict sorted by name, from a dict or appc's [{"name", "value"}] list."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = [(name, label, _join(field, str(name)), _join(field, str(name)))
                 for name, label in value.items()]
    else:
        pairs = _label_pairs(_require_list(value, field), field)
    labels = {}
    for name, label, name_field, value_field in pairs:
        validate_identifier(name, name_field)
        if name == "name":
            _fail(name_field, "'name' cannot be a label", "the image name is given separately")
        if name in labels:
            _fail(name_field, "duplicate label %s" % _show(name), "give each label once")
        labels[name] = _validate_label_value(label, value_field)
    validate_os_arch(labels.get("os"), labels.get("arch"), field)
    return dict(sorted(labels.items()))


def _label_pairs(items, field):
    pairs = []
    for index, item in enumerate(items):
        where = "%s[%d]" % (field, index)
        _require_object(item, where)
        name = _required(item, "name", where)
        label = _required(item, "value", where)
        pairs.append((name, label, where + ".name", where + ".value"))
    return pairs


def labels_to_list(labels):
    """appc's [{"name", "value"}] form, sorted by name."""
    return [{"name": name, "value": labels[name]} for name in sorted(labels)]


def labels_match(wanted, have):
    """True when every wanted label is present in `have` with the same value."""
    return all(name in have and have[name] == value for name, value in wanted.items())


def parse_image_ref(ref, field="image"):
    """Split a CLI-style reference `name[:version][,label=value...]` into (name, labels).

    No label is invented: a missing version means "any version".
    """
    _require_str(ref, field)
    head, *label_parts = ref.split(",")
    name, colon, version = head.partition(":")
    validate_identifier(name, field)
    labels = {}
    if colon:
        if not version:
            _fail(field, "empty version after ':' in %s" % _show(ref),
                  "write name:version, or leave out the ':'")
        labels["version"] = version
    for part in label_parts:
        label, equals, label_value = part.partition("=")
        if not equals or not label_value:
            _fail(field, "%s is not a label=value pair" % _show(part),
                  "write references as name:version,label=value")
        if label in labels:
            _fail(field, "label %s is given twice in %s" % (_show(label), _show(ref)),
                  "give each label once")
        labels[label] = label_value
    return name, normalize_labels(labels, field)


# ---------------------------------------------------------------- manifest parsing

def _reject_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidInput("manifest: duplicate key %s in a JSON object; give each key once"
                               % _show(key), key)
        obj[key] = value
    return obj


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def _load_json(data):
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput("manifest: not UTF-8 (%s); save the manifest as UTF-8 JSON"
                               % error, "manifest") from None
    if isinstance(data, str):
        try:
            return json.loads(data, object_pairs_hook=_reject_duplicate_keys,
                              parse_constant=_reject_constant)
        except ValueError as error:
            raise InvalidInput("manifest: not valid JSON: %s; fix the JSON syntax" % error,
                               "manifest") from None
        except RecursionError:
            raise InvalidInput("manifest: the JSON is nested too deeply; an image manifest "
                               "needs only a few levels", "manifest") from None
    if isinstance(data, dict):
        try:
            return json.loads(json.dumps(data, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as error:
            raise InvalidInput("manifest: not plain JSON data: %s" % error, "manifest") from None
    raise InvalidInput("manifest: expected JSON text or an object, got %s" % _json_type(data),
                       "manifest")


def parse_image_manifest(data):
    """Validate an ImageManifest (bytes, str or dict) and return it as a plain JSON dict.

    Unknown top-level fields are kept untouched, as the reference code ignores them.
    """
    manifest = _load_json(data)
    if not isinstance(manifest, dict):
        _fail("manifest", "expected a JSON object, got %s" % _json_type(manifest),
              "an image manifest is a JSON object with acKind, acVersion and name")
    _check_kind_and_version(manifest)
    validate_identifier(_required(manifest, "name", ""), "name")
    if manifest.get("labels") is not None:
        normalize_labels(_require_list(manifest["labels"], "labels"), "labels")
    if manifest.get("app") is not None:
        _check_app(manifest["app"], "app")
    if manifest.get("dependencies") is not None:
        _check_dependencies(manifest["dependencies"], "dependencies")
    if manifest.get("pathWhitelist") is not None:
        for index, path in enumerate(_require_list(manifest["pathWhitelist"], "pathWhitelist")):
            _require_absolute_path(path, "pathWhitelist[%d]" % index)
    if manifest.get("annotations") is not None:
        _check_annotations(manifest["annotations"], "annotations")
    return manifest


def _required(obj, key, field):
    if key not in obj or obj[key] is None:
        _fail(_join(field, key), "missing", "this field is required")
    return obj[key]


def _check_kind_and_version(manifest):
    kind = _require_str(_required(manifest, "acKind", ""), "acKind")
    if kind != "ImageManifest":
        _fail("acKind", "%s is not an image manifest" % _show(kind), 'use "ImageManifest"')
    version = _require_str(_required(manifest, "acVersion", ""), "acVersion")
    match = re.fullmatch(_SEMVER_RE, version)
    if not match:
        _fail("acVersion", "%s is not a semantic version" % _show(version),
              'use a version such as "%s"' % AC_VERSION)
    if int(match.group(1)) != AC_MAJOR_VERSION:
        _fail("acVersion", "appc %s is incompatible with this runtime (appc %s)"
              % (version, AC_VERSION), "use an image written for appc 0.x")


def _check_app(app, field):
    _require_object(app, field)
    exec_ = app.get("exec")
    if exec_ is not None:
        _check_exec(exec_, _join(field, "exec"), allow_empty=True)
    for key in ("user", "group"):
        value = _require_str(_required(app, key, field), _join(field, key))
        if not value:
            _fail(_join(field, key), "empty", "give a user/group name, a number or a path")
        _no_nul(value, _join(field, key))
    for key in ("supplementaryGIDs", "supplementaryGids"):
        if app.get(key) is not None:
            for index, gid in enumerate(_require_list(app[key], _join(field, key))):
                _require_int(gid, "%s.%s[%d]" % (field, key, index), 0, 2 ** 32 - 1)
    if app.get("eventHandlers") is not None:
        _check_event_handlers(app["eventHandlers"], _join(field, "eventHandlers"))
    if app.get("workingDirectory"):
        _require_absolute_path(app["workingDirectory"], _join(field, "workingDirectory"))
    if app.get("environment") is not None:
        _check_environment(app["environment"], _join(field, "environment"))
    if app.get("isolators") is not None:
        check_isolators(app["isolators"], _join(field, "isolators"))
    if app.get("mountPoints") is not None:
        _check_mount_points(app["mountPoints"], _join(field, "mountPoints"))
    if app.get("ports") is not None:
        _check_ports(app["ports"], _join(field, "ports"))
    for key in ("userAnnotations", "userLabels"):
        if app.get(key) is not None:
            _check_string_map(app[key], _join(field, key))


def _check_exec(argv, field, allow_empty):
    _require_list(argv, field)
    if not argv and not allow_empty:
        _fail(field, "empty command", "give at least the program to run")
    for index, arg in enumerate(argv):
        _no_nul(_require_str(arg, "%s[%d]" % (field, index)), "%s[%d]" % (field, index))
    if argv and not argv[0]:
        _fail(field + "[0]", "empty program name", "give the program to run")


def _check_event_handlers(handlers, field):
    seen = set()
    for index, handler in enumerate(_require_list(handlers, field)):
        where = "%s[%d]" % (field, index)
        _require_object(handler, where)
        name = _require_str(_required(handler, "name", where), where + ".name")
        if name not in EVENT_HANDLER_NAMES:
            _fail(where + ".name", "unknown event handler %s" % _show(name),
                  "use %s" % " or ".join(EVENT_HANDLER_NAMES))
        if name in seen:
            _fail(where + ".name", "a second %s handler" % _show(name), "give each handler once")
        seen.add(name)
        _check_exec(_required(handler, "exec", where), where + ".exec", allow_empty=False)


def _check_environment(variables, field):
    seen = set()
    for index, variable in enumerate(_require_list(variables, field)):
        where = "%s[%d]" % (field, index)
        _require_object(variable, where)
        name = _require_str(_required(variable, "name", where), where + ".name")
        if not re.fullmatch(_ENV_NAME_RE, name):
            _fail(where + ".name", "%s is not a valid environment variable name" % _show(name),
                  "use letters, digits, '_', '.' or '-', starting with a letter or '_'")
        if name in seen:
            _fail(where + ".name", "duplicate variable %s" % _show(name), "give each variable once")
        seen.add(name)
        _no_nul(_require_str(_required(variable, "value", where), where + ".value"),
                where + ".value")


def _check_mount_points(mount_points, field):
    seen = set()
    for index, mount in enumerate(_require_list(mount_points, field)):
        where = "%s[%d]" % (field, index)
        _require_object(mount, where)
        name = validate_acname(_required(mount, "name", where), where + ".name")
        if name in seen:
            _fail(where + ".name", "duplicate mount point %s" % _show(name), "give each name once")
        seen.add(name)
        _require_absolute_path(_required(mount, "path", where), where + ".path")
        if mount.get("readOnly") is not None:
            _require_bool(mount["readOnly"], where + ".readOnly")


def _check_ports(ports, field):
    seen = set()
    for index, port in enumerate(_require_list(ports, field)):
        where = "%s[%d]" % (field, index)
        _require_object(port, where)
        name = validate_acname(_required(port, "name", where), where + ".name")
        if name in seen:
            _fail(where + ".name", "duplicate port %s" % _show(name), "give each port name once")
        seen.add(name)
        protocol = _require_str(_required(port, "protocol", where), where + ".protocol")
        if not re.fullmatch(_PROTOCOL_RE, protocol):
            _fail(where + ".protocol", "%s is not a protocol name" % _show(protocol),
                  "use tcp or udp")
        number = _require_int(_required(port, "port", where), where + ".port", 1, 65535)
        count = port.get("count")
        if count is not None:
            _require_int(count, where + ".count", 1, 65535)
            if number + count - 1 > 65535:
                _fail(where + ".count", "ports %d..%d go past 65535" % (number, number + count - 1),
                      "lower the count or the port")
        if port.get("socketActivated") is not None:
            _require_bool(port["socketActivated"], where + ".socketActivated")


def _check_string_map(value, field):
    _require_object(value, field)
    for key, item in value.items():
        _require_str(item, _join(field, key))


def _check_dependencies(dependencies, field):
    for index, dependency in enumerate(_require_list(dependencies, field)):
        where = "%s[%d]" % (field, index)
        _require_object(dependency, where)
        validate_identifier(_required(dependency, "imageName", where), where + ".imageName")
        if dependency.get("imageID") is not None:
            validate_image_id(dependency["imageID"], where + ".imageID")
        if dependency.get("labels") is not None:
            normalize_labels(_require_list(dependency["labels"], where + ".labels"),
                             where + ".labels")
        if dependency.get("size") is not None:
            _require_int(dependency["size"], where + ".size", 0)


def _check_annotations(annotations, field):
    seen = set()
    for index, annotation in enumerate(_require_list(annotations, field)):
        where = "%s[%d]" % (field, index)
        _require_object(annotation, where)
        name = validate_identifier(_required(annotation, "name", where), where + ".name")
        if name in seen:
            _fail(where + ".name", "duplicate annotation %s" % _show(name),
                  "give each annotation once")
        seen.add(name)
        value = _require_str(_required(annotation, "value", where), where + ".value")
        _check_known_annotation(name, value, where + ".value")


def _check_known_annotation(name, value, field):
    if name == "created":
        _check_rfc3339(value, field)
    elif name in ("homepage", "documentation"):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            _fail(field, "%s is not an http(s) URL" % _show(value),
                  "use a URL such as https://example.com/")
    elif name == "appc.io/executor/supports-systemd-notify" and value not in ("true", "false"):
        _fail(field, "%s is not a boolean" % _show(value), 'use "true" or "false"')


def _check_rfc3339(value, field):
    match = re.fullmatch(_RFC3339_RE, value)
    try:
        if not match:
            raise ValueError(value)
        year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
        offset_hour, offset_minute = (int(part or 0) for part in match.groups()[6:])
        # A leap second (:60) is valid RFC 3339 but not a valid datetime.
        datetime.datetime(year, month, day, hour, minute, min(second, 59))
        if second > 60 or offset_hour > 23 or offset_minute > 59:
            raise ValueError(value)
    except ValueError:
        _fail(field, "%s is not an RFC 3339 timestamp" % _show(value),
              "use a time such as 2016-01-02T15:04:05Z")


# ---------------------------------------------------------------- isolators

def check_isolators(isolators, field):
    seen = {}
    for index, isolator in enumerate(_require_list(isolators, field)):
        where = "%s[%d]" % (field, index)
        _require_object(isolator, where)
        name = validate_identifier(_required(isolator, "name", where), where + ".name")
        check = _ISOLATOR_CHECKS.get(name)
        if check is None:
            _fail(where + ".name", "unknown isolator %s" % _show(name),
                  "use one of: %s" % ", ".join(sorted(_ISOLATOR_CHECKS)))
        if name in seen:
            _fail(where + ".name", "duplicate isolator %s" % _show(name), "give each isolator once")
        seen[name] = where
        if "value" not in isolator:
            _fail(where + ".value", "missing", "give the isolator's value")
        check(isolator["value"], where + ".value")
    for first, second in _CONFLICTING_ISOLATORS:
        if first in seen and second in seen:
            _fail(seen[second] + ".name", "%s conflicts with %s" % (second, first),
                  "keep only one of them")


def _check_resource(value, field):
    _require_object(value, field)
    if "request" not in value and "limit" not in value:
        _fail(field, "neither request nor limit", "give a limit, a request or both")
    for key in ("request", "limit"):
        if key in value:
            _check_quantity(value[key], _join(field, key))


def _check_default_limit(value, field):
    _require_object(value, field)
    if value.get("default") is not True:
        _fail(_join(field, "default"), "must be true", 'set "default": true')
    if "limit" in value:
        _check_quantity(value["limit"], _join(field, "limit"))


def _check_quantity(value, field):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            _fail(field, "negative quantity", "use a positive amount")
        return
    _require_str(value, field)
    if not re.fullmatch(_QUANTITY_RE, value):
        _fail(field, "%s is not a resource quantity" % _show(value),
              'use a value like "500m", "1G" or "512Mi"')


def _required_set(value, field, what):
    """The non-empty list value["set"] of an isolator."""
    _require_object(value, field)
    names = _require_list(_required(value, "set", field), _join(field, "set"))
    if not names:
        _fail(_join(field, "set"), "empty set", "name at least one %s" % what)
    return names


def _check_capability_set(value, field):
    names = _required_set(value, field, "capability")
    for index, name in enumerate(names):
        where = "%s.set[%d]" % (field, index)
        if not re.fullmatch(_CAPABILITY_RE, _require_str(name, where)):
            _fail(where, "%s is not a capability name" % _show(name),
                  "use names like CAP_NET_BIND_SERVICE")


def _check_seccomp(value, field):
    names = _required_set(value, field, "syscall or @group")
    for index, name in enumerate(names):
        _require_str(name, "%s.set[%d]" % (field, index))
    if value.get("errno") is not None:
        _require_str(value["errno"], _join(field, "errno"))


def _check_selinux(value, field):
    _require_object(value, field)
    for key in ("user", "role", "type", "level"):
        if not _require_str(_required(value, key, field), _join(field, key)):
            _fail(_join(field, key), "empty", "give every part of the SELinux context")


def _check_apparmor(value, field):
    _require_object(value, field)
    if not _require_str(_required(value, "profile", field), _join(field, "profile")):
        _fail(_join(field, "profile"), "empty", "name a loaded AppArmor profile")


def _check_oom_score_adj(value, field):
    _require_int(value, field, -1000, 1000)


def _check_cpu_shares(value, field):
    _require_int(value, field, 2, 262144)


_ISOLATOR_CHECKS = {
    "resource/cpu": _check_resource,
    "resource/memory": _check_resource,
    "resource/block-bandwidth": _check_default_limit,
    "resource/block-iops": _check_default_limit,
    "resource/network-bandwidth": _check_default_limit,
    "os/linux/capabilities-retain-set": _check_capability_set,
    "os/linux/capabilities-remove-set": _check_capability_set,
    "os/linux/no-new-privileges": _require_bool,
    "os/linux/seccomp-remove-set": _check_seccomp,
    "os/linux/seccomp-retain-set": _check_seccomp,
    "os/linux/selinux-context": _check_selinux,
    "os/linux/apparmor-profile": _check_apparmor,
    "os/linux/oom-score-adj": _check_oom_score_adj,
    "os/linux/cpu-shares": _check_cpu_shares,
    "os/unix/sysctl": _check_string_map,
}

_CONFLICTING_ISOLATORS = (
    ("os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set"),
    ("os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set"),
)


# ---------------------------------------------------------------- output

def serialize_manifest(manifest):
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")
