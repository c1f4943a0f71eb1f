"""Shared fixtures, and the test tiers.

Tests are marked by what they need, from the fixtures they use (directly or through other fixtures):
  caffe   the Caffe build (pycaffe or Caffe's tools): every test using the `caffe` fixture;
  shared  the reference data beside the development checkout (../shared/data, or $ILGNET_SHARED/data for a
          checkout elsewhere, such as a git worktree): every test using `shared_data` (or `bugcase`), skipped
          with the reason where it is absent.
  install the Caffe-free install on each Python from 3.10 to 3.13 present (tests/test_install.py; minutes).
  slurm   a real one-node Slurm cluster started by the test (tests/slurm_cluster.py): every test using
          `slurm_cluster`, skipped with the reason where Debian's Slurm and munge packages are absent.
and, set by hand on the test:
  slow    real work that needs no Caffe but takes a second or more of CPU: LMDB builds, int8 calibration, several
          `ilgnet` processes (each imports NumPy, OpenCV or onnxruntime afresh), the published 235,529-line lists.
  docker  the real ilgnet-caffe:cpu image (tests/test_docker.py).
`make test-fast` runs `-m "not caffe and not slow and not install and not docker and not slurm"` and prints its 15
slowest tests: the tests that need no Caffe and no real work, in a venv with only `pip install -e .[test]`, meant to
take at most 90 s on an idle 2-core machine. A fast-tier test that grows past a second of CPU is marked `slow`
(or made smaller).
`make test` runs everything; there a missing Caffe is an error, not a skip.
"""
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ILGNET_SHARED") or REPO.parent / "shared")
SHARED_DATA = SHARED / "data"
SMALL = "googlenet-bn-third"        # 3.2 M parameters: a 13 MB stand-in model, made in a fraction of a second


def pytest_configure(config):
    """The Ctrl-C tests send SIGINT to the `ilgnet` processes they start. A shell starting the suite in the background
    (`make test &`, nohup, some CI runners) leaves SIGINT ignored, and an ignored signal stays ignored in every process
    started from here; a handler does not, so with one here each `ilgnet` starts with SIGINT at its default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "caffe" in names:
            item.add_marker(pytest.mark.caffe)
        if "shared_data" in names:
            item.add_marker(pytest.mark.shared)
        if "slurm_cluster" in names:
            item.add_marker(pytest.mark.slurm)


@pytest.fixture(scope="session")
def caffe():
    """pycaffe in CPU mode (the Caffe `make setup` built, or ILGNET_CAFFE_ROOT's)."""
    from ilgnet.bvlc.tools import import_caffe

    module = import_caffe()
    module.set_mode_cpu()
    return module


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real AVA lists, votes, sample photos and the published ILGNet files.

    It sits beside the development checkout only (it may not be redistributed), so tests that need it skip
    in a user's fresh clone.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not present at {SHARED_DATA} (only beside the development checkout)")
    return SHARED_DATA


@pytest.fixture
def bugcase(shared_data, tmp_path):
    """A writable copy, under tmp_path, of one of ../shared/bugcases (small inputs the toolkit once mishandled;
    README.md there): `bugcase("01-list-double-space")`. The originals are read-only."""
    import shutil

    cases = shared_data.parent / "bugcases"
    if not cases.is_dir():
        pytest.skip(f"bug cases not present at {cases}")

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(cases / name, target)
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        return target
    return copy


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory) -> dict[str, Path]:
    """Made without Caffe: a random caffemodel of the SMALL variant (`weights`), one of another variant (`other`),
    a random 256x256 mean image (`mean`), and a folder of 6 generated photos with a damaged file (`photos`)."""
    import numpy as np

    from ilgnet import nets
    from ilgnet.bvlc.io import blobproto_bytes
    from ilgnet.data.synthetic import generate, random_caffemodel

    root = tmp_path_factory.mktemp("stand-in")
    mean = np.random.default_rng(2).uniform(60, 160, (3, 256, 256)).astype(np.float32)
    (root / "mean.binaryproto").write_bytes(blobproto_bytes(mean))
    generate(root / "album", n_images=6, seed=3, long_sides=(240, 400))
    (root / "album" / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    return {"weights": random_caffemodel(nets.deploy(SMALL), root / "small.caffemodel", seed=1),
            "other": random_caffemodel(nets.deploy("googlenet-bn-two-thirds"), root / "other.caffemodel"),
            "mean": root / "mean.binaryproto", "photos": root / "album" / "images"}


@pytest.fixture(scope="session")
def bad_means(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Mean files a user may give by mistake, each made without Caffe: name -> (path, the one-line error about it
    after `error: `). The same for every command, since every mean is read by ilgnet.bvlc.io.load_mean."""
    import numpy as np

    from ilgnet.bvlc.io import blobproto_bytes

    root = tmp_path_factory.mktemp("bad-means")
    nan = np.full((3, 256, 256), 100, np.float32)
    nan[1, 5, 5] = np.nan
    np.save(root / "nan.npy", nan)
    nan[1, 5, 5], nan[2, 7, 7] = np.inf, -np.inf
    (root / "inf.binaryproto").write_bytes(blobproto_bytes(nan))
    (root / "empty.npy").write_bytes(b"")
    (root / "text.npy").write_text("104 117 123\n")
    np.save(root / "objects.npy", np.array([104, None, 123], dtype=object), allow_pickle=True)
    np.save(root / "words.npy", np.array(["b", "g", "r"]))
    (root / "cut.npy").write_bytes((root / "nan.npy").read_bytes()[:200])
    return {name: (root / name, message.replace("@", str(root / name))) for name, message in {
        "nan.npy": "@: the mean holds 1 NaN or infinite values",
        "inf.binaryproto": "@: the mean holds 2 NaN or infinite values",
        "empty.npy": "@ is an empty file, not a mean",
        "text.npy": "@ is not a NumPy .npy file (no .npy header), not a mean",
        "objects.npy": "@: not a readable .npy array of numbers (Object arrays cannot be loaded when "
                       "allow_pickle=False)",
        "words.npy": "@: a mean must hold numbers, not <U1 values",
        "cut.npy": "@: not a readable .npy array of numbers (",
    }.items()}
