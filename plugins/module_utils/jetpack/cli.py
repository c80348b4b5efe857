"""`jetpack`: the runtime core for people on a host.

Run it as `python3 -m jetpack.cli` with the collection's plugins/module_utils on PYTHONPATH
(the host role installs a `jetpack` wrapper that does this).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import aci, appc, discovery, fetch, images, pods
from .errors import InvalidInput, JetpackError, NotFound
from .store import READY, SEALED, Store, read_json, resolve_config


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except JetpackError as error:
        say("jetpack: %s" % error, stream=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jetpack", description="App Container runtime on ZFS")
    parser.add_argument("--store-root", help="store root dataset (default: host configuration)")
    parser.add_argument("--store-mountpoint", help="store mountpoint (default: host configuration)")
    commands = parser.add_subparsers(metavar="COMMAND")

    listing = commands.add_parser("images", help="list images")
    listing.add_argument("-q", "--quiet", action="store_true", help="IDs only")
    listing.add_argument("--json", action="store_true", help="full records as JSON")
    listing.set_defaults(run=cmd_images)

    show = commands.add_parser("show-image", help="show one image as JSON")
    show.add_argument("image", help="ID, or name[:version][,label=value...]")
    show.set_defaults(run=cmd_show_image)

    importing = commands.add_parser("import", help="import an ACI from a path or URL")
    importing.add_argument("source")
    importing.add_argument("--id", help="expected image ID")
    importing.add_argument("--allow-http", action="store_true")
    importing.add_argument("--allow-setuid", action="store_true")
    _progress_argument(importing)
    importing.set_defaults(run=cmd_import)

    fetching = commands.add_parser("fetch", help="find an image by name (appc discovery), verify its signature, import it")
    fetching.add_argument("image", help="name[:version][,label=value...]")
    fetching.add_argument("--allow-http", action="store_true", help="allow plain http discovery and downloads")
    fetching.add_argument("--no-verify", action="store_true",
                          help="import without a signature from a trusted key (see jetpack_trust)")
    _progress_argument(fetching)
    fetching.set_defaults(run=cmd_fetch)

    export = commands.add_parser("export", help="write an image as an ACI")
    export.add_argument("image")
    export.add_argument("path")
    export.add_argument("--flat", action="store_true")
    export.add_argument("--compression", default="gzip", choices=["gzip", "bzip2", "xz", "none"])
    export.set_defaults(run=cmd_export)

    remove = commands.add_parser("destroy-image", help="remove an image no pod or image uses")
    remove.add_argument("image")
    remove.set_defaults(run=cmd_destroy_image)

    pack = commands.add_parser("pack", help="write an ACI from a rootfs directory and a manifest")
    pack.add_argument("rootfs")
    pack.add_argument("manifest")
    pack.add_argument("output")
    pack.add_argument("--compression", default="gzip", choices=["gzip", "bzip2", "xz", "none"])
    pack.add_argument("--owner", help="force UID:GID on every entry, e.g. 0:0")
    pack.set_defaults(run=cmd_pack)

    pods_list = commands.add_parser("list", help="list pods")
    pods_list.add_argument("-q", "--quiet", action="store_true", help="names only")
    pods_list.add_argument("--json", action="store_true", help="every pod as `show` gives it, with its images' labels")
    pods_list.set_defaults(run=cmd_list)

    show_pod = commands.add_parser("show", help="show a pod and its apps as JSON")
    show_pod.add_argument("pod")
    show_pod.set_defaults(run=cmd_show)

    logs = commands.add_parser("logs", help="print an app's output")
    logs.add_argument("pod", help="POD or POD:APP (the pod's only app when APP is omitted)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what the app writes")
    logs.set_defaults(run=cmd_logs)

    execute = commands.add_parser("exec", help="run a command in an app, as the app runs")
    _user_arguments(execute)
    execute.add_argument("pod", help="POD or POD:APP")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.set_defaults(run=cmd_exec)

    put = commands.add_parser("put", help="write stdin to a file inside an app, as the app's user")
    _user_arguments(put)
    put.add_argument("--mode", type=_octal, help="set this mode, e.g. 0644 (default: new files get 0644)")
    put.add_argument("pod", help="POD or POD:APP")
    put.add_argument("path", help="absolute path inside the app")
    put.set_defaults(run=cmd_put)

    get = commands.add_parser("get", help="print a file inside an app, read as the app's user")
    _user_arguments(get)
    get.add_argument("pod", help="POD or POD:APP")
    get.add_argument("path", help="absolute path inside the app")
    get.set_defaults(run=cmd_get)

    boot = commands.add_parser("boot", help="start the pods marked to start at boot, in dependency order")
    boot.set_defaults(run=cmd_boot)

    console = commands.add_parser("console", help="a root shell in an app")
    console.add_argument("pod", help="POD or POD:APP")
    console.set_defaults(run=cmd_console)

    for verb in ("start", "stop"):
        command = commands.add_parser(verb, help="%s a pod" % verb)
        command.add_argument("pod")
        command.set_defaults(run=cmd_start if verb == "start" else cmd_stop)

    gc = commands.add_parser("gc", help="remove what interrupted operations left behind")
    gc.set_defaults(run=cmd_gc)
    return parser


def _user_arguments(parser) -> None:
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--root", action="store_true", help="as root instead of the app's user")
    who.add_argument("-u", "--user", help="as this user of the image (name or number) instead of the app's")


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError("%r is no octal mode such as 0644" % text)
    return mode


def _store(args) -> Store:
    return Store(resolve_config(args.store_root, args.store_mountpoint))


def _select(store: Store, reference: str) -> images.Image:
    if reference.startswith("sha512-"):
        found = images.find_images(store, image_id=reference)
    else:
        name, labels = appc.parse_image_ref(reference)
        found = images.find_images(store, name, labels)
    if not found:
        raise NotFound("no image %s in the store; see `jetpack images`" % reference)
    return found[-1]


def cmd_images(args) -> None:
    found = images.list_images(_store(args))
    if args.json:
        say(json.dumps([image.info() for image in found], indent=1, sort_keys=True))
        return
    if args.quiet:
        say("\n".join(image.id for image in found))
        return
    rows = [("ID", "NAME", "LABELS")] + [
        (image.id[:19], image.name, ",".join("%s=%s" % kv for kv in sorted(image.labels.items())))
        for image in found]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        say("%-*s  %-*s  %s" % (width[0], row[0], width[1], row[1], row[2]))


def cmd_show_image(args) -> None:
    say(json.dumps(_select(_store(args), args.image).info(), indent=1, sort_keys=True))


def cmd_import(args) -> None:
    request = images.ImportRequest(source=args.source, image_id=args.id, allow_http=args.allow_http,
                                   allow_setuid=args.allow_setuid, progress=_progress_printer(args))
    image, changed = images.import_image(_store(args), request)
    say("%s %s%s" % (image.id, image.name, "" if changed else " (already present)"))


def cmd_fetch(args) -> None:
    store = _store(args)
    name, labels = appc.parse_image_ref(args.image)
    found = images.find_images(store, name, labels)
    if found:
        say("%s %s (already present)" % (found[-1].id, found[-1].name))
        return
    with discovery.fetch_image(store, name, labels, allow_http=args.allow_http, verify_signature=not args.no_verify,
                               progress=_progress_printer(args)) as fetched:
        image, changed = images.import_image(store, images.ImportRequest(
            source=fetched.path, image_id=fetched.image_id, name=name, labels=labels,
            origin={"location": fetched.url, "signer": fetched.signer}))
    say("%s %s%s, signed by %s" % (image.id, image.name, "" if changed else " (already present)",
                                   fetched.signer or "nobody (--no-verify)"))


def _progress_argument(parser) -> None:
    parser.add_argument("--progress", action="store_true", default=None,
                        help="show download progress on stderr (the default when stderr is a terminal)")


def _progress_printer(args):
    """A progress callback redrawing one stderr line at most 5 times a second; None when not wanted."""
    if not (args.progress or (args.progress is None and sys.stderr.isatty())):
        return None
    last = [0.0]

    def show(url, done, total):
        finished = total is not None and done >= total
        if finished or time.monotonic() - last[0] >= 0.2:
            last[0] = time.monotonic()
            sys.stderr.write("\r%s\033[K%s" % (fetch.progress_text(url, done, total), "\n" if finished else ""))
            sys.stderr.flush()
    return show


def cmd_export(args) -> None:
    store = _store(args)
    changed, image_id = images.export_image(store, _select(store, args.image), os.path.abspath(args.path),
                                            flat=args.flat, compression=args.compression)
    say(image_id)


def cmd_destroy_image(args) -> None:
    store = _store(args)
    for image_id in images.remove_images(store, [_select(store, args.image)]):
        say("removed %s" % image_id)


def cmd_pack(args) -> None:
    with open(args.manifest, "rb") as f:
        manifest = appc.parse_image_manifest(f.read())
    owner = tuple(int(x) for x in args.owner.split(":")) if args.owner else None
    say(aci.write_aci(args.rootfs, appc.serialize_manifest(manifest), args.output,
                      compression=args.compression, owner=owner))


def cmd_gc(args) -> None:
    store = _store(args)
    with store.lock():
        for name in store.collect_garbage("images", SEALED) + pods.collect_garbage(store):
            say("removed %s" % name)
        for name in store.collect_garbage("volumes", READY):
            say("removed %s" % name)


# --- pods ---------------------------------------------------------------------------------------
def _pod_and_app(store: Store, reference: str) -> tuple:
    """(pod, app record) from POD or POD:APP; APP may be omitted for a one-app pod."""
    name, _sep, app_name = reference.partition(":")
    pod = pods.find_pod(store, name)
    if pod is None:
        raise NotFound("no pod %s; see `jetpack list`" % name)
    apps = pod.record["apps"]
    if not app_name and len(apps) == 1:
        return pod, apps[0]
    for app in apps:
        if app["name"] == app_name:
            return pod, app
    raise NotFound("pod %s has apps %s; name one as %s:APP"
                   % (name, ", ".join(a["name"] for a in apps), name))


def cmd_list(args) -> None:
    store = _store(args)
    found = pods.list_pods(store)
    if args.json:
        say(json.dumps(_listing(store, found), indent=1, sort_keys=True))
        return
    if args.quiet:
        say("\n".join(pod.name for pod in found))
        return
    rows = [("NAME", "STATE", "UUID", "APPS")] + [
        (p.name, "running" if p.running() else "stopped", p.uuid, ",".join(a["name"] for a in p.record["apps"]))
        for p in found]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        say("%-*s  %-*s  %-*s  %s" % (width[0], row[0], width[1], row[1], width[2], row[2], row[3]))


def _listing(store: Store, found: list) -> list:
    """pod.info() of each pod, each app with its image's labels (the inventory groups by them)."""
    labels = {image.id: image.labels for image in images.list_images(store)}
    listing = []
    for pod in found:
        info = pod.info()
        for app in info["apps"]:
            app["image_labels"] = labels.get(app["image_id"], {})
        listing.append(info)
    return listing


def cmd_show(args) -> None:
    pod = pods.find_pod(_store(args), args.pod)
    if pod is None:
        raise NotFound("no pod %s; see `jetpack list`" % args.pod)
    say(json.dumps(pod.info(), indent=1, sort_keys=True))


def cmd_logs(args) -> None:
    pod, app = _pod_and_app(_store(args), args.pod)
    path = os.path.join(pod.record["pod_dir"], "logs", app["name"] + ".log")
    position = _copy_from(path, 0)
    while args.follow:
        time.sleep(0.25)
        position = _copy_from(path, position)


def _copy_from(path: str, position: int) -> int:
    """Copy path from position to stdout; start again at 0 when the log was rotated (it shrank)."""
    try:
        with open(path, "rb") as log:
            if os.fstat(log.fileno()).st_size < position:
                position = 0
            log.seek(position)
            data = log.read()
    except FileNotFoundError:
        return 0
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return position + len(data)


def cmd_exec(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise InvalidInput("give the command to run: jetpack exec POD[:APP] -- COMMAND...")
    return _run_in(args, command)


def cmd_console(args) -> int:
    args.root, args.user = True, None
    return _run_in(args, ["/bin/sh", "-l"])


def _run_in(args, argv) -> int:
    """Run argv in a running pod's app with this terminal; its exit status becomes ours."""
    from . import execution
    engine, pod, context, app = _running_app(args)
    pid = execution.spawn(engine, pod.record, context, app, argv, as_root=args.root, stdin=0, stdout=1, stderr=2)
    _pid, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


def cmd_put(args) -> None:
    from . import transfer
    engine, pod, context, app = _running_app(args)
    transfer.put(engine, pod.record, context, app, args.path, 0, as_root=args.root, mode=args.mode)


def cmd_boot(args) -> int:
    from . import boot
    return 0 if boot.start_boot_pods(_store(args), say) else 1


def cmd_get(args) -> None:
    from . import transfer
    engine, pod, context, app = _running_app(args)
    sys.stdout.flush()
    transfer.get(engine, pod.record, context, app, args.path, 1, as_root=args.root)


def _running_app(args) -> tuple:
    """(engine, pod, context, app) for args.pod, the app as args.user or args.root runs in it."""
    from . import engines
    pod, app = _pod_and_app(_store(args), args.pod)
    if not pod.running():
        raise JetpackError("pod %s is not running; start it with `jetpack start %s`" % (pod.name, pod.name))
    return engines.for_host(), pod, read_json(pod.run_file("context.json")), _as_user(app, args.user, args.root)


def _as_user(app: dict, user, as_root: bool) -> dict:
    """The app as it runs, as `user` (its passwd entry's group and groups) when given, and with HOME
    the user's home in the image unless the app sets HOME: what a shell and Ansible expect."""
    from . import execution
    if user:
        app = dict(app, user=user, group="", supplementary_gids=[])
    uid = 0 if as_root else execution.resolve_credentials(app).uid
    environment = dict(app.get("environment") or {})
    environment.setdefault("HOME", execution.home_directory(app["rootfs"], uid))
    return dict(app, environment=environment)


def cmd_start(args) -> None:
    store = _store(args)
    pod = pods.find_pod(store, args.pod)
    if pod is None:
        raise NotFound("no pod %s; see `jetpack list`" % args.pod)
    say("started %s" % pod.name if pods.start_supervised(store, pod) else "%s was running" % pod.name)


def cmd_stop(args) -> None:
    from . import engines
    pod = pods.find_pod(_store(args), args.pod)
    if pod is None:
        raise NotFound("no pod %s; see `jetpack list`" % args.pod)
    say("stopped %s" % pod.name if pods.stop(pod, engines.for_host()) else "%s was not running" % pod.name)


def say(text, stream=None) -> None:
    (stream or sys.stdout).write("%s\n" % text)


if __name__ == "__main__":
    raise SystemExit(main())
