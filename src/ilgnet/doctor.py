"""`ilgnet doctor`: says which Caffe this toolkit uses and whether it works."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ilgnet.caffe_tools import PYCAFFE_SUBDIR, SETUP_HINT, CaffeNotFoundError, caffe_root, import_caffe, tool_path


def register(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="check the Caffe installation and print where it comes from")
    parser.set_defaults(func=run)


def _linked_libraries(library: Path) -> list[str]:
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _blas_name(libraries: list[str]) -> str:
    for pattern, name in [("openblas", "OpenBLAS"), ("mkl", "MKL"), ("atlas", "ATLAS"), ("blas", "reference BLAS")]:
        if any(pattern in lib for lib in libraries):
            return name
    return "unknown"


def _gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return out.stdout.count("GPU ") if out.returncode == 0 else 0


def _forward_smoke_test(caffe) -> None:
    """A two-layer net forward: proves libcaffe, pycaffe and protobuf agree."""
    import tempfile

    import numpy as np

    spec = caffe.NetSpec()
    spec.data = caffe.layers.Input(shape=dict(dim=[1, 3]))
    spec.out = caffe.layers.InnerProduct(spec.data, num_output=2, weight_filler=dict(type="constant", value=1))
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(str(spec.to_proto()))
        f.flush()
        net = caffe.Net(f.name, caffe.TEST)
    net.blobs["data"].data[...] = [[1, 2, 3]]
    out = net.forward()["out"]
    if not np.allclose(out, [[6, 6]]):
        raise RuntimeError(f"a 3-input inner product of ones gave {out.tolist()}, expected [[6, 6]]")


def run(args) -> int:
    try:
        root = caffe_root()
        caffe_bin = tool_path("caffe")
    except CaffeNotFoundError as err:
        print(f"Caffe: NOT FOUND\n  {err}", file=sys.stderr)
        return 1
    try:
        version = subprocess.run([str(caffe_bin), "--version"], capture_output=True, text=True)
        problem = (version.stderr or version.stdout).strip()[:400]
        match = re.search(r"caffe version\s+(\S+)", version.stdout + version.stderr)
    except OSError as err:
        problem, match = str(err), None
    if not match:
        print(f"Caffe: BROKEN\n  `{caffe_bin} --version` failed: {problem}\n  {SETUP_HINT}", file=sys.stderr)
        return 1
    print(f"caffe version : {match.group(1)}")
    print(f"caffe root    : {root}")
    print(f"caffe binary  : {caffe_bin.resolve()}")
    try:
        caffe = import_caffe()
        _forward_smoke_test(caffe)
    except (CaffeNotFoundError, RuntimeError, ImportError) as err:
        print(f"pycaffe: BROKEN\n  {err}", file=sys.stderr)
        return 1
    pycaffe_dir = Path(caffe.__file__).resolve().parent
    print(f"pycaffe       : {pycaffe_dir}")
    if not pycaffe_dir.is_relative_to((root / PYCAFFE_SUBDIR).resolve()):
        print(f"  warning: pycaffe is not the one under {root / PYCAFFE_SUBDIR}; tools and bindings may disagree")
    libcaffe = sorted((root / "lib").glob("libcaffe.so*"))
    libraries = _linked_libraries(libcaffe[0]) if libcaffe else []
    cuda_build = any("libcudart" in lib or "libcublas" in lib for lib in libraries)
    print(f"BLAS          : {_blas_name(libraries)}")
    print(f"build         : {'CUDA' if cuda_build else 'CPU only'}")
    gpus = _gpu_count()
    mode = "GPU" if cuda_build and gpus else "CPU"
    print(f"mode          : {mode} ({gpus} GPU{'s' if gpus != 1 else ''} visible)")
    print(f"python        : {sys.executable} ({sys.version.split()[0]})")
    print("status        : OK")
    return 0
