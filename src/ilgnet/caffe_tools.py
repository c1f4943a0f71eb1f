"""Finding and running the BVLC Caffe build that `make setup` installed.

Caffe is located through one root folder, the install prefix of its build (bin/ with the tools, and
pycaffe in lib/python3/dist-packages where Debian's packaging puts it):
  1. the ILGNET_CAFFE_ROOT environment variable, when set;
  2. the `caffe-root` file that tools/setup.sh writes into the venv;
  3. the folder above the `caffe` found on PATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SETUP_HINT = "run `make setup` in the ilgnet-caffe checkout (or set ILGNET_CAFFE_ROOT to a Caffe install prefix)"
PYCAFFE_SUBDIR = Path("lib/python3/dist-packages")


class CaffeNotFoundError(RuntimeError):
    """Caffe's tools or pycaffe are missing."""


def caffe_root() -> Path:
    env_root = os.environ.get("ILGNET_CAFFE_ROOT")
    if env_root:
        return Path(env_root)
    marker = Path(sys.prefix) / "caffe-root"
    if marker.is_file():
        return Path(marker.read_text().strip())
    on_path = shutil.which("caffe")
    if on_path:
        return Path(on_path).resolve().parent.parent
    raise CaffeNotFoundError(f"Caffe was not found: no ILGNET_CAFFE_ROOT, no {marker}, no `caffe` on PATH; {SETUP_HINT}")


def tool_path(name: str) -> Path:
    """Path of one Caffe tool (caffe, convert_imageset, compute_image_mean, ...)."""
    path = caffe_root() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise CaffeNotFoundError(f"Caffe tool {path} is missing; {SETUP_HINT}")
    return path


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Caffe's command-line tools.

    The `caffe` binary embeds the base interpreter, not the venv, so Python layers run from it need the
    venv's site-packages and pycaffe on PYTHONPATH.
    """
    import sysconfig

    env = dict(os.environ)
    paths = [str(caffe_root() / PYCAFFE_SUBDIR), sysconfig.get_paths()["purelib"]]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # Full INFO logs: wrappers parse them (pycaffe's quiet default must not leak into the tools).
    env["GLOG_minloglevel"] = "0"
    env.update(extra or {})
    return env


def run_tool(name: str, args: list[str], *, log_path: Path | None = None, echo: bool = False,
             check: bool = True) -> subprocess.CompletedProcess:
    """Runs a Caffe tool, capturing its combined output (Caffe logs to stderr) into `log_path` if given.

    With `echo` the output is also streamed to this process's stderr as it arrives.
    """
    cmd = [str(tool_path(name)), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True)
    lines = []
    log = open(log_path, "a") if log_path else None
    try:
        for line in proc.stdout:
            lines.append(line)
            if log:
                log.write(line)
                log.flush()
            if echo:
                sys.stderr.write(line)
    finally:
        proc.wait()
        if log:
            log.close()
    output = "".join(lines)
    if check and proc.returncode != 0:
        tail = "".join(lines[-15:])
        raise subprocess.CalledProcessError(proc.returncode, cmd, output=f"{tail}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout=output)


def import_caffe():
    """Imports pycaffe quietly (glog at warnings and above unless GLOG_minloglevel is set)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    root = os.environ.get("ILGNET_CAFFE_ROOT")
    if root and str(Path(root) / PYCAFFE_SUBDIR) not in sys.path:
        sys.path.insert(0, str(Path(root) / PYCAFFE_SUBDIR))
    try:
        import caffe
    except ImportError as err:
        raise CaffeNotFoundError(f"pycaffe cannot be imported ({err}); {SETUP_HINT}") from err
    return caffe
