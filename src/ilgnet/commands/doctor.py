"""`ilgnet doctor` (`make doctor`): which Caffe the toolkit uses, how it was built, and whether it works; with
--docker, the same for the Caffe of the Docker images that `--docker` runs use, with no Caffe needed here."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the Caffe installation and print where it comes from",
        description="Finds the Caffe build the toolkit uses (ILGNET_CAFFE_ROOT when set, else the build `make setup` "
                    "linked into the venv, else the `caffe` on PATH) and prints its version, install prefix, binary, "
                    "pycaffe, BLAS, whether it was built with CUDA (and which cuDNN it loads) and how many GPUs "
                    "nvidia-smi lists. A two-layer net is run forward through pycaffe to prove that libcaffe, "
                    "pycaffe and protobuf agree. Exits with status 1 and the reason when anything is missing or "
                    "broken. With --docker, checks the Docker images that --docker runs use instead, with no Caffe "
                    "needed here: for CPU runs and for GPU runs, whether the image is there and what this same check "
                    "says inside it.",
        epilog="examples:\n"
               "  ilgnet doctor\n"
               "  ILGNET_CAFFE_ROOT=/opt/caffe ilgnet doctor    # check another Caffe install prefix\n"
               "  make doctor                                   # the same, after `make setup`\n"
               "  ilgnet doctor --docker                        # the images (make docker-build, docker-build-cpu)")
    parser.add_argument("--docker", action="store_true",
                        help="check the Docker images that --docker runs use instead of the Caffe here")
    parser.set_defaults(func=run)


# glog's error lines of a CUDA Caffe started without a GPU (caffe/common.cpp: "Cannot create Cublas handle. Cublas
# won't be available.", "Cannot create Curand generator. Curand won't be available.") and glog's note before them.
CUDA_WITHOUT_GPU = re.compile(r"^(E\S* .*\] Cannot create (Cublas handle|Curand generator)\b"
                              r"|WARNING: Logging before InitGoogleLogging\(\) is written to STDERR$)")


def _docker() -> int:
    """`ilgnet doctor` in the image of CPU runs and in that of GPU runs (with the GPUs when nvidia-smi lists any
    here, else on the CPU): 0 when at least one is there and every one that is there passes."""
    from ilgnet.bvlc.tools import docker_command, docker_image, gpu_count
    from ilgnet.errors import CaffeNotFoundError

    gpus = gpu_count()
    checked, passed, failed, missing = set(), 0, 0, 0
    for runs, gpu in (("CPU", False), ("GPU", True)):
        try:
            name, image_id = docker_image(gpu=gpu).split()
        except CaffeNotFoundError as err:
            print(f"docker image ({runs} runs): NOT AVAILABLE: {err}")
            missing += str(err).startswith("there is no image ")
            continue
        if name in checked:
            print(f"docker image ({runs} runs): {name}, as above")
            continue
        checked.add(name)
        print(f"docker image ({runs} runs): {name} ({image_id.removeprefix('sha256:')[:12]}); ilgnet doctor in it"
              + ("" if not gpu or gpus else ", on the CPU (no GPU here)") + ":")
        command = docker_command(["ilgnet", "doctor"], gpu=gpu and gpus > 0, image=name)
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = result.stdout.splitlines(keepends=True)
        if gpu and not gpus:        # the CUDA build on the CPU logs that it has no cuBLAS and cuRAND handles
            kept = [line for line in lines if not CUDA_WITHOUT_GPU.match(line)]
            if len(kept) < len(lines):
                kept.append(f"({len(lines) - len(kept)} lines of Caffe's log on the CUDA handles it cannot create "
                            f"without a GPU left out)\n")
            lines = kept
        print("".join(f"  {line}" for line in lines), end="")
        if result.returncode == 0:
            passed += 1
        else:
            print(f"  FAILED (exit status {result.returncode})")
            failed += 1
    status = "OK" if passed and not failed else "FAILED"
    if checked:
        print(f"status        : {status} ({passed} of {len(checked)} image{'s' if len(checked) != 1 else ''} passed)")
    else:
        print(f"status        : {status} (no image checked: "
              + ("build one with `make docker-build-cpu` or `make docker-build`)" if missing == 2 else "see above)"))
    return 0 if status == "OK" else 1


def _forward_smoke_test() -> None:
    """A two-layer net forward: proves libcaffe, pycaffe and protobuf agree."""
    import numpy as np

    from ilgnet.bvlc.io import load_net
    from ilgnet.nets.builder import NetBuilder

    n = NetBuilder()
    data = n.add("Input", "data", [], shape=dict(dim=[1, 3]))
    n.add("InnerProduct", "out", data, num_output=2, weight_filler=dict(type="constant", value=1))
    net = load_net(n.net("smoke"))
    net.blobs["data"].data[...] = [[1, 2, 3]]
    out = net.forward()["out"]
    if not np.allclose(out, [[6, 6]]):
        raise RuntimeError(f"a 3-input inner product of ones gave {out.tolist()}, expected [[6, 6]]")


def run(args) -> int:
    from ilgnet.bvlc.tools import (PYCAFFE_SUBDIR, build_info, caffe_root, caffe_version, gpu_count, import_caffe,
                                   tool_path)
    from ilgnet.errors import CaffeNotFoundError

    if args.docker:
        return _docker()
    try:
        root, caffe_bin = caffe_root(), tool_path("caffe")
    except CaffeNotFoundError as err:
        print(f"Caffe: NOT FOUND\n  {err}\n  (runs in the Docker images need no Caffe here: ilgnet doctor --docker)",
              file=sys.stderr)
        return 1
    try:
        version = caffe_version()
    except CaffeNotFoundError as err:
        print(f"Caffe: BROKEN\n  {err}", file=sys.stderr)
        return 1
    print(f"caffe version : {version}")
    print(f"caffe root    : {root}")
    print(f"caffe binary  : {caffe_bin.resolve()}")
    try:
        caffe = import_caffe()
        _forward_smoke_test()
    except (CaffeNotFoundError, RuntimeError, ImportError) as err:
        print(f"pycaffe: BROKEN\n  {err}", file=sys.stderr)
        return 1
    pycaffe_dir = Path(caffe.__file__).resolve().parent
    print(f"pycaffe       : {pycaffe_dir}")
    if not pycaffe_dir.is_relative_to((root / PYCAFFE_SUBDIR).resolve()):
        print(f"  warning: pycaffe is not the one under {root / PYCAFFE_SUBDIR}; tools and bindings may disagree")
    build = build_info()
    gpus = gpu_count()
    print(f"BLAS          : {build['blas']}")
    print(f"build         : {'CUDA' if build['cuda'] else 'CPU only'}")
    if build["cuda"]:
        print(f"cuDNN         : {build['cudnn'] or 'not built in'}")
    mode = "GPU" if build["cuda"] and gpus else "CPU"
    print(f"mode          : {mode} ({gpus} GPU{'s' if gpus != 1 else ''} visible)")
    print(f"python        : {sys.executable} ({sys.version.split()[0]})")
    print("status        : OK")
    return 0
