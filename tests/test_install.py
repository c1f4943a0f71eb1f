"""A Caffe-free install on every Python from 3.10 to 3.13 this machine has: `pip install` of the package in a fresh
venv, then `ilgnet predict` with no backend flag scores with onnxruntime, as a new user without Caffe would run it.
pycaffe itself stays on the interpreter `make setup` builds it for (python3.11).

Interpreters are found on PATH (python3.X that runs) or among pyenv's versions; one that is absent is skipped with
the reason. Each install takes a minute or two (pip's cache warm), so these tests are marked `install`: `make test`
runs them, `make test-fast` leaves them out."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, SMALL

from ilgnet.scoring.scorer import Scorer

VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
pytestmark = pytest.mark.install


def interpreter(version: str) -> Path | None:
    """An interpreter of `version` that runs: python3.X on PATH, else pyenv's newest of that version."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = [shutil.which(f"python{version}"), *sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)]
    for path in filter(None, found):
        if subprocess.run([path, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return Path(path)
    return None


@pytest.mark.parametrize("version", VERSIONS)
def test_caffe_free_install_scores_with_onnxruntime(version, stand_in, tmp_path):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (on PATH or among pyenv's versions)")
    source = tmp_path / "source"                      # the package's files only: no build folder left in the clone
    source.mkdir()
    (source / "tools").mkdir()
    for name in ("pyproject.toml", "README.md", "src", "tools/docker-caffe.sh"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, source / name)
    shutil.rmtree(source / "src" / "ilgnet.egg-info", ignore_errors=True)      # the editable install's record
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", venv], check=True)
    install = subprocess.run([venv / "bin" / "pip", "install", "-q", str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "ILGNET_CAFFE_ROOT": "/nonexistent/caffe"}
    assert subprocess.run([venv / "bin" / "python", "-c", "import caffe"], capture_output=True).returncode != 0
    weights = tmp_path / "model.caffemodel"               # its export is kept beside it, here
    shutil.copy(stand_in["weights"], weights)
    result = subprocess.run([venv / "bin" / "ilgnet", "predict", str(stand_in["photos"]), "--model", str(weights),
                             "--mean", str(stand_in["mean"]), "--variant", SMALL, "--quiet"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("backend onnxruntime (ILGNET_CAFFE_ROOT's Caffe (/nonexistent/caffe) has no pycaffe; onnxruntime is "
            "installed)") in result.stderr
    table = pd.read_csv(io.StringIO(result.stdout))
    reference, _ = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv",
                          jobs=0).score_files(table.path)
    assert len(table) == 6
    assert (table.p_high - reference.p_high).abs().max() < 2e-6      # the CSV keeps 6 decimals

    # Plans are TOML: read with tomllib, or tomli on 3.10 (bug case 17).
    plan = tmp_path / "plan.toml"
    plan.write_text(f'runs = "{tmp_path / "runs"}"\n[[run]]\nvariant = "{SMALL}"\nprofile = "ava2"\nseeds = [1]\n')
    status = subprocess.run([venv / "bin" / "ilgnet", "campaign", str(plan), "--status"], capture_output=True,
                            text=True, env=env, cwd=tmp_path)
    assert status.returncode == 0 and f"| {SMALL}-ava2-seed1 | - | not started |" in status.stdout, status.stderr
    # --docker's script comes with the install (bug case 20), and runs from there with no checkout around.
    found = subprocess.run([venv / "bin" / "python", "-c", "from ilgnet.bvlc.tools import DOCKER_SCRIPT as s; "
                            "print(s)"], capture_output=True, text=True, env=env, cwd=tmp_path).stdout.strip()
    assert Path(found) == venv / "share" / "ilgnet-caffe" / "docker-caffe.sh"
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\n[ "$1 $2" = "image inspect" ] && echo sha256:0123 && exit 0\nexit 1\n')
    docker.chmod(0o755)
    check = subprocess.run(["bash", found, "--cpu", "--check"], capture_output=True, text=True, cwd=tmp_path,
                           env={**env, "ILGNET_DOCKER": str(docker)})
    assert (check.returncode, check.stdout) == (0, "ilgnet-caffe:cpu sha256:0123\n"), check.stderr
