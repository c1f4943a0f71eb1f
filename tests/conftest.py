"""Shared fixtures, and the test tiers.

Tests are marked by what they need, from the fixtures they use (directly or through other fixtures):
  caffe   the Caffe build (pycaffe or Caffe's tools): every test using the `caffe` fixture;
  shared  the reference data beside the development checkout (../shared/data, or $ILGNET_SHARED/data for a
          checkout elsewhere, such as a git worktree): every test using `shared_data` (or `bugcase`), skipped
          with the reason where it is absent.
`make test-fast` runs `-m "not caffe"`: the tests that need no Caffe, in a venv with only `pip install -e .[test]`.
`make test` runs everything; there a missing Caffe is an error, not a skip.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ILGNET_SHARED") or REPO.parent / "shared")
SHARED_DATA = SHARED / "data"


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "caffe" in names:
            item.add_marker(pytest.mark.caffe)
        if "shared_data" in names:
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def caffe():
    """pycaffe in CPU mode (the Caffe `make setup` built, or ILGNET_CAFFE_ROOT's)."""
    from ilgnet.caffe_tools import import_caffe

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
