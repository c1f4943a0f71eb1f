"""Every `ilgnet` command's help as the user reads it: a description, examples that name the command and only its
options, no argparse escapes (`%%`) and no module names of the library; and `ilgnet --version`."""
import argparse
import importlib.metadata
import re
import shlex

import pytest

import ilgnet
from ilgnet.cli import build_parser, main


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def _parsers(parser=None, path=()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for `ilgnet` and every command and sub-command below it."""
    parser = parser or build_parser()
    found = [(path, parser)]
    for name, sub in _children(parser).items():
        found += _parsers(sub, (*path, name))
    return found


PARSERS = _parsers()


def test_every_command_and_sub_command_is_checked():
    commands = {" ".join(path) for path, _ in PARSERS}
    assert {"", "split", "split ava1", "split ava2", "split official", "split published", "lmdb", "gen", "nets",
            "train", "log", "test", "weights", "weights list", "weights fetch", "weights check", "weights install",
            "predict", "demo", "doctor", "campaign", "report"} <= commands


def _examples(parser: argparse.ArgumentParser) -> list[list[str]]:
    """The command lines of the epilog's examples (a `# comment` and leading VAR=value settings dropped)."""
    lines = (parser.epilog or "").splitlines()
    assert lines and lines[0] in ("example:", "examples:"), f"{parser.prog}: the help ends without examples"
    examples = []
    for line in lines[1:]:
        assert line.startswith("  "), f"{parser.prog}: example line not indented: {line!r}"
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        examples.append(words)
    return examples


@pytest.mark.parametrize("path, parser", PARSERS, ids=[" ".join(p) or "ilgnet" for p, _ in PARSERS])
def test_help_describes_and_shows_examples(path, parser):
    text = parser.format_help()
    assert parser.description and len(parser.description) >= 80, f"{parser.prog}: no one-paragraph description"
    assert "\n\n" not in parser.description.strip(), f"{parser.prog}: the description is more than one paragraph"
    assert "%%" not in text and "%(" not in text
    assert not re.search(r"\bilgnet\.[a-z_]", text), re.search(r".*\bilgnet\.[a-z_].*", text)[0]
    assert "example" in text
    for words in _examples(parser):
        if words[0] == "make":
            continue
        assert words[0] == "ilgnet" and tuple(words[1:1 + len(path)]) == path, f"{parser.prog}: example {words}"
        target = parser
        for word in words[1 + len(path):]:
            target = _children(target).get(word, target)
        options = {option for action in target._actions for option in action.option_strings}
        unknown = [word.split("=")[0] for word in words if word.startswith("--")
                   and word.split("=")[0] not in options]
        assert not unknown, f"{parser.prog}: example {' '.join(words)} uses options {target.prog} lacks: {unknown}"


@pytest.mark.parametrize("path", [p for p, _ in PARSERS], ids=[" ".join(p) or "ilgnet" for p, _ in PARSERS])
def test_help_through_the_command_line(path, capsys):
    with pytest.raises(SystemExit) as leaving:
        main([*path, "--help"])
    assert leaving.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('ilgnet', *path))} ") and "%%" not in out


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit) as leaving:
        main(["--version"])
    assert leaving.value.code == 0
    assert capsys.readouterr().out == f"ilgnet {ilgnet.__version__}\n"
    assert importlib.metadata.version("ilgnet") == ilgnet.__version__
