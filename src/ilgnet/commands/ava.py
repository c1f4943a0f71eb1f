"""`ilgnet ava` (`make ava`): AVA fetched from a pinned mirror and verified (ilgnet.data.ava_fetch), or a copy
from anywhere verified photo by photo (ilgnet.data.manifest)."""
from __future__ import annotations

import sys
from pathlib import Path

from ilgnet.commands.arguments import INPUT, VALUE, Arg, existing_file, existing_folder, integer, output_folder

ARGS = (Arg("--mirror", "mirror", VALUE), Arg("--mirrors", "mirrors", INPUT, "the file of more mirrors"),
        Arg("AVA_ROOT", "root", INPUT, "the copy of AVA"), Arg("--images", "images", INPUT, "the photo folder"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ava", help="fetch AVA from a pinned mirror, or verify a copy of it",
        description="AVA in the layout the other commands read (AVA_ROOT/AVA.txt, AVA_ROOT/images/<id>.jpg, "
                    "AVA_ROOT/aesthetics_image_lists/). fetch downloads a pinned public mirror's archive (its "
                    "repository, revision, size and sha256 recorded in the package), checks the disk has room "
                    "first, verifies the sha256 before extracting anything, finds AVA.txt and the photos wherever "
                    "the archive puts them, and then verifies every photo. verify checks a copy from any source: "
                    "each photo's size, sha256 and whether it decodes, in AVA_ROOT/ava-manifest.csv, with the ids "
                    "missing and corrupt listed in ava-missing.txt and ava-corrupt.txt. `ilgnet split` then leaves "
                    "out what the manifest marks unreadable.",
        epilog="examples:\n"
               "  ilgnet ava fetch --to ~/data/AVA                  # about 33 GB, then 33 GB of photos\n"
               "  ilgnet ava fetch --to ~/data/AVA --mirror aesdata --keep-archive\n"
               "  ilgnet ava verify ~/data/AVA                      # a copy from Kaggle, MEGA, a colleague\n"
               "  make ava AVA_ROOT=~/data/AVA")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetching = actions.add_parser(
        "fetch", help="download, check and extract a pinned mirror of AVA, then verify it",
        description="Downloads the mirror's archive into AVA_ROOT/.ilgnet-download with huggingface_hub (a "
                    "download that stopped resumes; HF_ENDPOINT names another Hub), checks its sha256, extracts "
                    "AVA.txt, the official lists and the photos into AVA_ROOT (a Ctrl-C leaves no half-written "
                    "photo, and the next run goes on), removes the archive unless --keep-archive, and writes the "
                    "manifest. A second run finds the copy complete, downloads nothing and verifies it again.",
        epilog="examples:\n  ilgnet ava fetch --to ~/data/AVA\n"
               "  ilgnet ava fetch --to ~/data/AVA --mirror my-copy --mirrors my-mirrors.json")
    fetching.add_argument("--to", type=output_folder, required=True, metavar="AVA_ROOT",
                          help="folder to lay AVA out in")
    fetching.add_argument("--mirror", default=None, help="which mirror (default: iqa-pytorch; `ilgnet ava mirrors` "
                                                         "lists them)")
    fetching.add_argument("--mirrors", type=existing_file, metavar="FILE",
                          help="a JSON file of more mirrors (docs/DATA.md gives its form)")
    fetching.add_argument("--keep-archive", action="store_true",
                          help="keep the archive after a verified extraction (default: remove it)")
    verifying = actions.add_parser(
        "verify", help="check every photo of a copy of AVA and write its manifest",
        description="Reads AVA_ROOT/AVA.txt and every AVA_ROOT/images/<id>.jpg: size, sha256, whether it decodes "
                    "as `ilgnet lmdb` decodes it, width and height, into AVA_ROOT/ava-manifest.csv; the ids of "
                    "AVA.txt without a photo into ava-missing.txt, the photos that do not decode into "
                    "ava-corrupt.txt, the counts into ava-summary.json. Rows of an earlier manifest are reused for "
                    "photos unchanged since.",
        epilog="examples:\n  ilgnet ava verify ~/data/AVA\n"
               "  ilgnet ava verify ~/data/AVA --images /mnt/photos/AVA --workers 8")
    verifying.add_argument("root", type=existing_folder, metavar="AVA_ROOT", help="the copy (holding AVA.txt)")
    verifying.add_argument("--images", type=existing_folder, help="photo folder (default: AVA_ROOT/images)")
    mirrors = actions.add_parser("mirrors", help="list the pinned mirrors",
                                 description="The mirrors `ilgnet ava fetch --mirror` knows: for each, the Hub "
                                             "repository, the archive, the revision it is read at, its size and "
                                             "its sha256.",
                                 epilog="example:\n  ilgnet ava mirrors")
    mirrors.add_argument("--mirrors", type=existing_file, metavar="FILE", help="a JSON file of more mirrors")
    for sub in (fetching, verifying):
        sub.add_argument("--workers", type=integer(1), help="threads checking photos (default: one per CPU)")
    parser.set_defaults(func=run)


def _report(summary: dict) -> None:
    print(f"AVA.txt: {summary['ava_txt_rows']:,} rows; photos present: {summary['photos_present']:,}, decoding: "
          f"{summary['photos_decode']:,}; missing: {summary['missing']:,} (ids in {summary['missing_list']}); "
          f"corrupt: {summary['corrupt']:,} (ids in {summary['corrupt_list']})")
    if summary["not_in_ava_txt"]:
        print(f"{summary['not_in_ava_txt']:,} photos are not in AVA.txt (left in the manifest, unused by the splits)")
    print(f"manifest: {summary['manifest']}")


def run(args) -> int:
    from ilgnet.data import ava_fetch, manifest, mirrors
    from ilgnet.fileio import folder_lock, size_text

    if args.action == "mirrors":
        for mirror in mirrors.mirrors(args.mirrors).values():
            print(f"{mirror.name:14} {mirror.repo_type}s/{mirror.repo_id} {mirror.filename} at {mirror.revision}, "
                  f"{size_text(mirror.size)}, sha256 {mirror.sha256}"
                  + ("" if ava_fetch.FULL_COMMIT.fullmatch(mirror.revision) else
                     " (a short commit id: the download may need the full 40-hex one; docs/DATA.md)"))
        return 0
    if args.action == "verify":
        with folder_lock(args.root):
            _report(manifest.verify(args.root, images=args.images, workers=args.workers))
        return 0
    mirror = mirrors.get_mirror(args.mirror or mirrors.DEFAULT_MIRROR, args.mirrors)
    root = Path(args.to)
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root):
        if not ava_fetch.is_fetched(root, mirror):
            needed = ava_fetch.check_room(root, mirror)
            print(f"ilgnet ava fetch: {mirror.name}: {mirror.repo_id}/{mirror.filename} at {mirror.revision} "
                  f"({size_text(mirror.size)}); {root} needs up to {size_text(needed)} free", file=sys.stderr)
        done = ava_fetch.fetch(root, mirror, keep_archive=args.keep_archive)
        if done["already_fetched"]:
            print(f"{root}: {mirror.name} is fetched and extracted already; nothing downloaded, verifying the photos")
        else:
            print(f"{root}: {mirror.name} {'downloaded, ' if done['downloaded'] else ''}sha256 verified, "
                  f"{done['photos']:,} photos found ({done['written']:,} files written, {done['kept']:,} already "
                  f"there)" + (f", {done['duplicates']:,} repeated photo names skipped" if done["duplicates"] else ""))
            print(f"archive kept: {done['archive_kept']}" if done["archive_kept"] else "archive removed")
        _report(manifest.verify(root, workers=args.workers))
    return 0
