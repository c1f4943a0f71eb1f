"""The Docker path: what `make docker-build` / `docker-build-cpu` run (with and without the CA secret), the client
that builds, the one line a certificate failure ends a build step with, tools/docker-caffe.sh's checks, and
`train --docker`, `test --engine caffe --docker` and `doctor --docker` from a Python that has no Caffe: the exact
`docker run` command lines through a stand-in client (tests/docker_stand_in.py), the whole runs with this
machine's Caffe behind it, and with the real CPU image where a Docker engine has it."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from caffe_data import data_folder
from conftest import SMALL
from docker_stand_in import NO_ENGINE, REPO, StandInDocker, run_ilgnet, without_caffe_env

pytest_plugins = ["docker_stand_in"]
SCRIPT = REPO / "tools" / "docker-caffe.sh"
BUILD = 'client=$(bash tools/docker-client.sh) && DOCKER_BUILDKIT=1 "$client" build'
TARGETS = {"docker-build": ["-t", "ilgnet-caffe:cuda", "."],
           "docker-build-cpu": ["--build-arg", "CAFFE=cpu", "-t", "ilgnet-caffe:cpu", "."]}


def make_dry_run(target: str, *variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CA", "DOCKER_BUILD_FLAGS", "MAKEFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "-n", "-C", str(REPO), target, *variables], env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize("target", TARGETS)
def test_make_docker_build_gives_the_ca_secret_as_one_argument_or_none(tmp_path, target):
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    plain = make_dry_run(target)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ["bash tools/docker-base.sh", " ".join([BUILD, *TARGETS[target]])]

    given = make_dry_run(target, f"CA={ca}", "DOCKER_BUILD_FLAGS=--no-cache --progress=plain")
    build = given.stdout.splitlines()[1]
    assert build == " ".join([BUILD, f"--secret id=ca,src={ca}", "--no-cache", "--progress=plain",
                              *TARGETS[target]])
    # `id=ca,src=FILE` is one argument: the comma does not split make's $(if ...).
    words = shlex.split(build)
    assert words[words.index("--secret") + 1] == f"id=ca,src={ca}"

    relative = make_dry_run(target, f"CA={os.path.relpath(ca, REPO)}")
    assert f"--secret id=ca,src={ca} " in relative.stdout      # made absolute: docker runs in the checkout

    missing = make_dry_run(target, f"CA={tmp_path / 'none.pem'}")
    assert missing.returncode == 2 and missing.stdout == ""
    assert re.fullmatch(rf"Makefile:\d+: \*\*\* CA={re.escape(str(tmp_path / 'none.pem'))}: no such file\.  Stop\.\n",
                        missing.stderr)


@pytest.mark.parametrize("target", ["train", "train-ava1", "train-ava2", "evaluate"])
def test_make_with_docker_sets_up_the_package_only(tmp_path, target):
    """DOCKER=1 runs Caffe in the image: a venv not set up yet gets the package (--python-only), not a Caffe build."""
    venv = tmp_path / "venv"
    for variables, setup in [(["DOCKER=1"], "--python-only"), ([], "")]:
        dry = make_dry_run(target, f"VENV={venv}", "WEIGHTS=ilgnet-ava2", *variables)
        assert dry.stdout.splitlines()[0] == f"ILGNET_VENV={venv} bash tools/setup.sh {setup}".rstrip()


def fake_client(folder: Path, version: str, buildx: bool) -> Path:
    """A `docker` client that answers --version, and `buildx version` when it has the plugin."""
    folder.mkdir(parents=True)
    client = folder / "docker"
    buildx_answer = ("echo 'github.com/docker/buildx v0.20.0'" if buildx
                     else "echo 'docker: unknown command: docker buildx' >&2; exit 1")
    client.write_text(f"""#!/bin/sh
case "$1" in
  --version) echo "Docker version {version}, build 0000000" ;;
  buildx) {buildx_answer} ;;
esac
""")
    client.chmod(0o755)
    return client


def choose_client(tmp_path: Path, client: Path | None, **env: str) -> subprocess.CompletedProcess:
    path = f"{client.parent}:/usr/bin:/bin" if client else "/usr/bin:/bin"
    return subprocess.run(["bash", str(REPO / "tools" / "docker-client.sh")], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k != "ILGNET_DOCKER"}, "PATH": path, **env})


def test_the_build_client_is_one_with_buildkit(tmp_path):
    assert choose_client(tmp_path, None, ILGNET_DOCKER="/opt/docker").stdout == "/opt/docker\n"
    for name, version, buildx in [("debian", "20.10.24+dfsg1", False), ("plugin", "28.2.2", True)]:
        client = fake_client(tmp_path / name, version, buildx)
        assert choose_client(tmp_path, client).stdout == f"{client}\n"
    # A client from Docker 23 on without the buildx plugin cannot: /usr/bin/docker when that one can, else one line.
    newer = fake_client(tmp_path / "newer", "28.2.2", False)
    chosen = choose_client(tmp_path, newer)
    if chosen.returncode == 0:
        assert chosen.stdout == "/usr/bin/docker\n"
    else:
        assert chosen.returncode == 1 and chosen.stderr.count("\n") == 1
        assert chosen.stderr.startswith(f"docker-client: {newer} (28.2.2) ") and "buildx plugin" in chosen.stderr


@pytest.mark.parametrize("output, hint", [
    ("WARNING: Retrying ... [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in "
     "certificate chain\nERROR: Could not find a version that satisfies the requirement setuptools>=68", True),
    ("Err:1 https://deb.example.org bookworm InRelease\n  Certificate verification failed: The certificate is NOT "
     "trusted. The certificate issuer is unknown.", True),
    ("E: Unable to locate package libfoo-dev", False),
])
def test_a_build_step_that_fails_on_a_certificate_ends_with_one_line_naming_the_secret(tmp_path, output, hint):
    (tmp_path / "out.txt").write_text(output + "\n")
    step = subprocess.run(["bash", str(REPO / "tools" / "docker-step.sh"), "sh", "-c",
                           f"cat {tmp_path / 'out.txt'}; exit 100"], capture_output=True, text=True)
    assert step.returncode == 100 and step.stderr == ""
    lines = step.stdout.splitlines()
    assert lines[:len(output.splitlines())] == output.splitlines()
    if hint:
        assert len(lines) == len(output.splitlines()) + 1
        assert lines[-1] == ("ilgnet-caffe build: TLS certificate verification failed (a TLS-inspecting proxy?): build "
                             "again with its CA bundle as the build secret 'ca': make docker-build "
                             "CA=/etc/ssl/certs/ca-certificates.crt, or docker build --secret id=ca,src=FILE")
    else:
        assert len(lines) == len(output.splitlines())
    ok = subprocess.run(["bash", str(REPO / "tools" / "docker-step.sh"), "echo", "fine"], capture_output=True,
                        text=True)
    assert (ok.returncode, ok.stdout) == (0, "fine\n")


def give_up(line: str) -> None:
    """An on_line that stops waiting at the first line, as `ilgnet train` does on a run gone wrong."""
    raise RuntimeError(line.strip())


def test_a_command_given_up_on_gets_sigterm_and_is_waited_for(tmp_path):
    """SIGTERM, which `docker run` passes on to its container (SIGKILL would end the client alone), and run_logged
    returns only once the command has ended."""
    from ilgnet.bvlc.tools import run_logged

    mark = tmp_path / "stopped"
    script = f"trap 'echo SIGTERM > {mark}; exit 0' TERM; echo started; while :; do sleep 0.1; done"
    with pytest.raises(RuntimeError, match="^started$"):
        run_logged(["bash", "-c", script], on_line=give_up)
    assert mark.read_text() == "SIGTERM\n"


def docker_caffe(docker: StandInDocker, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = docker.env() | ({"PATH": path} if path else {})
    return subprocess.run(["/bin/bash", str(SCRIPT), *args], capture_output=True, text=True, env=env)


def test_docker_caffe_says_in_one_line_what_is_missing(stand_in_docker, tmp_path):
    checked = docker_caffe(stand_in_docker, "--cpu", "--check")
    assert re.fullmatch(r"ilgnet-caffe:cpu sha256:[0-9a-f]{64}\n", checked.stdout)
    stand_in_docker.images = ["ilgnet-caffe:cpu"]
    for args, make_target in [([], "make docker-build"), (["--cpu"], "make docker-build-cpu")]:
        stand_in_docker.images = [] if args else ["ilgnet-caffe:cpu"]
        image = "ilgnet-caffe:cpu" if args else "ilgnet-caffe:cuda"
        missing = docker_caffe(stand_in_docker, *args, "caffe", "device_query")
        assert (missing.returncode, missing.stdout) == (1, "")
        assert missing.stderr == (f"docker-caffe: there is no image {image} on this Docker engine: build it with "
                                  f"`{make_target}` (docs/DOCKER.md)\n")
    other = docker_caffe(stand_in_docker, "--image", "mine:1", "--check")
    assert other.stderr == ("docker-caffe: there is no image mine:1 on this Docker engine: build or pull it "
                            "(docs/DOCKER.md)\n")
    stand_in_docker.engine_down = True
    down = docker_caffe(stand_in_docker, "--cpu", "caffe", "device_query")
    assert (down.returncode, down.stderr) == (1, f"docker-caffe: docker cannot reach its engine: {NO_ENGINE}\n")
    assert stand_in_docker.calls("run") == []
    tools = tmp_path / "tools-bin"
    tools.mkdir()
    (tools / "dirname").symlink_to("/usr/bin/dirname")
    absent = docker_caffe(stand_in_docker, "--cpu", "caffe", "device_query", path=str(tools))
    assert (absent.returncode, absent.stderr) == (1, "docker-caffe: docker is not installed (Debian 12: apt-get "
                                                     "install docker.io)\n")


@pytest.mark.parametrize("cwd, args, message", [
    ("/", [], "the working folder / cannot be mounted in the image; run from another folder (cd into your project "
              "first)"),
    ("/usr", [], "the working folder /usr cannot be mounted in the image: it overlaps the image's /usr; run from "
                 "another folder (cd into your project first)"),
    (None, ["--mount", "/usr/lib"], "--mount /usr/lib cannot be mounted in the image: it overlaps the image's /usr; "
                                    "mount a folder of your data"),
    (None, ["--mount", "/opt"], "--mount /opt cannot be mounted in the image: it overlaps the image's "
                                "/opt/caffe-cache; mount a folder of your data"),
    (None, ["--mount", "/"], "--mount / cannot be mounted in the image; mount a folder of your data"),
])
def test_a_mount_that_would_hide_the_images_own_folders_is_refused(stand_in_docker, tmp_path, cwd, args, message):
    """Docker refuses to mount / (`docker run` exits 125 with a hint to --help), and a host folder mounted over the
    image's /usr or /opt would hide its Python, venv or Caffe: refused in one line before Docker is asked."""
    result = subprocess.run(["/bin/bash", str(SCRIPT), "--cpu", *args, "caffe", "device_query"], cwd=cwd or tmp_path,
                            env=stand_in_docker.env(), capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (2, f"docker-caffe: {message}\n")
    assert stand_in_docker.calls("run") == []


def test_a_failed_docker_run_is_reported_by_dockers_error_line(tmp_path):
    """docker's last line is only a hint (`Run 'docker run --help' ...`); the line before it says what went wrong."""
    from ilgnet.bvlc.tools import run_logged
    from ilgnet.errors import ToolFailed

    script = ("echo 'docker: Error response from daemon: could not select device driver \"\" with capabilities: "
              "[[gpu]].'; echo \"Run 'docker run --help' for more information\"; exit 125")
    with pytest.raises(ToolFailed) as failed:
        run_logged(["bash", "-c", script], log_path=tmp_path / "run.log")
    assert str(failed.value) == ('bash -c exited with 125; last message: docker: Error response from daemon: could '
                                 'not select device driver "" with capabilities: [[gpu]].; full output in '
                                 f'{tmp_path / "run.log"}')


def docker_run(image: str, cwd: Path, mounts: list[Path], command: list[str], gpus: bool = False) -> list[str]:
    """The `docker run` arguments tools/docker-caffe.sh gives: the checkout, the working directory and `mounts` at
    their own paths (sorted, once each), as the calling user, with the checkout's src/ on PYTHONPATH."""
    volumes = sorted({str(REPO), str(cwd), *(str(Path(m).resolve()) for m in mounts)})
    return ["run", "--rm", "--init", *(["--gpus", "all"] if gpus else []), "--user", f"{os.getuid()}:{os.getgid()}",
            "-e", "HOME=/tmp", "-e", "MPLCONFIGDIR=/tmp/matplotlib", "-e", f"PYTHONPATH={REPO}/src",
            *[arg for volume in volumes for arg in ("-v", f"{volume}:{volume}")], "-w", str(cwd), image, *command]


@pytest.fixture
def data(tmp_path) -> Path:
    """A data folder as `ilgnet lmdb` leaves it, made without Caffe: 4 training and 3 val photos of 227 x 227."""
    return data_folder(tmp_path, 4, 3, size=227)


def train_args(data: Path, root: Path) -> list:
    return ["train", "--docker", "--cpu", "--variant", SMALL, "--profile", "ava2", "--data", data, "--runs",
            root / "runs", "--name", "small", "--max-iter", 2, "--train-batch", 2, "--display", 1,
            "--models", root / "no-models"]


def one_error_line(result: subprocess.CompletedProcess, command: str, status: int = 1) -> str:
    lines = [line for line in result.stderr.splitlines() if f"ilgnet {command}: error: " in line]
    assert result.returncode == status and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def test_there_is_no_caffe_in_the_python_of_these_tests(no_caffe_python, stand_in_docker):
    probe = subprocess.run([str(no_caffe_python), "-c", "import ilgnet.bvlc.tools as t\ntry:\n    t.caffe_root()\n"
                            "except t.CaffeNotFoundError as e:\n    print(e)\nimport caffe"],
                           capture_output=True, text=True, env=stand_in_docker.env())
    assert probe.stdout.startswith("Caffe was not found: no ILGNET_CAFFE_ROOT, no ")
    assert "ModuleNotFoundError: No module named 'caffe'" in probe.stderr


@pytest.mark.slow
def test_train_in_docker_runs_caffe_train_in_the_cpu_image_with_no_caffe_here(no_caffe_python, stand_in_docker,
                                                                             data, tmp_path):
    result = run_ilgnet(no_caffe_python, stand_in_docker, *train_args(data, tmp_path), cwd=tmp_path)
    run = tmp_path / "runs" / "small"
    assert stand_in_docker.calls("run") == [docker_run("ilgnet-caffe:cpu", tmp_path, [run, data], [
        "caffe", "train", "-solver", str(run / "solver.prototxt"), "-sigint_effect", "stop", "-sighup_effect",
        "snapshot"])]
    # The stand-in's "image" has no Caffe: the run fails there, in one line, after Docker was asked.
    assert one_error_line(result, "train").startswith(f"ilgnet train: error: bash {SCRIPT} exited with 127")
    assert "Caffe was not found" not in result.stderr

    stand_in_docker.images = ["ilgnet-caffe:cuda"]
    refused = run_ilgnet(no_caffe_python, stand_in_docker, *train_args(data, tmp_path / "second"), cwd=tmp_path)
    assert one_error_line(refused, "train") == ("ilgnet train: error: there is no image ilgnet-caffe:cpu on this "
                                                "Docker engine: build it with `make docker-build-cpu` "
                                                "(docs/DOCKER.md)")
    assert not (tmp_path / "second").exists() and len(stand_in_docker.calls("run")) == 1


@pytest.mark.slow
def test_a_docker_run_that_cannot_start_is_refused_before_its_run_folder(no_caffe_python, stand_in_docker, data,
                                                                         tmp_path):
    """A GPU run on a machine whose nvidia-smi lists no GPU, and a run from /, each refused in one line before the
    run folder is made and before Docker runs anything (else `docker run` exits 125 with a hint to --help)."""
    from ilgnet.bvlc.tools import gpu_count

    stand_in_docker.images = ["ilgnet-caffe:cpu", "ilgnet-caffe:cuda"]
    from_root = run_ilgnet(no_caffe_python, stand_in_docker, *train_args(data, tmp_path), cwd=Path("/"))
    assert one_error_line(from_root, "train") == ("ilgnet train: error: the working folder / cannot be mounted in the "
                                                  "image; run from another folder (cd into your project first)")
    usr = Path("/usr/local/ilgnet-caffe-test")              # runs under the image's /usr: made, then removed
    if os.access("/usr/local", os.W_OK) and not usr.exists():
        under_usr = run_ilgnet(no_caffe_python, stand_in_docker, *train_args(data, usr), cwd=tmp_path)
        assert one_error_line(under_usr, "train") == (f"ilgnet train: error: --mount {usr}/runs/small cannot be "
                                                      f"mounted in the image: it overlaps the image's /usr; mount a "
                                                      f"folder of your data")
        assert not usr.exists()
    if gpu_count():
        pytest.skip("nvidia-smi lists a GPU here: a GPU run can start")
    on_gpu = [*(["--gpu", "0"] if arg == "--cpu" else [arg] for arg in train_args(data, tmp_path))]
    no_gpu = run_ilgnet(no_caffe_python, stand_in_docker, *[a for args in on_gpu for a in args], cwd=tmp_path)
    assert one_error_line(no_gpu, "train", status=2).startswith("ilgnet train: error: argument --gpu: GPU 0 asked for, "
                                                                "but this machine has no GPU (")
    assert no_gpu.stderr.rstrip().endswith("); run in the CPU image with --cpu")
    assert not (tmp_path / "runs").exists() and stand_in_docker.calls("run") == []


def test_docker_runs_caffe_test_not_pycaffe(tmp_path, capsys, monkeypatch):
    from ilgnet.cli import main as ilgnet

    monkeypatch.chdir(tmp_path)
    Path("m.caffemodel").write_bytes(b"")
    Path("data").mkdir()
    with pytest.raises(SystemExit) as refused:
        ilgnet(["test", "--docker", "--engine", "pycaffe", "--weights", "m.caffemodel", "--data", "data"])
    assert refused.value.code == 2
    assert capsys.readouterr().err == ("ilgnet test: error: --docker runs the `caffe test` binary in the image "
                                       "(--engine caffe), not --engine pycaffe (see `ilgnet test --help`)\n")


@pytest.mark.slow
def test_caffe_test_in_docker_runs_in_the_cpu_image_with_no_caffe_here(no_caffe_python, stand_in_docker, data,
                                                                      tmp_path):
    from ilgnet import nets
    from ilgnet.data.synthetic import random_caffemodel

    (tmp_path / "models").mkdir()
    weights = random_caffemodel(nets.deploy(SMALL), tmp_path / "models" / "small.caffemodel", seed=1)
    result = run_ilgnet(no_caffe_python, stand_in_docker, "test", "--docker", "--variant", SMALL, "--weights",
                        weights, "--data", data, cwd=tmp_path)
    [call] = stand_in_docker.calls("run")
    model = Path(call[call.index("-model") + 1])
    assert model.name == "test_0.prototxt" and model.parent.name.startswith("ilgnet-caffe-test-")
    assert call == docker_run("ilgnet-caffe:cpu", tmp_path, [data, weights.parent, model.parent], [
        "caffe", "test", "-model", str(model), "-weights", str(weights), "-iterations", "1"])
    assert one_error_line(result, "test").startswith(f"ilgnet test: error: bash {SCRIPT} exited with 127")


def test_doctor_in_docker_checks_both_images_with_no_caffe_here(no_caffe_python, stand_in_docker, tmp_path):
    cpu_only = "ilgnet-caffe:cpu"
    stand_in_docker.images = [cpu_only]
    result = run_ilgnet(no_caffe_python, stand_in_docker, "doctor", "--docker", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"docker image \(CPU runs\): ilgnet-caffe:cpu \([0-9a-f]{12}\); ilgnet doctor in it:",
                        lines[0])
    assert lines[-3:] == [
        "  FAILED (exit status 127)",
        "docker image (GPU runs): NOT AVAILABLE: there is no image ilgnet-caffe:cuda on this Docker engine: build "
        "it with `make docker-build` (docs/DOCKER.md)",
        "status        : FAILED (0 of 1 image passed)"]
    assert result.returncode == 1
    assert stand_in_docker.calls("run") == [docker_run(cpu_only, tmp_path, [], ["ilgnet", "doctor"])]

    stand_in_docker.engine_down = True
    down = run_ilgnet(no_caffe_python, stand_in_docker, "doctor", "--docker", cwd=tmp_path)
    assert down.returncode == 1 and down.stdout.splitlines() == [
        f"docker image (CPU runs): NOT AVAILABLE: docker cannot reach its engine: {NO_ENGINE}",
        f"docker image (GPU runs): NOT AVAILABLE: docker cannot reach its engine: {NO_ENGINE}",
        "status        : FAILED (no image checked: see above)"]      # not the images' fault: no build hint


def test_train_test_and_doctor_in_docker_end_to_end_with_no_caffe_here(caffe, no_caffe_python, stand_in_docker,
                                                                      data, tmp_path):
    """The stand-in's image is this machine's Caffe (the venv's bin/, with caffe and ilgnet): the whole run, with
    the ilgnet that drives it still without Caffe."""
    from ilgnet.bvlc.tools import tool_path

    stand_in_docker.path = str(tool_path("caffe").parent) + ":" + str(Path(sys.executable).parent)
    trained = run_ilgnet(no_caffe_python, stand_in_docker, *train_args(data, tmp_path), cwd=tmp_path)
    run = tmp_path / "runs" / "small"
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert trained.stdout == f"{run / 'snapshots' / SMALL}_iter_2.caffemodel\n"
    tested = run_ilgnet(no_caffe_python, stand_in_docker, "test", "--docker", "--weights", run, "--data", data,
                        "--json", tmp_path / "test.json", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    scored = json.loads((tmp_path / "test.json").read_text())
    assert (scored["engine"], scored["images"]) == ("caffe", 3)
    doctor = run_ilgnet(no_caffe_python, stand_in_docker, "doctor", "--docker", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout
    assert doctor.stdout.splitlines()[-1] == "status        : OK (2 of 2 images passed)"
    runs = stand_in_docker.calls("run")
    assert runs[0] == docker_run("ilgnet-caffe:cpu", tmp_path, [run, data], [
        "caffe", "train", "-solver", str(run / "solver.prototxt"), "-sigint_effect", "stop", "-sighup_effect",
        "snapshot"])
    after_workdir = [call[call.index("-w") + 2:] for call in runs[1:]]
    assert [(rest[0], rest[1:3]) for rest in after_workdir] == [
        ("ilgnet-caffe:cpu", ["caffe", "test"]), ("ilgnet-caffe:cpu", ["ilgnet", "doctor"]),
        ("ilgnet-caffe:cuda", ["ilgnet", "doctor"])]


def real_image(name: str) -> None:
    """Skips unless a Docker engine answers here and has the image `name`."""
    try:
        found = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True,
                               timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"no Docker client here ({err})")
    if found.returncode != 0:
        pytest.skip(f"no image {name} on a Docker engine here (`make docker-build-cpu` builds it): "
                    f"{found.stderr.strip()}")


@pytest.mark.docker
def test_train_test_and_doctor_in_the_real_cpu_image_with_no_caffe_here(no_caffe_python, data, tmp_path):
    real_image("ilgnet-caffe:cpu")
    run = tmp_path / "runs" / "small"

    def ilgnet(*args) -> subprocess.CompletedProcess:
        return subprocess.run([str(no_caffe_python), "-m", "ilgnet.cli", *map(str, args)], cwd=tmp_path,
                              env=without_caffe_env("/usr/local/bin:/usr/bin:/bin"), capture_output=True, text=True)

    trained = ilgnet(*train_args(data, tmp_path))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert trained.stdout == f"{run / 'snapshots' / SMALL}_iter_2.caffemodel\n"
    assert "Iteration 2" in (run / "train.log").read_text()
    tested = ilgnet("test", "--docker", "--weights", run, "--data", data, "--json", tmp_path / "test.json")
    assert tested.returncode == 0, tested.stderr[-3000:]
    scored = json.loads((tmp_path / "test.json").read_text())
    assert (scored["engine"], scored["images"]) == ("caffe", 3)
    doctor = ilgnet("doctor", "--docker")
    assert "docker image (CPU runs): ilgnet-caffe:cpu" in doctor.stdout and "  status        : OK" in doctor.stdout
    assert "Cannot create Cublas handle" not in doctor.stdout and "InitGoogleLogging" not in doctor.stdout


@pytest.mark.docker
def test_a_docker_command_given_up_on_leaves_no_container_running(tmp_path):
    """A Caffe run that ilgnet stops (a diverged training, a second Ctrl-C) must not go on in its container, writing
    snapshots into the run folder: the container of a command given up on is gone when run_logged returns."""
    from ilgnet.bvlc.tools import docker_command, run_logged

    real_image("ilgnet-caffe:cpu")
    token = f"given-up-{tmp_path.name}"
    with pytest.raises(RuntimeError, match=f"^{token}$"):
        run_logged(docker_command(["sh", "-c", f"echo {token}; exec sleep 300"], gpu=False), on_line=give_up)
    running = subprocess.run(["docker", "ps", "--no-trunc", "--format", "{{.Command}}"], capture_output=True,
                             text=True, timeout=60)
    assert running.returncode == 0, running.stderr
    assert token not in running.stdout
