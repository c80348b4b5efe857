"""`jetpack`: the runtime core for people on a host.

Run it as `python3 -m jetpack.cli` with the collection's plugins/module_utils on PYTHONPATH
(the host role installs a `jetpack` wrapper that does this).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import aci, appc, images
from .errors import JetpackError, NotFound
from .store import SEALED, Store, resolve_config


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
    importing.set_defaults(run=cmd_import)

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

    gc = commands.add_parser("gc", help="remove what interrupted operations left behind")
    gc.set_defaults(run=cmd_gc)
    return parser


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
                                   allow_setuid=args.allow_setuid)
    image, changed = images.import_image(_store(args), request)
    say("%s %s%s" % (image.id, image.name, "" if changed else " (already present)"))


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
        for name in store.collect_garbage("images", SEALED):
            say("removed %s" % name)


def say(text, stream=None) -> None:
    (stream or sys.stdout).write("%s\n" % text)


if __name__ == "__main__":
    raise SystemExit(main())
