"""What the `--docker` tests run on: an interpreter with the ilgnet package and no Caffe, and a stand-in `docker`
client that records what it is asked to run.

The stand-in writes each call's arguments to calls.jsonl (one JSON list a line), answers `image inspect` for the
images it is told exist (and "No such image" for others, or "Cannot connect to the Docker daemon" for every call
once `engine_down` is set), and runs the command of `docker run` here, in its -w folder with its -e variables:
the image's Caffe is then the one on its `path` (this machine's build, for the tests that run Caffe; none, for
those that only look at the command line). Test modules load it with `pytest_plugins = ["docker_stand_in"]`.
PYTEST_DONT_REWRITE."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("ilgnet-caffe:cpu", "ilgnet-caffe:cuda")
NO_ENGINE = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
SCRIPT = r"""#!/usr/bin/env bash
set -u
dir=@DIR@
@PYTHON@ -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$dir/calls.jsonl"
if [ -e "$dir/engine-down" ]; then echo "@NO_ENGINE@" >&2; exit 1; fi
case "$1" in
  image)
    name=${!#}
    if grep -qxF "$name" "$dir/images"; then echo "sha256:$(printf %s "$name" | sha256sum | cut -c1-64)"; exit 0; fi
    echo "Error: No such image: $name" >&2; exit 1 ;;
  run)
    shift
    envs=() workdir=$PWD
    while [ $# -gt 0 ]; do
      case "$1" in
        --rm|--init|-it) shift ;;
        --gpus|--user|-v) shift 2 ;;
        -e) envs+=("$2"); shift 2 ;;
        -w) workdir=$2; shift 2 ;;
        *) break ;;
      esac
    done
    shift                                                           # the image
    cd "$workdir" && exec env "${envs[@]}" PATH="$(cat "$dir/path"):$PATH" "$@" ;;
  *) echo "stand-in docker: no $1 here" >&2; exit 1 ;;
esac
"""


class StandInDocker:
    """A stand-in `docker` in `folder`/bin (see the module docstring); `env` runs a subprocess with it first on
    PATH and with this machine's Caffe nowhere on PATH."""

    def __init__(self, folder: Path, *, images=IMAGES, path: str = ""):
        self.folder = folder
        (folder / "bin").mkdir(parents=True)
        script = folder / "bin" / "docker"
        script.write_text(SCRIPT.replace("@DIR@", str(folder)).replace("@PYTHON@", sys.executable)
                          .replace("@NO_ENGINE@", NO_ENGINE))
        script.chmod(0o755)
        (folder / "calls.jsonl").touch()
        self.images, self.path = images, path

    @property
    def images(self) -> tuple[str, ...]:
        return tuple((self.folder / "images").read_text().split())

    @images.setter
    def images(self, names) -> None:
        (self.folder / "images").write_text("".join(f"{name}\n" for name in names))

    @property
    def path(self) -> str:
        """What `docker run` puts first on PATH: where the image's tools are."""
        return (self.folder / "path").read_text()

    @path.setter
    def path(self, value: str) -> None:
        (self.folder / "path").write_text(value)

    @property
    def engine_down(self) -> bool:
        return (self.folder / "engine-down").exists()

    @engine_down.setter
    def engine_down(self, down: bool) -> None:
        if down:
            (self.folder / "engine-down").touch()
        else:
            (self.folder / "engine-down").unlink(missing_ok=True)

    def calls(self, command: str | None = None) -> list[list[str]]:
        """Every call's arguments, in order (only those of `command`, e.g. "run", when given)."""
        calls = [json.loads(line) for line in (self.folder / "calls.jsonl").read_text().splitlines()]
        return [call for call in calls if command is None or call[0] == command]

    def env(self) -> dict[str, str]:
        """without_caffe_env with this stand-in first on PATH, then the system's folders."""
        return without_caffe_env(f"{self.folder / 'bin'}:/usr/bin:/bin")


def without_caffe_env(path: str) -> dict[str, str]:
    """os.environ with PATH `path` (no venv, no Caffe: give the system's folders) and no ILGNET_CAFFE_ROOT,
    PYTHONPATH, VIRTUAL_ENV or ILGNET_DOCKER (the client is the first `docker` on PATH)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ILGNET_CAFFE_ROOT", "PYTHONPATH", "VIRTUAL_ENV", "ILGNET_DOCKER")}
    return env | {"PATH": path}


@pytest.fixture
def stand_in_docker(tmp_path) -> StandInDocker:
    """A stand-in `docker` with both images present whose `docker run` finds no Caffe."""
    return StandInDocker(tmp_path / "stand-in-docker")


@pytest.fixture(scope="session")
def no_caffe_python(tmp_path_factory) -> Path:
    """A Python with the ilgnet package and its dependencies but no Caffe, as on a machine where Caffe was never
    built: a venv without the `caffe-root` file of `make setup` whose one .pth file names src/ and the test venv's
    site-packages (whose own .pth files, pycaffe's among them, are then not read)."""
    venv = tmp_path_factory.mktemp("no-caffe") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "ilgnet-without-caffe.pth").write_text(f"{REPO / 'src'}\n{sysconfig.get_paths()['purelib']}\n")
    return python


def run_ilgnet(python: Path, docker: StandInDocker, *args, cwd: Path) -> subprocess.CompletedProcess:
    """`ilgnet ARGS` with `python` and the stand-in first on PATH, in `cwd`."""
    return subprocess.run([str(python), "-m", "ilgnet.cli", *map(str, args)], cwd=cwd, env=docker.env(),
                          capture_output=True, text=True)
