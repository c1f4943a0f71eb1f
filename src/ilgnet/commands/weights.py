"""`ilgnet weights` (`make weights`): list, fetch and check the registry's pretrained models (ilgnet.weights)."""
from __future__ import annotations

from pathlib import Path

from ilgnet import defaults
from ilgnet.errors import MissingFile


def register(subparsers) -> None:
    parser = subparsers.add_parser("weights", help="download and verify pretrained models (registry: weights.json)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the registry, and which files are present under --dest")
    fetching = actions.add_parser("fetch", help="download (resuming, verified, atomic) one or more registry entries")
    fetching.add_argument("names", nargs="+", metavar="NAME")
    checking = actions.add_parser("check", help="run every check on a file you downloaded yourself")
    checking.add_argument("name", metavar="NAME")
    checking.add_argument("--file", type=Path, help="the file to check (default: DEST/<registry file name>)")
    for sub in (listing, fetching, checking):
        sub.add_argument("--dest", type=Path, default=defaults.MODELS_DIR, help="models folder (default: models/)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.errors import lookup
    from ilgnet.weights import REGISTRY, fetch, load_registry, verify

    registry = load_registry()
    if args.action == "list":
        for entry in registry.values():
            present = "present" if (args.dest / entry.file).exists() else "absent"
            checks = ", ".join(c for c, v in [("sha1", entry.sha1), ("sha256", entry.sha256),
                                               (f"{entry.size:,} bytes" if entry.size else "", entry.size),
                                               (f"fits {entry.fits_variant}", entry.fits_variant)] if v)
            print(f"{entry.name:18} {present:8} {args.dest / entry.file}\n{'':18} {entry.about}\n"
                  f"{'':18} {entry.url}\n{'':18} checks: {checks}")
        return 0
    if args.action == "fetch":
        for name in args.names:
            path = args.dest / lookup(registry, name, f"weights entry of {REGISTRY.name}").file
            present = path.exists()
            fetch(name, args.dest, registry=registry)
            print(f"{name}: {path} {'is present and checks out' if present else 'downloaded and verified'}")
        return 0
    entry = lookup(registry, args.name, f"weights entry of {REGISTRY.name}")
    path = args.file or args.dest / entry.file
    if not path.is_file():
        raise MissingFile(f"{path} does not exist")
    verify(entry, path)
    print(f"{path}: OK as {entry.name}")
    return 0
