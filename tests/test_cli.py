"""The `ilgnet` command's error model and argument checks, without Caffe: a user error is one line and exit 1,
anything else is a bug that keeps its traceback; ILGNET_DEBUG=1 shows the traceback of user errors too."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ilgnet.cli import main
from ilgnet.commands import log as log_command
from ilgnet.fileio import atomic_path


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "ilgnet.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env})


def test_a_user_error_is_one_line_and_exit_1(tmp_path):
    result = run_cli("log", str(tmp_path / "missing.log"))
    assert result.returncode == 1
    assert result.stderr == f"ilgnet log: error: {tmp_path / 'missing.log'} does not exist\n"


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    result = run_cli("log", str(tmp_path / "missing.log"), ILGNET_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "MissingFile" in result.stderr
    assert result.stderr.endswith(f"ilgnet log: error: {tmp_path / 'missing.log'} does not exist\n")


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise ValueError("a programming error, not the user's")

    monkeypatch.setattr(log_command, "run", broken)
    with pytest.raises(ValueError, match="a programming error"):
        main(["log", "train.log"])


@pytest.mark.parametrize("args, message", [
    (["test", "--data", "d"], "--weights and --data are required"),
    (["test", "--weights", "w", "--data", "d", "--batch", "0"], "--batch must be positive, got 0"),
    (["predict", "p.jpg", "--model", "m", "--top", "0"], "--top must be at least 1, got 0"),
    (["split", "ava1", "--ava-txt", "AVA.txt", "--out", "o", "--delta", "-1"], "--delta must be >= 0, got -1.0"),
    (["nets", "--batch", "0"], "--batch and --iterations must be at least 1"),
])
def test_bad_arguments_are_named(args, message, capsys):
    assert main(args) == 1
    assert f"error: {message}" in capsys.readouterr().err


def test_atomic_path_publishes_whole_files_only(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as partial:
        partial.write_text("whole")
    assert target.read_text() == "whole" and not partial.exists()
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "whole" and not partial.exists()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "folder", keep_partial=True) as partial:
        partial.mkdir()
        raise RuntimeError("interrupted")
    assert partial.is_dir() and not (tmp_path / "folder").exists()
