"""The setup as `make` runs it: targets wait on the stamps tools/setup.sh writes, the build mode is the one recorded
in the venv (never switched by what nvidia-smi says later), and tools/build-caffe.sh refuses bad arguments before
any work. Everything here runs the real scripts and make, without building Caffe."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMAND_TARGETS = ["prototxt", "nets", "doctor", "weights", "demo", "train", "ava2-lmdb", "evaluate WEIGHTS=runs/x"]


def make_dry_run(repo: Path, venv: Path, *args: str) -> list[str]:
    """The commands `make -n ARGS` would run with VENV=venv, one a line."""
    result = subprocess.run(["make", "--no-print-directory", "-n", f"VENV={venv}", *args], cwd=repo,
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


@pytest.fixture
def set_up_venv(tmp_path) -> Path:
    """A venv folder whose setup finished after every recipe file last changed (both stamps fresh)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".setup-stamp").touch()
    (venv / ".ilgnet-deps").touch()
    return venv


@pytest.mark.parametrize("target", COMMAND_TARGETS)
def test_a_target_after_a_finished_setup_runs_only_its_command(repo, set_up_venv, target):
    lines = make_dry_run(repo, set_up_venv, *target.split())
    assert lines and not any("setup.sh" in line or "doctor" in line and target != "doctor" for line in lines), lines
    assert all(line.startswith(f"{set_up_venv}/bin/") for line in lines), lines


def test_make_prototxt_after_setup_is_exactly_ilgnet_gen(repo, set_up_venv):
    assert make_dry_run(repo, set_up_venv, "prototxt") == [f"{set_up_venv}/bin/ilgnet gen"]


@pytest.mark.parametrize("recipe", ["tools/setup.sh", "tools/build-caffe.sh", "tools/cuda-wheels.sh",
                                    "tools/caffe-patches/01-protobuf-bytes-limit.patch", "pyproject.toml"])
def test_a_changed_recipe_runs_setup_again(repo, set_up_venv, recipe):
    lines = make_dry_run(repo, set_up_venv, "-W", recipe, "prototxt")
    assert lines[0] == f"ILGNET_VENV={set_up_venv} bash tools/setup.sh" and lines[-1].endswith("/bin/ilgnet gen")


def test_no_venv_yet_runs_setup_first(repo, tmp_path):
    lines = make_dry_run(repo, tmp_path / "venv", "prototxt")
    assert lines == [f"ILGNET_VENV={tmp_path / 'venv'} bash tools/setup.sh", f"{tmp_path / 'venv'}/bin/ilgnet gen"]


@pytest.mark.parametrize("target, flag", [("setup", ""), ("setup-cuda", " --cuda"), ("setup-cpu", " --cpu")])
def test_setup_targets_always_run(repo, set_up_venv, target, flag):
    assert make_dry_run(repo, set_up_venv, target) == [f"ILGNET_VENV={set_up_venv} bash tools/setup.sh{flag}"]


def test_test_fast_needs_only_the_package(repo, set_up_venv):
    (set_up_venv / ".setup-stamp").unlink()
    assert make_dry_run(repo, set_up_venv, "test-fast") == [
        f"{set_up_venv}/bin/python -m ruff check src tests tools",
        f'{set_up_venv}/bin/python -m pytest -m "not caffe and not slow and not install and not docker and not slurm" '
        '--durations=15 tests']


def test_clean_spares_runs_models_and_data(repo, set_up_venv):
    lines = make_dry_run(repo, set_up_venv, "clean")
    removed = " ".join(lines)
    assert "work" in removed and not any(name in removed.split() for name in ("runs", "models", "data", "."))
    assert make_dry_run(repo, set_up_venv, "clean-runs") == ["rm -rf runs"]
    help_text = subprocess.run(["make", "help"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "make clean-runs" in help_text and "keeps runs/, models/, data/" in help_text


# ---- the build mode: recorded, reused, switched only on request ----

@pytest.fixture
def machine(repo, tmp_path):
    """Runs `tools/setup.sh ARGS` against a venv folder in tmp_path, with an nvidia-smi that lists one GPU
    (gpu=True) or none: (exit status, stdout lines, stderr)."""
    venv, bin_dir = tmp_path / "venv", tmp_path / "bin"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    bin_dir.mkdir()

    def run(*args: str, gpu: bool, env: dict | None = None):
        listing = "echo 'GPU 0: NVIDIA H200 (UUID: GPU-0)'" if gpu else "echo 'No devices were found'; exit 6"
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{listing}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("ILGNET_CUDA", "ILGNET_CUDNN"))}
        environment.update(PATH=f"{bin_dir}:{os.environ['PATH']}", ILGNET_VENV=str(venv), **(env or {}))
        result = subprocess.run(["bash", "tools/setup.sh", *args], cwd=repo, env=environment,
                                capture_output=True, text=True)
        return result.returncode, result.stdout.splitlines(), result.stderr
    run.venv = venv
    return run


def record(venv: Path, **fields) -> None:
    (venv / "ilgnet-setup.json").write_text(json.dumps(fields))


@pytest.mark.parametrize("gpu, mode", [(True, "cuda"), (False, "cpu")])
def test_the_first_setup_detects_the_mode(machine, gpu, mode):
    status, out, _ = machine("--show-mode", gpu=gpu)
    assert status == 0 and len(out) == 1 and out[0].startswith(f"[setup] build mode: {mode} (first setup: ")


def test_a_recorded_cuda_build_stays_cuda_where_no_gpu_is_listed(machine):
    record(machine.venv, mode="cuda", caffe_root="/opt/caffe", cuda_toolkit="wheels", cuda_archs="90", cudnn="0")
    status, out, _ = machine("--show-mode", gpu=False)
    assert status == 0 and out == [
        f"[setup] build mode: cuda (recorded in {machine.venv / 'ilgnet-setup.json'}); CUDA from NVIDIA's wheels, "
        f"compute capabilities 90, cuDNN off",
        "[setup] nvidia-smi lists no GPU here; building for CUDA all the same (`make setup-cpu` switches to CPU)"]


def test_the_recorded_cuda_toolkit_is_reused_unless_the_environment_names_another(machine):
    record(machine.venv, mode="cuda", caffe_root="/opt/caffe", cuda_toolkit="/opt/cuda-12", cuda_archs="80 90",
           cudnn="1")
    assert "CUDA from /opt/cuda-12, compute capabilities 80 90" in machine("--show-mode", gpu=True)[1][0]
    status, out, _ = machine("--show-mode", gpu=True, env={"ILGNET_CUDA_HOME": "/usr/local/cuda"})
    assert out[0].endswith("instead of the recorded /opt/cuda-12") and "CUDA from /usr/local/cuda," in out[1]


def test_a_recorded_cpu_build_stays_cpu_beside_a_gpu(machine):
    record(machine.venv, mode="cpu", caffe_root="/opt/caffe")
    status, out, _ = machine("--show-mode", gpu=True)
    assert status == 0 and out[0].startswith("[setup] build mode: cpu (recorded in ") and len(out) == 2
    assert "`make setup-cuda` switches to CUDA" in out[1]


@pytest.mark.parametrize("flag", ["--cpu", "--cuda"])
def test_only_an_explicit_flag_switches(machine, flag):
    record(machine.venv, mode="cuda" if flag == "--cpu" else "cpu", caffe_root="/opt/caffe")
    status, out, _ = machine("--show-mode", flag, gpu=flag == "--cpu")
    assert status == 0 and out[0].startswith(f"[setup] build mode: {flag[2:]} (asked for with {flag})")
    assert len(out) == 1


def test_a_venv_set_up_before_records_keeps_its_builds_mode(machine, tmp_path):
    build = tmp_path / "caffe-build"
    (build / "share" / "Caffe").mkdir(parents=True)
    (build / "share" / "Caffe" / "CaffeConfig.cmake").write_text("set(Caffe_CPU_ONLY ON)\n")
    (machine.venv / "caffe-root").write_text(f"{build}\n")
    status, out, _ = machine("--show-mode", gpu=True)
    assert out[0] == f"[setup] build mode: cpu (the build linked into {machine.venv} ({build}))"


@pytest.mark.parametrize("text", ["{not json", '{"mode": "gpu"}', "[]"])
def test_a_damaged_record_is_one_line(machine, text):
    (machine.venv / "ilgnet-setup.json").write_text(text)
    status, out, err = machine("--show-mode", gpu=False)
    assert status == 1 and out == []
    assert err.splitlines() == [f"[setup] error: {machine.venv / 'ilgnet-setup.json'} is not a build record of "
                                f"tools/setup.sh; run `make setup-cpu` or `make setup-cuda` to choose the build mode "
                                f"again"]


def test_the_record_of_this_venvs_setup_names_its_caffe(caffe):
    """The record `make setup` wrote for the venv running these tests, read back against the Caffe it linked."""
    from ilgnet.bvlc.tools import build_info, caffe_root

    path = Path(sys.prefix) / "ilgnet-setup.json"
    if not (Path(sys.prefix) / "caffe-root").is_file() or os.environ.get("ILGNET_CAFFE_ROOT"):
        pytest.skip("the Caffe in use was not linked into this venv by tools/setup.sh")
    assert path.is_file(), f"{path} missing: this venv was set up before setup recorded its mode; run `make setup`"
    written = json.loads(path.read_text())
    assert written["mode"] == ("cuda" if build_info()["cuda"] else "cpu")
    assert Path(written["caffe_root"]) == caffe_root()
    assert (Path(sys.prefix) / ".setup-stamp").is_file()


# ---- tools/build-caffe.sh refuses before doing any work ----

USAGE = "(usage: tools/build-caffe.sh SOURCE_DSC PREFIX PYTHON cpu|cuda [lean])"


@pytest.mark.parametrize("args, message", [
    ([], f"expected 4 or 5 arguments, got 0 {USAGE}"),
    (["@dsc", "@prefix", "python3"], f"expected 4 or 5 arguments, got 3 {USAGE}"),
    (["@dsc", "@prefix", "python3", "cpu", "lean", "extra"], f"expected 4 or 5 arguments, got 6 {USAGE}"),
    (["@dsc", "@prefix", "python3", "gpu"], f"build mode 'gpu': expected cpu or cuda {USAGE}"),
    (["@dsc", "@prefix", "python3", "CPU"], f"build mode 'CPU': expected cpu or cuda {USAGE}"),
    (["@dsc", "@prefix", "python3", "cpu", "full"], f"fifth argument 'full': expected lean or none {USAGE}"),
    (["@dsc", "@existing", "python3", "cpu"],
     "install prefix @existing exists already; remove it to build again there"),
    (["@missing.dsc", "@prefix", "python3", "cuda"], "source package @missing.dsc does not exist"),
    (["@dsc", "@prefix", "no-such-python", "cpu"], "PYTHON no-such-python is not an executable"),
])
def test_build_caffe_refuses_bad_arguments_before_any_work(repo, tmp_path, args, message):
    (tmp_path / "caffe_1.0.dsc").write_text("Format: 3.0 (quilt)\n")
    (tmp_path / "existing").mkdir()
    places = {"@dsc": tmp_path / "caffe_1.0.dsc", "@prefix": tmp_path / "prefix", "@existing": tmp_path / "existing",
              "@missing.dsc": tmp_path / "missing.dsc"}
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run(["bash", repo / "tools" / "build-caffe.sh", *[str(places.get(a, a)) for a in args]],
                            cwd=tmp_path, capture_output=True, text=True)
    for name, place in places.items():
        message = message.replace(name, str(place))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"[build-caffe] error: {message}\n")
    assert sorted(tmp_path.rglob("*")) == before            # no PREFIX.work, nothing unpacked


def test_two_setups_of_one_venv_at_once_run_one_after_the_other(repo, tmp_path):
    """Two `tools/setup.sh --python-only` of the same venv started together: the second waits on the lock beside
    the venv, then finds the first's result (no second pip run, no two pips writing one venv at once). pip is a
    stand-in that logs its start and end and sleeps between them, so nothing is installed and no network is used."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "start $$" >> {log}\nsleep 2\necho "end $$" >> {log}\n')
    (venv / "bin" / "python").chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing\n")
    environment = {**os.environ, "ILGNET_VENV": str(venv), "ILGNET_REQUIREMENTS": str(requirements),
                   "PYTHON": sys.executable}
    setups = [subprocess.Popen(["bash", "tools/setup.sh", "--python-only"], cwd=repo, env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    deadline = time.monotonic() + 20
    while not log.exists() and time.monotonic() < deadline:      # the first holds the lock and runs pip
        time.sleep(0.05)
    setups.append(subprocess.Popen(["bash", "tools/setup.sh", "--python-only"], cwd=repo, env=environment,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [setup.communicate(timeout=60) for setup in setups]
    assert [setup.returncode for setup in setups] == [0, 0], outputs
    steps = log.read_text().split()
    assert steps[::2] == ["start", "end", "start", "end"] and len(set(steps[1::2])) == 2   # pip twice, one at a time
    first, second = (out.splitlines() for out, _ in outputs)
    assert first[-1].startswith("[setup] venv: installing")
    assert second == [f"[setup] another setup of {venv} is running: waiting for it to finish "
                      f"({venv}.setup-lock)", "[setup] venv: up to date"]
