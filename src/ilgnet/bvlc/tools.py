"""Finding and running the BVLC Caffe build that `make setup` installed: its tools, pycaffe and what it was built with.

Caffe is located through one root folder, the install prefix of its build (bin/ with the tools, and
pycaffe in lib/python3/dist-packages where Debian's packaging puts it):
  1. the ILGNET_CAFFE_ROOT environment variable, when set;
  2. the `caffe-root` file that tools/setup.sh writes into the venv;
  3. the folder above the `caffe` found on PATH.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ilgnet.errors import BadInput, CaffeNotFoundError, ToolFailed

SETUP_HINT = "run `make setup` in the ilgnet-caffe checkout (or set ILGNET_CAFFE_ROOT to a Caffe install prefix)"
INSTALLED_TOOLS = Path("share") / "ilgnet-caffe"     # where `pip install` puts tools/docker-caffe.sh (pyproject)


def _find_docker_script() -> Path:
    """tools/docker-caffe.sh of the checkout this package runs from, else the copy a plain (non-editable) install
    put under its prefix's share/ilgnet-caffe (pyproject.toml's data-files); the checkout's path where neither is."""
    checkout = Path(__file__).resolve().parents[3] / "tools" / "docker-caffe.sh"
    prefixes = dict.fromkeys([sysconfig.get_path("data"), sys.prefix, sysconfig.get_path("data", f"{os.name}_user")])
    installed = [Path(prefix) / INSTALLED_TOOLS / "docker-caffe.sh" for prefix in prefixes if prefix]
    return next((path for path in [checkout, *installed] if path.is_file()), checkout)


DOCKER_SCRIPT = _find_docker_script()
PYCAFFE_SUBDIR = Path("lib/python3/dist-packages")
TAIL_LINES = 15
# How the docker client and tools/docker-caffe.sh begin their error lines (docker's last line is only a hint to
# `docker run --help`).
DOCKER_ERRORS = ("docker: ", "docker-caffe: ")
STOP_GRACE_S = 15
# A glog line: severity (I, W, E, F), date (the year only since glog 0.6) and time, thread, file:line, message.
GLOG_PREFIX = re.compile(r"^[IWEF]((?:\d{4})?\d{4} \d\d:\d\d:\d\d\.\d+)\s+\d+ [\w.]+:\d+\]\s+(.*)$")


def caffe_root() -> Path:
    """The install prefix of the Caffe in use (see the module docstring for how it is found)."""
    env_root = os.environ.get("ILGNET_CAFFE_ROOT")
    if env_root:
        return Path(env_root)
    marker = Path(sys.prefix) / "caffe-root"
    if marker.is_file():
        return Path(marker.read_text().strip())
    on_path = shutil.which("caffe")
    if on_path:
        return Path(on_path).resolve().parent.parent
    raise CaffeNotFoundError(f"Caffe was not found: no ILGNET_CAFFE_ROOT, no {marker}, no `caffe` on PATH; "
                             f"{SETUP_HINT}")


def tool_path(name: str) -> Path:
    """Path of one Caffe tool (caffe, convert_imageset, compute_image_mean, ...)."""
    path = caffe_root() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise CaffeNotFoundError(f"Caffe tool {path} is missing; {SETUP_HINT}")
    return path


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Caffe's command-line tools, and for tools/docker-caffe.sh, which needs no Caffe here.

    The `caffe` binary embeds the base interpreter, not the venv, so Python layers run from it need the
    venv's site-packages and pycaffe on PYTHONPATH: the pycaffe of the Caffe in use, where one is found (a
    command that runs in the Docker image has its own).
    """
    import sysconfig

    env = dict(os.environ)
    try:
        paths = [str(caffe_root() / PYCAFFE_SUBDIR)]
    except CaffeNotFoundError:
        paths = []
    paths.append(sysconfig.get_paths()["purelib"])
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # Full INFO logs: wrappers parse them (pycaffe's quiet default must not leak into the tools).
    env["GLOG_minloglevel"] = "0"
    # To stderr only, which run_logged keeps in the command's log: glog's own log files would pile up in /tmp,
    # several per call.
    env["GLOG_logtostderr"] = "1"
    env.update(extra or {})
    return env


def run_logged(command: list[str], *, log_path: Path | None = None, on_line: Callable[[str], None] | None = None,
               on_sigint: Callable[[], None] | None = None, keep: bool = True) -> subprocess.CompletedProcess:
    """Runs a command with Caffe's environment, its combined output (Caffe logs to stderr) appended to `log_path`
    as it arrives and each line passed to `on_line`. Returns the CompletedProcess (stdout: the whole output when
    `keep`, else its last lines). Raises ToolFailed in one line when the command fails (`failure`).

    With `on_sigint`, a SIGINT sent to this process is passed on to the command (which decides how to stop; a
    terminal's Ctrl-C reaches it directly too) and `on_sigint` is called. The command is stopped (`stop`) if this
    process stops waiting for it (an exception in `on_line`, a second interrupt without `on_sigint`).
    """
    command = [str(part) for part in command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True)
    lines: list[str] | deque[str] = [] if keep else deque(maxlen=TAIL_LINES)
    last_error = None
    log = open(log_path, "a") if log_path else None
    previous = None
    if on_sigint is not None:
        def forward(signum, frame):
            proc.send_signal(signal.SIGINT)
            on_sigint()

        previous = signal.signal(signal.SIGINT, forward)
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(DOCKER_ERRORS) or line.startswith(("E", "F")) and GLOG_PREFIX.match(line):
                last_error = line
            if log:
                log.write(line)
                log.flush()
            if on_line:
                on_line(line)
        proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            stop(proc)
        if log:
            log.close()
    if proc.returncode != 0:
        last = (last_error or next((line for line in reversed(lines) if line.strip()), "")).strip()
        glog = GLOG_PREFIX.match(last)
        raise ToolFailed(failure(command, proc.returncode, glog.group(2) if glog else last, log_path))
    return subprocess.CompletedProcess(command, proc.returncode, stdout="".join(lines))


def stop(proc: subprocess.Popen) -> None:
    """Stops a command and waits for it: SIGTERM, then SIGKILL after STOP_GRACE_S seconds. SIGTERM first because
    `docker run` (tools/docker-caffe.sh, without a terminal) passes it on to the container, which ends with Caffe;
    SIGKILL would end the client only and leave Caffe running in the container, writing snapshots."""
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def failure(command: list[str], returncode: int, last: str, log_path: Path | None) -> str:
    """One line on a failed command: its exit status or the signal that killed it (SIGKILL: most likely the kernel's
    out-of-memory killer), `last` (its last error line, else its last line) and where its whole output is."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"was killed by {name}" + (" (probably out of memory)" if -returncode == signal.SIGKILL else "")
    else:
        how = f"exited with {returncode}"
    return (f"{' '.join(command[:2])} {how}" + (f"; last message: {last}" if last else "")
            + (f"; full output in {log_path}" if log_path else ""))


def _docker_script(gpu: bool, image: str | None, mounts) -> list[str]:
    """tools/docker-caffe.sh with its options (see docker_command)."""
    if not DOCKER_SCRIPT.is_file():
        raise CaffeNotFoundError(f"{DOCKER_SCRIPT} is missing: neither this package's checkout nor its install "
                                 f"({sys.prefix / INSTALLED_TOOLS}) has docker-caffe.sh; reinstall the package")
    options = [] if gpu else ["--cpu"]
    if image:
        options += ["--image", image]
    for mount in mounts:
        options += ["--mount", str(Path(mount).resolve())]
    return ["bash", str(DOCKER_SCRIPT), *options]


def docker_command(command: list, *, gpu: bool, mounts: list[Path] = (), image: str | None = None) -> list[str]:
    """The command line running `command` in the Docker image through tools/docker-caffe.sh, which needs only
    Docker here: with `gpu` the GPUs and the CUDA image, else none and the CPU image; `image` names another
    (default: ILGNET_IMAGE, else those two). `mounts` are mounted at their own paths besides the checkout and the
    working directory. CaffeNotFoundError when the script is missing (it ships with the ilgnet-caffe checkout)."""
    return [*_docker_script(gpu, image, mounts), "--", *[str(part) for part in command]]


def docker_image(*, gpu: bool, image: str | None = None, mounts: list[Path] = ()) -> str:
    """The image docker_command runs (for GPU runs with `gpu`, else for CPU runs) as "NAME sha256:ID", once
    Docker has answered that it is there and tools/docker-caffe.sh has found that the working directory and
    `mounts` (existing folders) can be mounted in it. CaffeNotFoundError in one line otherwise: no docker, an
    engine that does not answer, no such image (naming the `make` target that builds it), a folder that would
    hide the image's own (/, /usr, /opt)."""
    result = subprocess.run([*_docker_script(gpu, image, mounts), "--check"], capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        raise CaffeNotFoundError(lines[-1].removeprefix("docker-caffe: "))
    return result.stdout.strip()


def caffe_invocation(args: list, *, gpu: str | None, docker: bool, mounts: list[Path]) -> list[str]:
    """The command line of `caffe ARGS [-gpu GPU]`: the local binary, or the Docker image's (docker_command: the
    CUDA image with `gpu`, else the CPU image), mounting `mounts` at their own paths."""
    args = [str(a) for a in args] + (["-gpu", str(gpu)] if gpu is not None else [])
    if not docker:
        return [str(tool_path("caffe")), *args]
    return docker_command(["caffe", *args], gpu=gpu is not None, mounts=mounts)


def run_tool(name: str, args: list, *, log_path: Path | None = None) -> subprocess.CompletedProcess:
    """Runs one of Caffe's tools (caffe, convert_imageset, compute_image_mean, ...) with run_logged."""
    return run_logged([tool_path(name), *args], log_path=log_path)


def import_caffe():
    """pycaffe, imported quietly (glog at warnings and above unless GLOG_minloglevel is set): ILGNET_CAFFE_ROOT's
    where that is set (CaffeNotFoundError when it has none: never the venv's in its place, as the tools never
    are), else the one the venv finds."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    root = os.environ.get("ILGNET_CAFFE_ROOT")
    if root:
        pycaffe = Path(root) / PYCAFFE_SUBDIR
        if not (pycaffe / "caffe" / "__init__.py").is_file():
            raise CaffeNotFoundError(f"ILGNET_CAFFE_ROOT is {root}, which has no pycaffe ({pycaffe / 'caffe'} is "
                                     f"missing); unset it to use the Caffe of `make setup`")
        if str(pycaffe) not in sys.path:
            sys.path.insert(0, str(pycaffe))
    try:
        import caffe
    except ImportError as err:
        raise CaffeNotFoundError(f"pycaffe cannot be imported ({err}); {SETUP_HINT}") from err
    return caffe


def _linked_libraries(library: Path) -> list[str]:
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _blas_name(libraries: list[str]) -> str:
    for pattern, name in [("openblas", "OpenBLAS"), ("mkl", "MKL"), ("atlas", "ATLAS"), ("blas", "reference BLAS")]:
        if any(pattern in lib for lib in libraries):
            return name
    return "unknown"


def gpu_count() -> int:
    """GPUs that nvidia-smi lists (0 without an NVIDIA driver)."""
    if not shutil.which("nvidia-smi"):
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return out.stdout.count("GPU ") if out.returncode == 0 else 0


def caffe_version() -> str:
    """What `caffe --version` reports (e.g. 1.0.0); CaffeNotFoundError when the binary is missing or broken."""
    caffe_bin = tool_path("caffe")
    try:
        result = subprocess.run([str(caffe_bin), "--version"], capture_output=True, text=True)
        problem = (result.stderr or result.stdout).strip()[:400]
        match = re.search(r"caffe version\s+(\S+)", result.stdout + result.stderr)
    except OSError as err:
        problem, match = str(err), None
    if not match:
        raise CaffeNotFoundError(f"`{caffe_bin} --version` failed: {problem}; {SETUP_HINT}")
    return match.group(1)


def _cudnn_version(libcaffe: Path) -> str | None:
    """The cuDNN libcaffe loads, as cuDNN itself reports it (cudnnGetVersion needs no GPU); None when libcaffe
    links no cuDNN."""
    import ctypes

    out = subprocess.run(["ldd", str(libcaffe)], capture_output=True, text=True).stdout
    match = re.search(r"^\s*(libcudnn\.so\S*) => (\S+)", out, re.M)
    if not match:
        return None
    if not match.group(2).startswith("/"):
        return f"{match.group(1)} NOT FOUND"
    library = ctypes.CDLL(match.group(2))
    library.cudnnGetVersion.restype = ctypes.c_size_t
    version = library.cudnnGetVersion()
    # cuDNN 9: major * 10000 + minor * 100 + patch; cuDNN 8: major * 1000 + minor * 100 + patch.
    major, minor = (version // 10000, version // 100 % 100) if version >= 90000 else (version // 1000,
                                                                                      version // 100 % 10)
    return f"{major}.{minor}.{version % 100} ({match.group(2)})"


def build_info() -> dict:
    """How the Caffe in use was built: BLAS, whether libcaffe links CUDA and which CUDA runtime (its soname, e.g.
    libcudart.so.13; None: none), and the cuDNN it loads (None: none)."""
    libcaffe = sorted((caffe_root() / "lib").glob("libcaffe.so*"))
    libraries = _linked_libraries(libcaffe[0]) if libcaffe else []
    return {"blas": _blas_name(libraries), "cuda": any("libcudart" in lib or "libcublas" in lib for lib in libraries),
            "cuda_runtime": next((lib for lib in libraries if lib.startswith("libcudart")), None),
            "cudnn": _cudnn_version(libcaffe[0]) if libcaffe else None}


def check_gpu_spec(devices: str | int) -> None:
    """BadInput (about "gpu") unless `devices` is Caffe's -gpu value: an id (0), ids (0,1) or all."""
    if str(devices) != "all" and not re.fullmatch(r"\d+(,\d+)*", str(devices)):
        raise BadInput(f"expected a GPU id, ids separated by commas (0,1) or all, got {devices!r}", about="gpu")


def require_gpus(devices: str | int, *, docker: bool = False) -> None:
    """Checks that this Caffe can run on `devices` (Caffe's -gpu value: 0, "0,1" or "all"; check_gpu_spec) before
    Caffe is asked to: a CPU-only build or a missing GPU makes Caffe abort the process (and `docker run --gpus` stop
    without a word of why). With `docker`, the image's Caffe is the CUDA build and only the GPUs are checked.
    BadInput (about "gpu") says which."""
    check_gpu_spec(devices)
    spec = str(devices)
    if not docker and not build_info()["cuda"]:
        raise BadInput(f"GPU {devices} asked for, but the Caffe in {caffe_root()} was built without CUDA (CPU only); "
                       f"build it with CUDA (`make setup-cuda`) or run on the CPU", about="gpu")
    count = gpu_count()
    if count == 0:
        found = "nvidia-smi lists none" if shutil.which("nvidia-smi") else "no nvidia-smi, so no NVIDIA driver"
        raise BadInput(f"GPU {devices} asked for, but this machine has no GPU ({found})"
                       + ("; run in the CPU image with --cpu" if docker else ""), about="gpu")
    ids = range(count) if spec == "all" else [int(d) for d in spec.split(",")]
    if bad := [i for i in ids if not 0 <= i < count]:
        raise BadInput(f"GPU {bad[0]} asked for, but this machine has {count} (ids 0 to {count - 1})", about="gpu")
