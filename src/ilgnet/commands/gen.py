"""`ilgnet gen` (`make prototxt`): writes the committed net and solver prototxt files from their generators."""
from __future__ import annotations

import sys
from pathlib import Path

from ilgnet.commands.arguments import output_folder


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gen", help="write prototxt/<variant>/{train_val,deploy}.prototxt and solvers/<profile>.prototxt",
        description="Writes the net and solver files the repository commits, from the generators that also build "
                    "every net `ilgnet train` runs: prototxt/<variant>/train_val.prototxt and deploy.prototxt for "
                    "each net variant (see `ilgnet nets`), and solvers/<profile>.prototxt for each solver profile "
                    "(the paper's Table 1 and the published ones). Run it after changing a variant or a profile, "
                    "and commit what changed. Each file is replaced whole.",
        epilog="examples:\n"
               "  ilgnet gen                     # rewrite prototxt/ and solvers/ in this checkout\n"
               "  ilgnet gen --out /tmp/nets     # write them elsewhere, to compare\n"
               "  make prototxt                  # the same as `ilgnet gen`")
    parser.add_argument("--out", type=output_folder, default=Path("."),
                        help="repository root to write into (default: .)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.fileio import atomic_write_text
    from ilgnet.nets.generated import generated_files

    files, caught = generated_files()
    for message in caught:
        print(f"ilgnet gen: warning: {message}", file=sys.stderr)
    for relative, text in files.items():
        path = args.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        print(f"wrote {path}")
    return 0
