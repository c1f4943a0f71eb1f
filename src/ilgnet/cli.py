"""The `ilgnet` command: one entry point, a subcommand per stage of the pipeline.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func` to a handler
taking the parsed arguments and returning an exit code. Handlers import heavy modules themselves, so
`ilgnet doctor` still answers when numpy or pycaffe are broken.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

COMMAND_MODULES = [
    "doctor",
    "generate",
    "partitions",
    "lmdb_builder",
    "train",
    "caffelog",
    "evaluate",
    "weights",
    "predict",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ilgnet", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"ilgnet.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ilgnet.caffe_tools import CaffeNotFoundError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (CaffeNotFoundError, FileNotFoundError, ValueError) as err:
        print(f"ilgnet {args.command}: error: {err}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as err:
        print(f"ilgnet {args.command}: error: {' '.join(map(str, err.cmd[:2]))} exited with {err.returncode}\n"
              f"{err.output or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ilgnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
