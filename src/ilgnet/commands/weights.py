"""`ilgnet weights` (`make weights`): list, fetch, check and install the registry's pretrained models
(ilgnet.zoo.registry)."""
from __future__ import annotations

from ilgnet import defaults
from ilgnet.commands.arguments import INPUT, OUTPUT, VALUE, Arg, existing_file, output_folder, refuse_overwrites

ARGS = (Arg("NAME", "name", VALUE, about="entry"), Arg("NAME", "names", VALUE, about="entry"),
        Arg("FILE", "file", INPUT, "the file to install"), Arg("--dest", "dest", OUTPUT, "models/"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights", help="download and verify pretrained models (registry: weights.json)",
        description="The registry of pretrained files: the ImageNet models the variants fine-tune from "
                    "(bvlc_googlenet, inception-v3, inception-v4) and the authors' trained ILGNet models "
                    "(ilgnet-ava1, ilgnet-ava2) with their mean images and training lists. Each entry has its "
                    "source and the strongest checks known (checksums, size, the layers of the net it must fit). "
                    "list shows them, fetch downloads and verifies, check verifies a file you downloaded yourself, "
                    "install checks one and puts it in place.",
        epilog="examples:\n"
               "  ilgnet weights list\n"
               "  ilgnet weights fetch bvlc_googlenet ilgnet-ava1 ilgnet-ava2\n"
               "  ilgnet weights install ilgnet-ava2 ~/Downloads/ILGnet-AVA2.caffemodel\n"
               "  make weights                      # the same as the fetch above")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="the registry, and which files are present under --dest",
        description="Lists every registry entry: whether its file is present in DEST, where it is downloaded from, "
                    "what it is and which checks it gets.",
        epilog="examples:\n  ilgnet weights list\n  ilgnet weights list --dest /data/models")
    fetching = actions.add_parser(
        "fetch", help="download (resuming, verified, atomic) one or more registry entries",
        description="Downloads each named entry into DEST, with the files it comes with (a trained model's mean "
                    "image and training list) first. An interrupted download resumes; a file is checked before it "
                    "gets its final name, so a damaged or partial download never looks finished. A file already "
                    "present is checked, not downloaded again.",
        epilog="examples:\n  ilgnet weights fetch ilgnet-ava2\n"
               "  ilgnet weights fetch bvlc_googlenet --dest /data/models")
    fetching.add_argument("names", nargs="+", metavar="NAME")
    checking = actions.add_parser(
        "check", help="run every check on a file you downloaded yourself",
        description="Runs every check the registry has for entry NAME (whether its layers fit the net, its size "
                    "and checksums) on a file, by default the one in DEST, and says what is wrong with it: an HTML "
                    "page saved instead of the model, a truncated download, another net's weights.",
        epilog="examples:\n  ilgnet weights check ilgnet-ava2\n"
               "  ilgnet weights check ilgnet-ava2 --file ~/Downloads/ILGnet-AVA2.caffemodel")
    checking.add_argument("name", metavar="NAME")
    checking.add_argument("--file", type=existing_file, help="the file to check (default: DEST/<registry file name>)")
    installing = actions.add_parser(
        "install", help="check a file you downloaded yourself and put it in place",
        description="For a file downloaded by hand (a browser, another machine): runs every check of `ilgnet "
                    "weights check`, then copies the file into DEST under the registry's name, so that the model "
                    "names (ilgnet-ava1, ilgnet-ava2) find it. FILE itself is left as it is.",
        epilog="example:\n  ilgnet weights install ilgnet-ava2 ~/Downloads/ILGnet-AVA2.caffemodel")
    installing.add_argument("name", metavar="NAME")
    installing.add_argument("file", type=existing_file, metavar="FILE", help="the file (it is copied, not moved)")
    for sub in (listing, fetching, checking, installing):
        sub.add_argument("--dest", type=output_folder, default=defaults.MODELS_DIR,
                         help="models folder (default: models/)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.fileio import require
    from ilgnet.zoo.registry import fetch, get_entry, install, load_registry, verify

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
        entries = [get_entry(name, registry) for name in args.names]
        for entry in entries:
            path = args.dest / entry.file
            present = path.exists()
            fetch(entry.name, args.dest, registry=registry)
            print(f"{entry.name}: {path} {'is present and checks out' if present else 'downloaded and verified'}")
        return 0
    entry = get_entry(args.name, registry)
    if args.action == "install":
        path = args.dest / entry.file
        if not (path.exists() and path.samefile(args.file)):          # else it is in place already
            refuse_overwrites(ARGS, args, paths={"dest": path})
        path = install(args.name, args.file, args.dest, registry=registry)
        print(f"{args.file}: OK as {entry.name}; installed as {path}")
        for companion in entry.companions:
            if not (args.dest / registry[companion].file).is_file():
                print(f"{entry.name} is used with {companion}, which is not in {args.dest} yet: `ilgnet weights fetch "
                      f"{companion}`, or install a copy you fetched")
        return 0
    path = args.file or args.dest / entry.file
    require(path)
    verify(entry, path)
    print(f"{path}: OK as {entry.name}")
    return 0
