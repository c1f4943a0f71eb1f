"""The refusal policy, without Caffe: each command declares its file arguments once (its ARGS table), which
refuse_overwrites reads; a library error says which input it is about (UserError.about), and `ilgnet` names the
command's flag for it, as argparse names a refused value (exit 2)."""
from __future__ import annotations

import argparse
import pickle

import pytest

from ilgnet import cli
from ilgnet.commands.arguments import INPUT, OUTPUT, REPLACED, VALUE, flag_of, refuse_overwrites
from ilgnet.errors import BadInput, UnknownName, UsageError, about, lookup

DECLARING = [command for command in cli.COMMANDS if hasattr(command, "ARGS")]


def _parsers(parser: argparse.ArgumentParser):
    """`parser` and every sub-command parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _command_parser(name: str) -> argparse.ArgumentParser:
    [subparsers] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices[name]


def _name(command) -> str:
    return command.__name__.rsplit(".", 1)[-1]


def test_the_commands_that_read_and_write_files_declare_them():
    assert {_name(c) for c in DECLARING} >= {"lmdb", "log", "predict", "split", "test", "train", "weights", "export",
                                              "ava", "campaign"}


@pytest.mark.parametrize("command", DECLARING, ids=_name)
def test_every_declared_argument_is_one_the_command_takes(command):
    """Flag, attribute and kind of each ARGS row against the command's own parsers, so a renamed flag cannot leave
    its row behind."""
    actions = [a for p in _parsers(_command_parser(_name(command))) for a in p._actions]
    names = {(flag, a.dest) for a in actions for flag in (a.option_strings or [a.metavar or a.dest])}
    for arg in command.ARGS:
        assert (arg.flag, arg.attribute) in names, arg
        assert arg.kind in (INPUT, OUTPUT, REPLACED, VALUE), arg
        assert arg.kind != INPUT or arg.what, arg                # an input's row says what it is
        assert flag_of(command, arg.about or arg.attribute) == arg.flag


@pytest.mark.parametrize("command", [c for c in DECLARING if any(a.kind in (OUTPUT, REPLACED) for a in c.ARGS)],
                         ids=_name)
def test_each_declared_output_is_refused_where_it_names_a_declared_input(command, tmp_path):
    outputs = [a for a in command.ARGS if a.kind in (OUTPUT, REPLACED)]
    inputs = [a for a in command.ARGS if a.kind == INPUT]
    assert inputs, f"{_name(command)} writes {outputs} from no declared input"
    path = tmp_path / "same"
    path.write_text("read and written\n")
    for output in outputs:
        for given in inputs:
            args = argparse.Namespace(**{a.attribute: None for a in command.ARGS})
            setattr(args, given.attribute, path)
            setattr(args, output.attribute, path)
            with pytest.raises(UsageError) as refused:
                refuse_overwrites(command.ARGS, args)
            assert str(refused.value) == f"argument {output.flag}: {path} is {given.what}"
        args = argparse.Namespace(**{a.attribute: None for a in command.ARGS})
        setattr(args, output.attribute, tmp_path / "elsewhere")
        refuse_overwrites(command.ARGS, args)                     # an output of its own is no refusal


def test_a_library_error_about_an_input_is_named_by_the_flag(tmp_path, capsys):
    """ilgnet.data.mirrors.get_mirror knows nothing of flags; `ilgnet ava fetch` names --mirror, exits 2 as for a
    value argparse refuses, starts the line with the command as typed, and has made nothing."""
    root = tmp_path / "AVA"
    assert cli.main(["ava", "fetch", "--to", str(root), "--mirror", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ilgnet ava fetch: error: argument --mirror: unknown mirror 'nope'; known: ")
    assert err.count("\n") == 1 and not root.exists()
    assert cli.main(["weights", "fetch", "nope", "--dest", str(tmp_path / "models")]) == 2
    assert capsys.readouterr().err.startswith("ilgnet weights fetch: error: argument NAME: unknown weights entry of "
                                              "weights.json 'nope'; known: ")


def test_an_error_about_an_input_the_command_does_not_take_stays_a_plain_error(tmp_path, capsys, monkeypatch):
    from ilgnet.commands import log

    def refused(args):
        raise BadInput("no such GPU here", about="gpu")      # `ilgnet log` has no GPU flag to name

    monkeypatch.setattr(log, "run", refused)
    assert cli.main(["log", __file__]) == 1
    assert capsys.readouterr().err == "ilgnet log: error: no such GPU here\n"


def test_what_an_error_is_about_survives_other_processes_and_gives_way_to_a_file_at_fault():
    with pytest.raises(UnknownName) as unknown:
        lookup({"a": 1}, "b", "thing", about="thing")
    assert unknown.value.about == "thing" and isinstance(unknown.value, ValueError)
    with pytest.raises(BadInput) as named, about("model.json"):          # the file at fault, not the variant
        raise BadInput("unknown net variant 'v9'", about="variant")
    assert (str(named.value), named.value.about) == ("model.json: unknown net variant 'v9'", None)
    copy = pickle.loads(pickle.dumps(BadInput("x", about="mean")))      # as a worker process hands it back
    assert (type(copy), str(copy), copy.about) == (BadInput, "x", "mean")
    assert BadInput("no input named").about is None
