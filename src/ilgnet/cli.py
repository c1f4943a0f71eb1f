"""The `ilgnet` command: one entry point, a subcommand per stage of the pipeline, each in ilgnet/commands/<name>.py.

Errors the user can fix (ilgnet.errors.UserError) are printed in one line and exit 1 (a command line argparse
refuses, also one line, exits 2); anything else is a bug and keeps its traceback. Warnings are one line too,
`ilgnet COMMAND: warning: ...`. ILGNET_DEBUG=1 prints the traceback of user errors, and warnings in Python's own
format (with the line that raised them).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from ilgnet.commands import demo, doctor, export, gen, lmdb, log, nets, predict, split, test, train, weights
from ilgnet.commands.arguments import UsageError
from ilgnet.errors import UserError

# In the order of the pipeline: AVA -> split -> lmdb -> nets/gen -> train/log -> test -> weights/predict/export.
COMMANDS = [doctor, split, lmdb, gen, nets, train, log, test, weights, predict, export, demo]


class Parser(argparse.ArgumentParser):
    """argparse whose errors (a missing or malformed argument, a value its type refuses) are one line, exit 2;
    the sub-command parsers are of the same class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `ilgnet` parser with every command's subparser (each command's `register`)."""
    parser = Parser(prog="ilgnet", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs `ilgnet ARGV`; returns the exit status: 0, 1 for a user error (printed in one line), 2 for a bad argument,
    130 on Ctrl-C."""
    if hasattr(sys.stdout, "reconfigure"):
        # A path that is not UTF-8 (Linux names are any bytes) is printed as its own bytes, not a traceback.
        sys.stdout.reconfigure(errors="surrogateescape")
    args = build_parser().parse_args(argv)
    debug = os.environ.get("ILGNET_DEBUG") == "1"
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = lambda message, *_, **__: print(
                    f"ilgnet {args.command}: warning: {message}", file=sys.stderr)
            return args.func(args) or 0
    except UsageError as err:
        Parser(prog=f"ilgnet {args.command}").error(str(err))
    except UserError as err:
        if debug:
            traceback.print_exc()
        print(f"ilgnet {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ilgnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
