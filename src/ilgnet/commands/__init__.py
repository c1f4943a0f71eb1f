"""The `ilgnet` subcommands, one module each, named as the user types them (`ilgnet test` is commands/test.py).

Each module has `register(subparsers)`, which adds its parser with `func=run`, and `run(args) -> exit code`. A
command checks its arguments, calls the library and prints; the library under ilgnet/ never prints results and
never names a flag. Heavy library modules are imported inside `run`, so `ilgnet --help` stays fast and `ilgnet
doctor` answers even when numpy or pycaffe are broken.
"""
