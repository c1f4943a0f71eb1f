"""The package's layers, as docs/ARCHITECTURE.md draws them: every library module imports only from its own layer or
the layers below it, and nothing in the library imports a command. Read from the source, so it needs nothing built."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ilgnet"

# Bottom to top; a module may import its own layer and those before it.
LAYERS = [
    ("errors", "defaults", "fileio", "pools"),
    ("bvlc",),
    ("data",),
    ("nets",),
    ("zoo",),
    ("training",),
    ("scoring",),
    ("evaluation",),
    ("paper",),
    ("commands", "cli"),
]


def layer_of(module: str) -> int:
    """The layer of `ilgnet.X...` by its first part."""
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def library_modules() -> list[str]:
    return sorted(".".join(("ilgnet", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
                  for p in PACKAGE.rglob("*.py"))


def imported(module: str) -> set[str]:
    """The ilgnet modules `module` imports, at its top or inside functions."""
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ilgnet"):
            names = [node.module] if node.module != "ilgnet" else [f"ilgnet.{a.name}" for a in node.names]
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ilgnet."))
    return {name for name in found if name != "ilgnet"}


def test_every_module_has_a_layer():
    for module in library_modules():
        if module != "ilgnet":
            layer_of(module)


@pytest.mark.parametrize("module", [m for m in library_modules() if m != "ilgnet"])
def test_imports_go_only_down_the_stack(module):
    upward = {name for name in imported(module) if layer_of(name) > layer_of(module)}
    assert not upward, f"{module} imports from a later layer: {sorted(upward)}"


def test_commands_import_no_other_command():
    for module in library_modules():
        if module.startswith("ilgnet.commands.") and module != "ilgnet.commands.arguments":
            others = {n for n in imported(module)
                      if n.startswith("ilgnet.commands.") and n != "ilgnet.commands.arguments"}
            assert not others, f"{module} imports {sorted(others)}"
