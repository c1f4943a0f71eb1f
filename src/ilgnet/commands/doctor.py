"""`ilgnet doctor` (`make doctor`): which Caffe the toolkit uses, how it was built, and whether it works."""
from __future__ import annotations

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
                    "broken.",
        epilog="examples:\n"
               "  ilgnet doctor\n"
               "  ILGNET_CAFFE_ROOT=/opt/caffe ilgnet doctor    # check another Caffe install prefix\n"
               "  make doctor                                   # the same, after `make setup`")
    parser.set_defaults(func=run)


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

    try:
        root, caffe_bin = caffe_root(), tool_path("caffe")
    except CaffeNotFoundError as err:
        print(f"Caffe: NOT FOUND\n  {err}", file=sys.stderr)
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
    print(f"mode          : {'GPU' if build['cuda'] and gpus else 'CPU'} ({gpus} GPU{'s' if gpus != 1 else ''} visible)")
    print(f"python        : {sys.executable} ({sys.version.split()[0]})")
    print("status        : OK")
    return 0
