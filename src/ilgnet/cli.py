"""The `ilgnet` command: one entry point, a subcommand per stage of the pipeline, each in ilgnet/commands/<name>.py.

Errors the user can fix (ilgnet.errors.UserError, and a filesystem's refusal wherever it happens: permission denied,
a read-only file system, a full disk; ilgnet.fileio.refusal) are printed in one line and exit 1; a command line
refused (by argparse, a UsageError, or a library error about one of the command's arguments: `UserError.about`
mapped to the flag by the command's ARGS table) is one line too, `argument FLAG: ...`, and exits 2. Anything else is
a bug and keeps its traceback. Every line starts with the command as the user typed it (`ilgnet ava verify:`);
warnings are one line too, `ilgnet COMMAND: warning: ...`. ILGNET_DEBUG=1 prints the traceback of user errors, and
warnings in Python's own format (with the line that raised them).
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
import warnings
from pathlib import Path


def _interrupted(argv: list[str]) -> int:
    """Ctrl-C before a command runs (its modules load for a moment on a busy machine): one line, exit 130."""
    commands = Path(__file__).parent / "commands"
    named = [word for word in argv[:1] if word.isidentifier() and (commands / f"{word}.py").is_file()]
    print(f"{' '.join(['ilgnet', *named])}: interrupted", file=sys.stderr)
    return 130


try:
    import ilgnet
    from ilgnet.commands import (ava, campaign, demo, doctor, export, gen, lmdb, log, nets, predict, report, split,
                                 test, train, weights)
    from ilgnet.commands.arguments import flag_of
    from ilgnet.errors import UsageError, UserError
    from ilgnet.fileio import refusal
except KeyboardInterrupt:
    sys.exit(_interrupted(sys.argv[1:]))

# In the order of the pipeline: AVA fetched and verified (ava) -> split -> lmdb -> nets/gen -> train/log -> test ->
# weights/predict/export, then the paper's campaign and report.
COMMANDS = [doctor, ava, split, lmdb, gen, nets, train, log, test, weights, predict, export, demo, campaign, report]

DESCRIPTION = """\
ILGNet (Jin et al., WCSP 2016: image aesthetics classification) on BVLC Caffe. The commands follow the data: AVA is
fetched and verified (ava), its votes become a partition (split), its photos LMDBs and a mean image (lmdb); a net
variant is trained (train, log) and tested on every held-out image (test); the published or a trained model
scores your own photos (predict) or is written as one ONNX file to score without Caffe (export); a campaign trains
and tests every run of the paper's tables, and a report sets them beside the paper (campaign, report).
`ilgnet COMMAND --help` describes each command, with examples."""

EPILOG = """\
examples:
  ilgnet doctor                                  # which Caffe is used, and does it work
  ilgnet weights fetch ilgnet-ava2               # the authors' AVA2 model, checked
  ilgnet predict ~/Pictures --model ilgnet-ava2 --top 10
  ilgnet demo                                    # the whole pipeline on a generated dataset, on the CPU
  ilgnet campaign table3 --gpus 0,1              # Table 3's runs, one per GPU at a time"""


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions and epilogs as the commands write them: each paragraph (lines that start in the first column)
    is wrapped to the terminal's width; indented lines, the examples, are printed as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines, paragraph = [], []
        for line in [*text.splitlines(), ""]:
            if line and not line[0].isspace():
                paragraph.append(line)
                continue
            if paragraph:
                lines += textwrap.wrap(" ".join(paragraph), width, initial_indent=indent, subsequent_indent=indent,
                                       break_long_words=False, break_on_hyphens=False)
                paragraph = []
            lines.append(indent + line if line.strip() else "")
        return "\n".join(lines).rstrip("\n")


class Parser(argparse.ArgumentParser):
    """argparse whose errors (a missing or malformed argument, a value its type refuses) are one line, exit 2, and
    whose help keeps the examples' lines (HelpFormatter); the sub-command parsers are of the same class. Each sets
    `prog` in the namespace, so that the innermost parser's, the command as the user typed it (`ilgnet ava verify`),
    starts every line the command's errors and warnings print."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.set_defaults(prog=self.prog)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `ilgnet` parser with every command's subparser (each command's `register`)."""
    parser = Parser(prog="ilgnet", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {ilgnet.__version__}")
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
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:                     # named with the command they were given to, as its own errors are
            Parser(prog=args.prog).error(f"unrecognized arguments: {' '.join(unknown)}")
    except KeyboardInterrupt:           # while the commands' modules load, which takes a moment on a busy machine
        return _interrupted(argv)
    debug = os.environ.get("ILGNET_DEBUG") == "1"
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = lambda message, *_, **__: print(
                    f"{args.prog}: warning: {message}", file=sys.stderr)
            return args.func(args) or 0
    except UsageError as err:
        Parser(prog=args.prog).error(str(err))
    except (UserError, OSError) as err:
        if not isinstance(err, UserError) and (err := refusal(err)) is None:
            raise
        if debug:
            traceback.print_exc()
        flag = flag_of(sys.modules[args.func.__module__], err.about)
        if flag is not None:            # a value of the command line refused, named as argparse names it
            print(f"{args.prog}: error: argument {flag}: {err}", file=sys.stderr)
            return 2
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
