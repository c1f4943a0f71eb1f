"""Shared fixtures, and the test tiers.

Tests are marked by what they need, from the fixtures they use (directly or through other fixtures):
  caffe   the Caffe build (pycaffe or Caffe's tools): every test using the `caffe` fixture;
  shared  the reference data beside the development checkout (../shared/data): every test using `shared_data`,
          skipped with the reason where it is absent.
`make test-fast` runs `-m "not caffe"`: the tests that need no Caffe, in a venv with only `pip install -e .[test]`.
`make test` runs everything; there a missing Caffe is an error, not a skip.
"""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
