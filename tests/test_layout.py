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
    ("export",),
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


# A run folder's file names are spelled in ilgnet.zoo.runfolder only (its RunFolder); "snapshots" is also the name
# of a plan's field (which snapshots a campaign keeps), a different thing.
RUN_FOLDER_NAMES = {"model.json": set(), "train.log": set(), "snapshots": {"ilgnet.paper.plans"}}


def module_path(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_run_folder_file_names_are_spelled_in_one_module():
    for name, allowed in RUN_FOLDER_NAMES.items():
        spelled = {module for module in library_modules()
                   if any(isinstance(node, ast.Constant) and node.value == name
                          for node in ast.walk(ast.parse(module_path(module).read_text())))}
        assert spelled - allowed == {"ilgnet.zoo.runfolder"}, f"{name!r} is spelled in {sorted(spelled - allowed)}"


def import_cycles() -> list[list[str]]:
    """The strongly connected groups of more than one module in the graph of ilgnet imports, counting the imports
    inside functions: an import kept inside a function to dodge a cycle is still a cycle. `from ilgnet.x import y`
    counts as an import of ilgnet.x.y where that is a module, else of ilgnet.x. The package `ilgnet` itself (whose
    attribute Scorer is imported on first use, so that `import ilgnet` stays light) is left out, as in LAYERS."""
    modules = set(library_modules()) - {"ilgnet"}
    graph = {m: {name if name in modules else name.rsplit(".", 1)[0] for name in imported(m)} & modules - {m}
             for m in modules}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in graph[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return groups


def test_no_import_cycle_even_through_imports_inside_functions():
    assert import_cycles() == []


MAX_LINES = 330


@pytest.mark.parametrize("module", library_modules())
def test_no_module_is_longer_than_the_house_allows(module):
    lines = len(module_path(module).read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it along a seam"
