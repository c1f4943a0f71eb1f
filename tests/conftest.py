"""Shared fixtures: the reference data beside the checkout (../shared/data) and the repository root."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
